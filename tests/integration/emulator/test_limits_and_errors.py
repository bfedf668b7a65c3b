"""Limits and error bodies on the wire, as Pinecone sends them (checked with raw HTTP, which the SDK hides)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pinecone import ApiError, PayloadTooLargeError

from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.integration.emulator.conftest import IndexFactory

DIMENSION = 4


@pytest.fixture
def data(pinecone_emulator: EmulatorHandle, make_index: IndexFactory) -> Iterator[httpx.Client]:
    """A raw HTTP client on the data plane of a 4-dimensional cosine index."""
    make_index(name="limits", dimension=DIMENSION)
    with httpx.Client(
        base_url=pinecone_emulator.index_host("limits"),
        headers={"Api-Key": pinecone_emulator.api_key, "X-Pinecone-Api-Version": "2026-07"},
    ) as client:
        yield client


def vector(vector_id: str = "a", **extra: Any) -> dict[str, Any]:
    return {"id": vector_id, "values": [0.1, 0.2, 0.3, 0.4], **extra}


def rpc_error(response: httpx.Response, status: int) -> str:
    """Assert a data-plane rpcStatus error body and return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["details"] == []
    assert isinstance(body["code"], int)
    return str(body["message"])


def test_success_bodies_are_camel_case_for_vectors_and_snake_case_for_namespaces(data: httpx.Client) -> None:
    upsert = data.post("/vectors/upsert", json={"vectors": [vector(metadata={"k": "v"})], "namespace": "ns"})
    query = data.post(
        "/query",
        json={
            "topK": 1,
            "vector": [0.1, 0.2, 0.3, 0.4],
            "namespace": "ns",
            "includeValues": False,
            "includeMetadata": True,
        },
    )
    stats = data.post("/describe_index_stats", json={})
    namespace = data.get("/namespaces/ns")

    assert upsert.status_code == 200
    assert upsert.json() == {"upsertedCount": 1}
    assert upsert.headers["x-pinecone-request-lsn"].isdigit()
    assert query.json()["matches"][0].keys() == {"id", "score", "values", "metadata"}
    assert query.json()["usage"] == {"readUnits": 1}
    assert int(query.headers["x-pinecone-max-indexed-lsn"]) >= int(upsert.headers["x-pinecone-request-lsn"])
    assert set(stats.json()) >= {"namespaces", "dimension", "indexFullness", "totalVectorCount"}
    assert stats.json()["namespaces"] == {"ns": {"vectorCount": 1}}
    assert namespace.json()["name"] == "ns"
    assert namespace.json()["record_count"] == "1"


def test_dimension_mismatch_message(data: httpx.Client) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [{"id": "a", "values": [1.0, 2.0]}]})

    assert rpc_error(response, 400) == "Vector dimension 2 does not match the dimension of the index 4"
    assert response.json()["code"] == 3


def test_all_zero_dense_vector_is_rejected(data: httpx.Client) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [{"id": "z", "values": [0.0] * DIMENSION}]})

    assert "contains only zeros" in rpc_error(response, 400)


def test_more_than_1000_vectors_is_400_and_1000_is_fine(data: httpx.Client) -> None:
    many = [vector(f"v{i}") for i in range(1001)]

    too_many = data.post("/vectors/upsert", json={"vectors": many})
    ok = data.post("/vectors/upsert", json={"vectors": many[:1000]})

    assert "1001" in rpc_error(too_many, 400)
    assert ok.json() == {"upsertedCount": 1000}


def test_request_over_2_mb_is_413(data: httpx.Client) -> None:
    padding = "x" * 30_000
    vectors = [vector(f"v{i}", metadata={"pad": padding}) for i in range(80)]  # ~2.4 MB

    response = data.post("/vectors/upsert", json={"vectors": vectors})

    assert "exceeds the maximum supported size of 2MB" in rpc_error(response, 413)


def test_metadata_over_40_kb_is_400(data: httpx.Client) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [vector(metadata={"text": "x" * 41_000})]})

    assert rpc_error(response, 400).startswith("metadata size is 41")
    assert "exceeds the limit of 40960 bytes per vector" in response.json()["message"]


