"""A reason names the field, the rule and the type, never a value from the message (docs/contract.md).

Poison messages that take every validation path of both workers (the contract's checks, the tenant
schema, tenant binding, the reply allow-list, the depth limit) carry distinctive canary values in
every field they have: ids, tenants where the path allows one, vector and sparse values, metadata
values, filter operands, versions, top_k, confirm, reply_to. They go through the real queues; then
no attribute of any dead letter, and no error reply's message, may hold a canary. The bodies keep
them: the DLQ holds the message unchanged, which is where an operator looks for values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE
from tests.integration.conftest import Pipeline, SqsDriver
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings

# Text canaries share a prefix; number canaries are digit runs no id, ARN or size here contains.
TEXT = "CANARY"
NUMBERS = ["918273645", "7315926", "271828183", "987654321", "4815162342"]
CANARIES = [TEXT, *NUMBERS]

VALUE = 0.7315926  # a vector value
VERSION = 918273645
METADATA_NUMBER = 271828183
TOP_K = 987654321
SPARSE_INDEX = 4815162342  # above uint32
BOUND_QUEUE = "arn:aws:sqs:us-east-1:123456789012:initech-own-ingest"

REGISTRY = {
    "acme": "tenant-acme",
    "globex": {
        "namespace": "tenant-globex",
        "schema": {"fields": {"year": {"type": "number", "required": True}, "genre": {"type": "string"}}},
    },
    "initech": {"namespace": "tenant-initech", "queues": [BOUND_QUEUE]},  # bound: not from the shared queues
}


def canary(name: str) -> str:
    return f"{TEXT}-{name}"


def values(length: int = SAMPLE_DIMENSION) -> list[float]:
    return [VALUE] * length


def record(**fields: Any) -> dict[str, Any]:
    return {
        "id": canary("id"),
        "version": VERSION,
        "values": values(),
        "metadata": {"note": canary("note"), "tags": [canary("tag")], "count": METADATA_NUMBER},
    } | fields


def upsert(*records: dict[str, Any], tenant: str = "acme", **fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": list(records)} | fields)


def delete_by_filter(filter_: Any, tenant: str = "acme", **fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": tenant, "filter": filter_} | fields)


def query(**fields: Any) -> str:
    message = {
        "schema_version": 1,
        "op": "query",
        "tenant": "acme",
        "reply_to": SAMPLE_REPLY_QUEUE,
        "correlation_id": "q",
        "vector": values(),
    }
    return json.dumps(message | fields)


def nested(levels: int) -> Any:
    value: Any = canary("deep")
    for _ in range(levels):
        value = {canary("level"): value}
    return value


# (body, the code it must get); every field holds a canary
INGEST: list[tuple[str, str]] = [
    ('{"schema_version": 1, "op": "upsert", "tenant": "' + canary("tenant") + '", "records": [', "invalid_json"),
    (upsert(record(metadata={"note": nested(300)})), "json_too_deep"),
    (upsert(record(version=canary("version"))), "schema_violation"),
    (upsert(record(values=[canary("value")] * SAMPLE_DIMENSION)), "schema_violation"),
    (upsert(record(), priority=canary("extra")), "schema_violation"),
    (upsert(record(), schema_version=VERSION), "unsupported_schema_version"),
    (json.dumps({"schema_version": 1, "op": canary("op"), "tenant": canary("tenant")}), "unknown_op"),
    (upsert(record(), tenant=canary("tenant")), "unknown_tenant"),
    (upsert(*[{"id": f"{TEXT}-{i}", "version": VERSION, "values": [VALUE]} for i in range(1001)]), "too_many_records"),
    (upsert(record(id=canary("id-é"))), "id_invalid"),
    (upsert(record(id=canary("x" * 600))), "id_invalid"),
    (upsert(record(values=values(SAMPLE_DIMENSION - 1))), "dimension_mismatch"),
    (upsert(record(values=[*values(SAMPLE_DIMENSION - 1), float("nan")])), "non_finite_value"),
    (upsert(record(values=[0.0] * SAMPLE_DIMENSION)), "zero_vector"),
    (upsert(record(sparse_values={"indices": [SPARSE_INDEX, 7], "values": [VALUE]})), "schema_violation"),
    (upsert(record(sparse_values={"indices": [7, 7], "values": [VALUE, VALUE]})), "sparse_values_invalid"),
    (upsert(record(sparse_values={"indices": [7], "values": [VALUE]})), "sparse_not_supported"),
    (upsert(record(metadata={"author": {"name": canary("author")}})), "metadata_type"),
    (upsert(record(metadata={"tags": [canary("tag"), METADATA_NUMBER]})), "metadata_type"),
    (upsert(record(metadata={"count": int(NUMBERS[4]) ** 5})), "metadata_type"),
    (upsert(record(metadata={"$owner": canary("owner")})), "metadata_key_invalid"),
    (upsert(record(metadata={"_relay_version": canary("version")})), "metadata_key_invalid"),
    (upsert(record(metadata={"text": canary("big") * 6000})), "metadata_too_large"),
    (delete_by_filter({"year": {"$gt": canary("operand")}}), "invalid_filter"),
    (delete_by_filter({"genre": [canary("a"), canary("b")]}), "invalid_filter"),
    (delete_by_filter({"genre": {"$in": [canary("a"), True]}}), "invalid_filter"),
    (delete_by_filter({"_relay_version": {"$eq": canary("version")}}), "filter_field_reserved"),
    (
        delete_by_filter({"$or": [{"g": {"$exists": True}}, {"g": {"$exists": False}}, {"g": canary("g")}]}),
        "delete_not_confirmed",
    ),
    (delete_by_filter({"genre": canary("genre")}, confirm=canary("confirm")), "delete_not_confirmed"),
    (
        json.dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": canary("confirm")}),
        "purge_not_confirmed",
    ),
    # set by the worker: the tenant's schema, and tenant binding
    (
        upsert(record(metadata={"year": canary("twenty"), "genre": METADATA_NUMBER}), tenant="globex"),
        "metadata_schema_violation",
    ),
    (delete_by_filter({"colour": canary("red")}, tenant="globex"), "filter_field_not_declared"),
    (delete_by_filter({"year": {"$in": [canary("2021")]}}, tenant="globex"), "filter_type_mismatch"),
    (upsert(record(), tenant="initech"), "tenant_not_bound"),
]

# (body, code, whether it is answered on its reply_to rather than dead-lettered)
QUERIES: list[tuple[str, str, bool]] = [
    (
        query(reply_to=f"https://sqs.us-east-1.amazonaws.com/123456789012/{canary('reply')}"),
        "reply_to_not_allowed",
        False,
    ),
    (query(filter=nested(300)), "json_too_deep", False),  # the relay reads no reply_to from a body it cannot read
    (query(id=canary("id")), "query_target_invalid", True),
    (query(top_k=TOP_K), "top_k_out_of_range", True),
    (query(top_k=canary("top_k")), "schema_violation", True),
    (query(vector=values(SAMPLE_DIMENSION + 1)), "dimension_mismatch", True),
    (query(filter={"year": {"$lt": canary("operand")}}), "invalid_filter", True),
    (query(tenant=canary("tenant")), "unknown_tenant", True),
    (query(tenant="globex", filter={"year": canary("twenty")}), "filter_type_mismatch", True),
    (query(tenant="globex", filter={"colour": METADATA_NUMBER}), "filter_field_not_declared", True),
    (query(tenant="initech"), "tenant_not_bound", False),
]


@pytest.fixture
def registry(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(REGISTRY))
    get_settings.cache_clear()
    reset_worker_dependencies()


def quoted(text: str) -> list[str]:
    return [value for value in CANARIES if value in text]


@pytest.mark.usefixtures("registry")
def test_no_dead_letter_reason_or_error_reply_quotes_a_value_of_the_message(pipeline: Pipeline) -> None:
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    queries = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    ingest.publish([body for body, _ in INGEST])
    queries.publish([body for body, _, _ in QUERIES])

    # WHEN every message is delivered
    ingest.run_until_empty()
    queries.run_until_empty()

    # THEN each took the path it was built for: dead-lettered, or answered, with its code ...
    letters = {m["Body"]: m["MessageAttributes"] for m in pipeline.drain()}
    answers = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    expected = dict(INGEST) | {body: code for body, code, answered in QUERIES if not answered}
    assert {body: attributes["error_code"]["StringValue"] for body, attributes in letters.items()} == expected
    assert sorted(answer["error"]["code"] for answer in answers) == sorted(
        code for _, code, answered in QUERIES if answered
    )
    # ... and no reason holds a value of its message (the bodies do: the DLQ keeps them unchanged)
    for body, attributes in letters.items():
        assert quoted(body), "each poison body carries canaries"
        for name, attribute in attributes.items():
            assert quoted(attribute["StringValue"]) == [], (attributes["error_code"]["StringValue"], name)
    for answer in answers:
        assert quoted(json.dumps(answer["error"])) == [], answer["error"]["code"]
