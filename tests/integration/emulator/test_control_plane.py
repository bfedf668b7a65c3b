"""Control plane through SDK 10.2.0: create (legacy and schema forms), describe, list, exists, configure, delete."""

from __future__ import annotations

import httpx
import pytest
from pinecone import ConflictError, ForbiddenError, NotFoundError, Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle

SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


def test_legacy_create_returns_a_ready_index_with_a_dialable_http_host(
    pc: Pinecone, pinecone_emulator: EmulatorHandle
) -> None:
    model = pc.create_index("movies", dimension=8, metric="euclidean", spec=SPEC, tags={"team": "search"})

    assert model.status.ready is True
    assert model.status.state == "Ready"
    assert model.host == pinecone_emulator.index_host("movies")
    assert model.host.startswith("http://127.0.0.1:")
    assert model.host != pinecone_emulator.url  # a host of its own, no path: as Pinecone's, and dialable over gRPC
    assert (model.dimension, model.metric, model.vector_type) == (8, "euclidean", "dense")
    assert model.deletion_protection == "disabled"
    assert model.tags == {"team": "search"}
    assert model.deployment.cloud == "aws"
    assert model.deployment.region == "us-east-1"


def test_sparse_legacy_create_has_no_dimension_and_dotproduct(pc: Pinecone) -> None:
    model = pc.create_index("sparse", metric="dotproduct", vector_type="sparse", spec=SPEC)

    assert model.vector_type == "sparse"
    assert model.dimension is None
    assert model.metric == "dotproduct"


def test_schema_form_create_round_trips_fields_and_deployment(pc: Pinecone) -> None:
    model = pc.indexes.create(
        name="hybrid",
        schema={
            "fields": {
                "_values": {"type": "dense_vector", "dimension": 4, "metric": "DotProduct"},
                "_sparse_values": {"type": "sparse_vector"},
            }
        },
        deployment={"deployment_type": "managed", "cloud": "gcp", "region": "us-central1"},
        deletion_protection="enabled",
    )

    assert model.metric == "dotproduct"
    assert model.dimension == 4
    assert model.deployment.cloud == "gcp"
    assert model.deletion_protection == "enabled"
    assert set(model.schema.fields) == {"_values", "_sparse_values"}


def test_describe_list_and_exists_see_created_indexes(pc: Pinecone) -> None:
    pc.create_index("one", dimension=3, metric="cosine", spec=SPEC)
    pc.create_index("two", dimension=5, metric="dotproduct", spec=SPEC)

    assert sorted(pc.list_indexes().names()) == ["one", "two"]
    assert pc.describe_index("two").dimension == 5
    assert pc.has_index("one") is True
    assert pc.indexes.exists("missing") is False


def test_describe_unknown_index_is_404(pc: Pinecone) -> None:
    with pytest.raises(NotFoundError) as raised:
        pc.describe_index("missing")
    assert raised.value.status_code == 404


def test_duplicate_create_is_409(pc: Pinecone) -> None:
    pc.create_index("dup", dimension=3, metric="cosine", spec=SPEC)
    with pytest.raises(ConflictError) as raised:
        pc.create_index("dup", dimension=3, metric="cosine", spec=SPEC)
    assert raised.value.status_code == 409
    assert "already exists" in raised.value.message


def test_configure_sets_deletion_protection_and_merges_tags(pc: Pinecone) -> None:
    pc.create_index("cfg", dimension=3, metric="cosine", spec=SPEC, tags={"a": "1", "b": "2"})

    model = pc.configure_index("cfg", deletion_protection="enabled", tags={"b": "", "c": "3"})

    assert model.deletion_protection == "enabled"
    assert model.tags == {"a": "1", "c": "3"}
    assert pc.describe_index("cfg").tags == {"a": "1", "c": "3"}


def test_delete_with_deletion_protection_is_403_and_keeps_the_index(pc: Pinecone) -> None:
    pc.create_index("keep", dimension=3, metric="cosine", spec=SPEC, deletion_protection="enabled")

    with pytest.raises(ForbiddenError) as raised:
        pc.delete_index("keep")

    assert raised.value.status_code == 403
    assert pc.has_index("keep")
    pc.configure_index("keep", deletion_protection="disabled")
    pc.delete_index("keep")
    assert not pc.has_index("keep")


def test_deleted_index_is_gone_from_list_and_its_data_plane(pc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc.create_index("gone", dimension=3, metric="cosine", spec=SPEC)
    pc.delete_index("gone")

    assert pc.list_indexes().names() == []
    response = httpx.post(
        f"{pinecone_emulator.index_host('gone')}/describe_index_stats",
        headers={"Api-Key": pinecone_emulator.api_key},
        json={},
    )
    assert response.status_code == 404


def test_control_plane_errors_use_the_error_object_shape(pinecone_emulator: EmulatorHandle) -> None:
    headers = {"Api-Key": pinecone_emulator.api_key, "X-Pinecone-Api-Version": "2026-07"}

    missing = httpx.get(f"{pinecone_emulator.url}/indexes/nope", headers=headers)
    bad_deployment = httpx.post(
        f"{pinecone_emulator.url}/indexes",
        headers=headers,
        json={
            "name": "x",
            "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 3, "metric": "cosine"}}},
            "deployment": {"deployment_type": "serverful"},
        },
    )
    bad_name = httpx.post(
        f"{pinecone_emulator.url}/indexes",
        headers=headers,
        json={"name": "Bad_Name", "schema": {"fields": {"_sparse_values": {"type": "sparse_vector"}}}},
    )

    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "Resource nope not found"}, "status": 404}
    assert bad_deployment.status_code == 422
    assert bad_deployment.json()["error"]["code"] == "UNPROCESSABLE_ENTITY"
    assert bad_name.status_code == 400
    assert bad_name.json()["status"] == 400


def test_create_responds_201_and_delete_202_on_the_wire(pinecone_emulator: EmulatorHandle) -> None:
    headers = {"Api-Key": pinecone_emulator.api_key}
    body = {
        "name": "wire",
        "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 2, "metric": "cosine"}}},
    }

    created = httpx.post(f"{pinecone_emulator.url}/indexes", headers=headers, json=body)
    deleted = httpx.delete(f"{pinecone_emulator.url}/indexes/wire", headers=headers)

    assert created.status_code == 201
    assert created.json()["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    assert created.json()["read_capacity"] == {"mode": "OnDemand", "status": {"state": "Ready"}}
    assert deleted.status_code == 202
