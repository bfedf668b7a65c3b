"""Fuzzing: arbitrary JSON bodies never crash the emulator; every refusal has the shape of its API."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pinecone_emulator import Emulator, EmulatorConfig, handle
from pinecone_emulator.wire import Request

KEY = {"Api-Key": "pclocal"}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 2**33)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
vector_like = st.fixed_dictionaries(
    {"id": st.text(max_size=4) | json_values},
    optional={
        "values": st.lists(st.floats(-2, 2), max_size=4) | json_values,
        "sparseValues": json_values,
        "metadata": json_values,
    },
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "vectors": st.lists(vector_like, max_size=3) | json_values,
    "namespace": st.sampled_from(["", "ns", "__default__"]) | json_values,
    "topK": st.integers(-1, 12) | json_values,
    "vector": st.lists(st.floats(-2, 2), min_size=3, max_size=3) | json_values,
    "id": st.sampled_from(["a", "b"]) | json_values,
    "sparseVector": json_values,
    "filter": st.dictionaries(st.sampled_from(["genre", "$and", "$or", "n"]), json_values, max_size=2) | json_values,
    "includeValues": json_values,
    "includeMetadata": json_values,
    "ids": st.lists(st.text(max_size=3), max_size=3) | json_values,
    "deleteAll": json_values,
    "setMetadata": json_values,
    "values": json_values,
    "dryRun": json_values,
    "limit": json_values,
    "paginationToken": json_values,
    "name": st.text(max_size=6) | json_values,
    "schema": json_values,
}
DATA_PATHS = [
    "vectors/upsert",
    "query",
    "vectors/update",
    "vectors/delete",
    "vectors/fetch_by_metadata",
    "describe_index_stats",
    "namespaces",
]


def _emulator() -> Emulator:
    emulator = Emulator(EmulatorConfig(port=0))
    body = {
        "name": "fuzz",
        "schema": {
            "fields": {
                "_values": {"type": "dense_vector", "dimension": 3, "metric": "dotproduct"},
                "_sparse_values": {"type": "sparse_vector"},
            }
        },
    }
    assert handle(emulator, Request("POST", "/indexes", "", KEY, json.dumps(body).encode())).status == 201
    seed = {"vectors": [{"id": "a", "values": [1.0, 0.0, 0.5], "metadata": {"genre": "x", "n": 1}}]}
    assert (
        handle(emulator, Request("POST", "/data/fuzz/vectors/upsert", "", KEY, json.dumps(seed).encode())).status == 200
    )
    return emulator


EMULATOR = _emulator()


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(DATA_PATHS),
    body=st.one_of(
        st.fixed_dictionaries({}, optional=FIELDS),
        json_values,
    ),
)
def test_data_plane_answers_every_body_with_success_or_an_rpc_status(path: str, body: object) -> None:
    response = handle(EMULATOR, Request("POST", f"/data/fuzz/{path}", "", KEY, json.dumps(body).encode()))

    payload = json.loads(response.body) if response.body else {}
    assert response.status < 500, payload
    if response.status >= 400:
        assert set(payload) == {"code", "message", "details"}
        assert isinstance(payload["code"], int)
        assert isinstance(payload["message"], str)


@settings(max_examples=200, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from(["ok-name", "fuzz"]) | json_values,
            "schema": json_values
            | st.fixed_dictionaries(
                {
                    "fields": st.dictionaries(
                        st.sampled_from(["_values", "_sparse_values", "t"]),
                        json_values
                        | st.fixed_dictionaries(
                            {"type": st.sampled_from(["dense_vector", "sparse_vector", "string"])},
                            optional={"dimension": json_values, "metric": json_values},
                        ),
                        max_size=2,
                    )
                }
            ),
            "deployment": json_values,
            "deletion_protection": json_values,
            "tags": json_values,
            "read_capacity": json_values,
        },
    ),
    method=st.sampled_from(["POST", "PATCH"]),
)
def test_control_plane_answers_every_body_with_success_or_an_error_object(body: dict[str, Any], method: str) -> None:
    path = "/indexes" if method == "POST" else "/indexes/fuzz"
    response = handle(EMULATOR, Request(method, path, "", KEY, json.dumps(body).encode()))

    payload = json.loads(response.body) if response.body else {}
    assert response.status < 500, payload
    if response.status >= 400:
        assert set(payload) == {"error", "status"}
        assert payload["status"] == response.status
    elif method == "POST":
        handle(EMULATOR, Request("DELETE", f"/indexes/{payload['name']}", "", KEY))