@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({"nested": {"a": 1}}, "for field 'nested'"),
        ({"numbers": [1, 2]}, "for field 'numbers'"),
        ({"$bad": "x"}, "must not start with '$'"),
    ],
)
def test_invalid_metadata_types_are_400(data: httpx.Client, metadata: dict[str, Any], fragment: str) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [vector(metadata=metadata)]})

    assert fragment in rpc_error(response, 400)


@pytest.mark.parametrize("bad_id", ["", "x" * 513, "caf\u00e9"])
def test_ids_must_be_1_to_512_ascii_characters(data: httpx.Client, bad_id: str) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [vector(bad_id)]})

    rpc_error(response, 400)


def test_512_character_id_is_accepted(data: httpx.Client) -> None:
    response = data.post("/vectors/upsert", json={"vectors": [vector("x" * 512)]})

    assert response.json() == {"upsertedCount": 1}


@pytest.mark.parametrize("top_k", [0, 10_001])
def test_top_k_out_of_range_is_400(data: httpx.Client, top_k: int) -> None:
    response = data.post("/query", json={"topK": top_k, "vector": [0.1, 0.2, 0.3, 0.4]})

    assert "topK" in rpc_error(response, 400)


def test_top_k_10000_is_accepted(data: httpx.Client) -> None:
    response = data.post("/query", json={"topK": 10_000, "vector": [0.1, 0.2, 0.3, 0.4]})

    assert response.status_code == 200


def test_a_query_result_over_4_mb_is_400_and_one_under_it_is_served(data: httpx.Client) -> None:
    # 120 records of ~36 KB of metadata each: ~4.3 MB as a result with metadata, ~6 KB without
    padding = "x" * 36_000
    for start in range(0, 120, 40):
        upserted = data.post(
            "/vectors/upsert",
            json={"vectors": [vector(f"v{i}", metadata={"pad": padding}) for i in range(start, start + 40)]},
        )
        assert upserted.status_code == 200, upserted.text
    query = {"topK": 10_000, "vector": [0.1, 0.2, 0.3, 0.4], "includeValues": True}

    too_large = data.post("/query", json=query | {"includeMetadata": True})
    served = data.post("/query", json=query)
    fewer = data.post("/query", json=query | {"includeMetadata": True, "topK": 100})

    message = rpc_error(too_large, 400)
    assert too_large.json()["code"] == 3  # INVALID_ARGUMENT: the request must change, not be retried
    assert "exceeds the limit of 4194304 bytes (4MB)" in message
    assert "lower top_k" in message
    assert len(served.json()["matches"]) == 120
    assert served.status_code == fewer.status_code == 200
    assert len(fewer.content) < 4 * 1024 * 1024


def test_more_than_1000_ids_per_fetch_or_delete_is_400(data: httpx.Client) -> None:
    data.post("/vectors/upsert", json={"vectors": [vector("a")]})
    ids = [f"id-{i}" for i in range(1001)]

    fetch = data.get("/vectors/fetch", params={"ids": ids})
    delete = data.post("/vectors/delete", json={"ids": ids, "namespace": ""})

    rpc_error(fetch, 400)
    rpc_error(delete, 400)


def test_a_missing_namespace_and_a_missing_index_answer_404_with_different_bodies(
    pinecone_emulator: EmulatorHandle, data: httpx.Client
) -> None:
    # Pinecone's answer to a delete in a namespace that does not exist (the relay takes it for "nothing to
    # delete"), and the answer of a host whose index is not there (deleted; the relay raises INDEX_NOT_FOUND)
    deletes = [{"ids": ["a"], "namespace": "never-written"}, {"deleteAll": True}, {"filter": {"g": {"$eq": 1}}}]
    with httpx.Client(base_url=pinecone_emulator.index_host("gone"), headers=data.headers) as gone:
        for body in deletes:
            missing_namespace = data.post("/vectors/delete", json=body)
            missing_index = gone.post("/vectors/delete", json=body)

            assert rpc_error(missing_namespace, 404) == "Namespace not found"
            assert rpc_error(missing_index, 404) == "Index gone not found"
            assert missing_namespace.json()["code"] == missing_index.json()["code"] == 5  # gRPC NOT_FOUND


