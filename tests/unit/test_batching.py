"""Coalescing and packing: the highest version wins, filters keep their place, requests respect Pinecone's limits."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.messages import UpsertMessage, WriteMessage
from vector_relay.contract.parsing import parse_write_message
from vector_relay.ingest.planning import (
    MAX_IDS_PER_DELETE,
    MAX_RECORDS_PER_REQUEST,
    MAX_UPSERT_REQUEST_BYTES,
    PlannedRequest,
    WritePlan,
    coalesce,
    pack,
)
from vector_relay.pinecone.wire import EncodedUpsert, encode_record, encode_upsert, upsert_body

CONTEXT = ValidationContext()


def plan_writes(messages: list[tuple[str, str, Any]]) -> WritePlan:
    """The plan for ``(message_id, namespace, message)`` triples in batch order, as the ingest service makes it."""
    return pack(coalesce(messages))


def msg(op: str, tenant: str = "acme", **fields: Any) -> WriteMessage:
    return parse_write_message(json.dumps({"schema_version": 1, "op": op, "tenant": tenant} | fields), CONTEXT)


def up(*records: tuple[str, int], dim: int = 3, meta: dict[str, Any] | None = None) -> WriteMessage:
    return msg(
        "upsert",
        records=[
            {"id": i, "version": v, "values": [float(v) + 1, 0.5, 0.25][:dim], "metadata": meta or {}}
            for i, v in records
        ],
    )


def rm(*records: tuple[str, int]) -> WriteMessage:
    return msg("delete", records=[{"id": i, "version": v} for i, v in records])


def kinds(plan: WritePlan, namespace: str = "ns") -> list[list[str]]:
    return [[request.kind for request in stage] for stage in plan.stages[namespace]]


def upserted(plan: WritePlan) -> dict[str, float]:
    return {
        r.id: orjson.loads(r.encoded)["values"][0] - 1
        for request in plan.requests()
        if request.kind == "upsert"
        for r in request.records
    }


def deleted(plan: WritePlan) -> set[str]:
    return {i for request in plan.requests() if request.kind == "delete_ids" for i in request.ids}


def test_records_of_many_messages_share_one_request() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 1), ("b", 1))), ("m2", "ns", up(("c", 1)))])
    [[request]] = plan.stages["ns"]
    assert [r.id for r in request.records] == ["a", "b", "c"]
    assert request.origins == {"m1": [0, 1], "m2": [2]}


def test_highest_version_wins_whatever_the_order() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 5))), ("m2", "ns", up(("a", 3))), ("m3", "ns", up(("a", 4)))])
    assert upserted(plan) == {"a": 5}
    [[request]] = plan.stages["ns"]
    assert request.origins == {"m1": [0]}
    assert request.dependents == {"m2", "m3"}


def test_a_later_versioned_delete_beats_an_upsert_and_vice_versa() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 1), ("b", 9))), ("m2", "ns", rm(("a", 2), ("b", 8)))])
    assert upserted(plan) == {"b": 9}
    assert deleted(plan) == {"a"}
    assert kinds(plan) == [["upsert", "delete_ids"]]


def test_equal_versions_let_the_later_message_win() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 7))), ("m2", "ns", rm(("a", 7)))])
    assert deleted(plan) == {"a"}
    assert upserted(plan) == {}


def test_filter_operations_split_the_namespace_into_ordered_stages() -> None:
    plan = plan_writes(
        [
            ("m1", "ns", up(("a", 1))),
            ("m2", "ns", msg("delete_by_filter", filter={"doc": "x"})),
            ("m3", "ns", up(("b", 1))),
            ("m4", "ns", msg("purge_tenant", confirm="acme")),
        ]
    )
    assert kinds(plan) == [["upsert"], ["delete_by_filter"], ["upsert"], ["delete_all"]]
    assert plan.stages["ns"][1][0].filter == {"doc": "x"}
    assert plan.stages["ns"][3][0].origins == {"m4": []}


def test_a_winning_write_is_sent_in_its_own_segment() -> None:
    plan = plan_writes(
        [
            ("m1", "ns", up(("a", 9))),
            ("m2", "ns", msg("delete_by_filter", filter={"doc": "x"})),
            ("m3", "ns", up(("a", 2))),
        ]
    )
    assert kinds(plan) == [["upsert"], ["delete_by_filter"]]
    assert plan.stages["ns"][0][0].dependents == {"m3"}


def test_namespaces_are_planned_apart() -> None:
    plan = plan_writes([("m1", "ns-a", up(("x", 1))), ("m2", "ns-b", up(("x", 1)))])
    assert set(plan.stages) == {"ns-a", "ns-b"}
    assert upserted(plan) == {"x": 1}  # one per namespace, same id
    assert sum(1 for _ in plan.requests()) == 2


def test_deletes_are_chunked_at_pinecone_limit() -> None:
    ids = [(f"r{i}", 1) for i in range(MAX_IDS_PER_DELETE)]
    plan = plan_writes([("m1", "ns", rm(*ids)), ("m2", "ns", rm(("extra", 1)))])
    [stage] = plan.stages["ns"]
    assert [len(r.ids) for r in stage] == [MAX_IDS_PER_DELETE, 1]


def test_planned_requests_carry_each_record_encoded_and_their_size_is_the_body() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 1), ("b", 1))), ("m2", "ns", up(("c", 1)))])
    [[request]] = plan.stages["ns"]
    assert [orjson.loads(r.encoded)["metadata"]["_relay_version"] for r in request.records] == ["1", "1", "1"]
    body = upsert_body("ns", [r.encoded for r in request.records])
    assert len(body) <= request.size_bytes <= len(body) + len(request.records)  # a byte of slack per record at most
    first, second = request.split_by_origin()
    assert first.records == request.records[:2]
    assert second.records == request.records[2:]


def test_an_encoded_upsert_plans_as_the_message_it_came_from() -> None:
    message = up(("a", 2), ("b", 1))
    encoded = encode_upsert(message)
    assert isinstance(encoded, EncodedUpsert)
    assert plan_writes([("m1", "ns", encoded)]) == plan_writes([("m1", "ns", message)])
    delete = rm(("a", 3))
    assert encode_upsert(delete) is delete


def test_split_by_origin_keeps_each_messages_records_together() -> None:
    plan = plan_writes([("m1", "ns", up(("a", 1), ("b", 1))), ("m2", "ns", up(("c", 1))), ("m3", "ns", up(("a", 0)))])
    [[request]] = plan.stages["ns"]
    left, right = request.split_by_origin()
    assert [r.id for r in left.records] == ["a", "b"]
    assert left.origins == {"m1": [0, 1]}
    assert [r.id for r in right.records] == ["c"]
    assert right.origins == {"m2": [0]}
    assert left.dependents == right.dependents == {"m3"}


# ------------------------------------------------------------------ properties of packing


@st.composite
def upsert_batches(draw: st.DrawFn) -> list[tuple[str, str, WriteMessage]]:
    dim = draw(st.sampled_from([8, 384, 1536]))
    messages = []
    for m in range(draw(st.integers(1, 12))):
        count = draw(st.integers(1, 120))
        text = "x" * draw(st.integers(0, 8_000))
        records = [
            {"id": f"m{m}-r{i}", "version": 1, "values": [0.123456789] * dim, "metadata": {"text": text}}
            for i in range(count)
        ]
        body = json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": records})
        messages.append((f"m{m}", draw(st.sampled_from(["ns-1", "ns-2"])), parse_write_message(body, CONTEXT)))
    return messages


def _body_bytes(request: PlannedRequest) -> int:
    body = {"vectors": [json.loads(r.encoded) for r in request.records], "namespace": request.namespace}
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())  # the standard library's count


@settings(max_examples=25, deadline=None)
@given(upsert_batches())
def test_packing_respects_limits_and_is_near_minimal(batch: list[tuple[str, str, WriteMessage]]) -> None:
    plan = plan_writes(batch)
    sent: list[str] = []
    for namespace, stages in plan.stages.items():
        requests = [request for stage in stages for request in stage]
        for request in requests:
            assert request.kind == "upsert"
            assert len(request.records) <= MAX_RECORDS_PER_REQUEST
            assert _body_bytes(request) <= MAX_UPSERT_REQUEST_BYTES
            assert request.size_bytes >= _body_bytes(request)  # the estimate never under-counts
            sent.extend(f"{namespace}/{r.id}" for r in request.records)
        records = [r for m_id, ns, m in batch if ns == namespace for r in m.records]  # type: ignore[union-attr]
        total = sum(_body_bytes(r) for r in requests)
        minimum = max(math.ceil(len(records) / MAX_RECORDS_PER_REQUEST), math.ceil(total / MAX_UPSERT_REQUEST_BYTES))
        assert len(requests) <= minimum + 1
    expected = [f"{ns}/{r.id}" for _, ns, m in batch for r in m.records]  # type: ignore[union-attr]
    assert sorted(sent) == sorted(expected)  # every record in exactly one request


def test_a_grpc_records_size_is_its_protobuf_encoding() -> None:
    """The planner's size of a gRPC record is the exact size of the Vector message the SDK sends."""
    from google.protobuf import json_format

    from pinecone_emulator.grpc_server import messages

    pb, _ = messages()  # the emulator's vector_service.proto: Pinecone's VectorService messages
    message = msg(
        "upsert",
        records=[
            {"id": "a", "version": 3, "values": [0.1, -2.0, 1e-07], "metadata": {"k": "é", "n": 12, "ok": True}},
            {"id": "b" * 300, "version": 2**40, "values": [1.5] * 1536, "metadata": {"tags": ["x", "yy", ""]}},
            {
                "id": "c",
                "version": 4,
                "values": [1, 2, 3],
                "sparse_values": {"indices": [7, 2**31], "values": [0.5, 2]},
            },
        ],
    )
    assert isinstance(message, UpsertMessage)
    records = [encode_record(record, "grpc") for record in message.records]
    vectors = []
    for record in records:
        assert record.grpc is not None
        wire = dict(record.grpc)
        sparse = wire.pop("sparse_values", None)
        vector = json_format.ParseDict(wire, pb.Vector())
        if sparse is not None:
            vector.sparse_values.indices.extend(sparse["indices"])
            vector.sparse_values.values.extend(sparse["values"])
        vectors.append(vector)
        assert record.size == len(pb.UpsertRequest(vectors=[vector]).SerializeToString())
    request = pb.UpsertRequest(vectors=vectors, namespace="tenant-acme")
    plan = plan_writes([("m1", "tenant-acme", encode_upsert(message, "grpc"))])
    [[planned]] = plan.stages["tenant-acme"]
    assert planned.size_bytes == request.ByteSize()