def test_sdk_fetch_with_the_longest_query_httpx_allows_is_served(make_index: IndexFactory) -> None:
    # 1,000 ids whose query string is exactly httpx's 65,536-character cap: the request line is then longer
    # than the 65,536 bytes the stdlib's http.server accepts, which the emulator must lift.
    ids = [f"{i:04d}" + "x" * (57 if i < 537 else 56) for i in range(1000)]
    assert len("&".join(f"ids={i}" for i in ids)) == 65_536
    index = make_index(name="long-ids", dimension=2)
    index.upsert(vectors=[(ids[0], [1.0, 0.0]), (ids[999], [0.0, 1.0])])

    fetched = index.fetch(ids=ids)

    assert sorted(fetched.vectors) == [ids[0], ids[999]]


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"year": {"$gt": "2020"}},
        {"year": {"$between": [1, 2]}},
        {"genre": ["comedy", "drama"]},
        {"$and": {"genre": "comedy"}},
        {"$not": {"genre": "comedy"}},
        {"genre": {"$in": "comedy"}},
        {"genre": {"$exists": "yes"}},
    ],
)
def test_invalid_filters_are_400(data: httpx.Client, bad_filter: dict[str, Any]) -> None:
    response = data.post("/query", json={"topK": 1, "vector": [0.1, 0.2, 0.3, 0.4], "filter": bad_filter})

    rpc_error(response, 400)


def test_empty_filters_on_delete_update_and_fetch_by_metadata_are_400(data: httpx.Client) -> None:
    data.post("/vectors/upsert", json={"vectors": [vector("a")]})

    delete = data.post("/vectors/delete", json={"namespace": "", "filter": {}})
    update = data.post("/vectors/update", json={"namespace": "", "filter": {}, "setMetadata": {"a": "b"}})
    fetch = data.post("/vectors/fetch_by_metadata", json={"filter": {}})

    assert rpc_error(delete, 400) == "Delete with empty metadata filter is not allowed"
    assert rpc_error(update, 400) == "Update with empty metadata filter is not allowed"
    assert rpc_error(fetch, 400) == "Empty filter provided for fetch by metadata request"


def test_describe_index_stats_with_a_filter_is_400(data: httpx.Client) -> None:
    rpc_error(data.post("/describe_index_stats", json={"filter": {"a": "b"}}), 400)


def test_malformed_json_is_400(data: httpx.Client) -> None:
    response = data.post("/query", content=b"{not json", headers={"Content-Type": "application/json"})

    rpc_error(response, 400)


def test_missing_or_unknown_api_key_is_401_text_plain(pinecone_emulator: EmulatorHandle, data: httpx.Client) -> None:
    for headers in ({}, {"Api-Key": "not-a-key"}):
        data_plane = httpx.post(
            f"{pinecone_emulator.index_host('limits')}/query",
            headers=headers,
            json={"topK": 1, "vector": [0.1, 0.2, 0.3, 0.4]},
        )
        control_plane = httpx.get(f"{pinecone_emulator.url}/indexes", headers=headers)
        for response in (data_plane, control_plane):
            assert response.status_code == 401
            assert response.headers["content-type"] == "text/plain"
            assert response.text == "Unauthorized"


def test_sdk_maps_limit_errors_to_its_exceptions(pinecone_emulator: EmulatorHandle, make_index: IndexFactory) -> None:
    index = make_index(name="sdk-limits", dimension=2)

    with pytest.raises(ApiError) as mismatch:
        index.upsert(vectors=[("a", [1.0, 2.0, 3.0])])
    with pytest.raises(PayloadTooLargeError):
        index.upsert(vectors=[(f"v{i}", [1.0, 2.0], {"pad": "y" * 30_000}) for i in range(80)])

    assert mismatch.value.status_code == 400
    assert mismatch.value.message == "Vector dimension 3 does not match the dimension of the index 2"
    assert json.loads(json.dumps(mismatch.value.body))["code"] == 3
