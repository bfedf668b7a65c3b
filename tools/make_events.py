"""Write the sample events in events/ (deterministic: same output on every run).

SQS events are shaped as Lambda's event source mapping builds them (compare
``sam local generate-event sqs receive-message``): one record per message with messageId,
receiptHandle, body, attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN and
awsRegion. The samples assume the index and tenants described in events/README.md.

Usage: python tools/make_events.py   (from the repository root; rewrites events/*.json)
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from pathlib import Path
from typing import Any

from vector_relay.contract.receipts import Receipt, receipt_id

REGION = "us-east-1"
ACCOUNT = "123456789012"
DIMENSION = 384
INGEST_QUEUE = "vector-relay-ingest"
QUERY_QUEUE = "vector-relay-query"
RECEIPT_RETRY_QUEUE = "vector-relay-receipt-retry"
REPLY_QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/vector-relay-example-replies"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:vector-relay-pinecone-api-key-AbCdEf"
SENT_AT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENTS = Path("events")


def vector(seed: int, dimension: int = DIMENSION) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(-1, 1), 4) for _ in range(dimension)]


def sqs_record(queue: str, index: int, body: str, name: str) -> dict[str, Any]:
    sent = SENT_AT_MS + index * 1000
    return {
        "messageId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"vector-relay/{name}/{index}")),
        "receiptHandle": f"AQEB{hashlib.sha256(f'{name}/{index}'.encode()).hexdigest()}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": str(sent),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(sent + 10),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def sqs_event(queue: str, name: str, bodies: list[str]) -> dict[str, Any]:
    return {"Records": [sqs_record(queue, i, body, name) for i, body in enumerate(bodies)]}


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def upsert(tenant: str, *records: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "op": "upsert", "tenant": tenant, "records": list(records)}


def record(rid: str, version: int, seed: int, **metadata: Any) -> dict[str, Any]:
    return {"id": rid, "version": version, "values": vector(seed), "metadata": metadata}


def query(**fields: Any) -> dict[str, Any]:
    return {"schema_version": 1, "op": "query", "tenant": "acme", "reply_to": REPLY_QUEUE_URL} | fields


VALID_UPSERTS = [
    upsert(
        "acme",
        record("doc-42#0", 17, 1, doc_id="doc-42", year=2024, tags=["pricing", "faq"]),
        record("doc-42#1", 17, 2, doc_id="doc-42", year=2024, tags=["pricing"]),
    ),
    upsert("globex", record("kb-7#0", 3, 3, doc_id="kb-7", year=2023, public=True)),
]


def ingest_poison() -> list[tuple[str, str]]:
    """(body, the error_code the message must be dead-lettered with), in batch order."""
    ok = record("doc-1#0", 1, 10, doc_id="doc-1")
    return [
        ('{"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [', "invalid_json"),
        (dumps(upsert("acme", ok) | {"priority": "high"}), "schema_violation"),
        (dumps(upsert("initech", ok)), "unknown_tenant"),
        (dumps(upsert("acme", ok | {"values": vector(11, 383)})), "dimension_mismatch"),
        (dumps(upsert("acme", ok | {"values": [*vector(12, 383), float("nan")]})), "non_finite_value"),
        (dumps(upsert("acme", ok | {"values": [0.0] * DIMENSION})), "zero_vector"),
        (dumps(upsert("acme", ok | {"metadata": {"text": "x" * 41_000}})), "metadata_too_large"),
        (dumps(upsert("acme", ok | {"metadata": {"author": {"name": "Ada"}}})), "metadata_type"),
        (dumps(upsert("acme", ok | {"metadata": {"$owner": "ada"}})), "metadata_key_invalid"),
        (dumps(upsert("acme", ok | {"id": "x" * 513})), "id_invalid"),
        (
            dumps(upsert("acme", *[{"id": f"r{i}", "version": 1, "values": [1.0]} for i in range(1001)])),
            "too_many_records",
        ),
        (
            dumps(
                {"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": {"year": {"$gt": "2020"}}}
            ),
            "invalid_filter",
        ),
        (
            dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": "globex"}),
            "purge_not_confirmed",
        ),
        (dumps(upsert("acme", ok) | {"schema_version": 2}), "unsupported_schema_version"),
        (dumps(query(vector=vector(13))), "unknown_op"),
        (
            dumps(upsert("acme", ok | {"sparse_values": {"indices": [7, 42], "values": [0.4, 0.1]}})),
            "sparse_not_supported",
        ),
        (dumps(upsert("acme", ok | {"sparse_values": {"indices": [7, 42], "values": [0.4]}})), "sparse_values_invalid"),
        (dumps(upsert("acme", ok | {"metadata": {"note": deep(201)}})), "json_too_deep"),
        (
            dumps(
                {
                    "schema_version": 1,
                    "op": "delete_by_filter",
                    "tenant": "acme",
                    "filter": {"$or": [{"doc_id": {"$exists": True}}, {"doc_id": {"$exists": False}}]},
                }
            ),
            "delete_not_confirmed",
        ),
        (
            dumps(
                {
                    "schema_version": 1,
                    "op": "delete_by_filter",
                    "tenant": "acme",
                    "filter": {"_relay_version": {"$exists": True}},
                }
            ),
            "filter_field_reserved",
        ),
    ]


def deep(levels: int) -> Any:
    """An object nested ``levels`` deep (the whole body then nests deeper still)."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def query_poison() -> list[tuple[str, str]]:
    return [
        (
            dumps(query(vector=vector(20), reply_to=f"https://sqs.{REGION}.amazonaws.com/999999999999/elsewhere")),
            "reply_to_not_allowed",
        ),
        (dumps(query(vector=vector(21), id="doc-42#0")), "query_target_invalid"),
        (dumps(query(vector=vector(22), top_k=10_001)), "top_k_out_of_range"),
        (dumps(query(vector=vector(23), filter={"tags": {"$in": "pricing"}})), "invalid_filter"),
        (dumps(query(vector=vector(24), min_lsn="1234")), "min_lsn_invalid"),
    ]


def receipt(message_event: str, index: int, **fields: Any) -> str:
    """A write receipt, as the ingest worker sends it, for record ``index`` of the sample ``message_event``."""
    message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"vector-relay/{message_event}/{index}"))
    identity = receipt_id(
        message_id,
        fields["fate"],
        fields["op"],
        fields.get("records", ()),
        fields.get("stale", ()),
        fields.get("error_code"),
    )
    sent = SENT_AT_MS + index * 1000
    body = {"schema_version": 1, "type": "receipt", "receipt_id": identity, "message_id": message_id, **fields}
    return Receipt.model_validate(body | {"at": sent + 1500, "first_sent_at": sent}).body()


def receipts_for_retry() -> list[str]:
    """Receipts a tenant's queue did not take: one for the first upsert sample, one for a dead letter."""
    applied = [{"id": "doc-42#0", "version": 17}, {"id": "doc-42#1", "version": 17}]
    return [
        receipt(
            "ingest-upsert",
            0,
            tenant="acme",
            op="upsert",
            fate="applied",
            namespace="tenant-acme",
            records=applied,
            record_count=2,
            stale=[],
            stale_count=0,
            lsn=1,
        ),
        receipt(
            "ingest-mixed-with-poison",
            4,
            tenant="acme",
            op="upsert",
            fate="dead_lettered",
            error_code="dimension_mismatch",
            error_codes=["dimension_mismatch"],
        ),
    ]


def write(name: str, event: dict[str, Any]) -> None:
    (EVENTS / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    write("ingest-upsert", sqs_event(INGEST_QUEUE, "ingest-upsert", [dumps(m) for m in VALID_UPSERTS]))
    deletes = {"schema_version": 1, "op": "delete", "tenant": "acme", "records": [{"id": "doc-42#1", "version": 18}]}
    write("ingest-delete", sqs_event(INGEST_QUEUE, "ingest-delete", [dumps(deletes)]))
    by_filter = {
        "schema_version": 1,
        "op": "delete_by_filter",
        "tenant": "acme",
        "filter": {"doc_id": {"$eq": "doc-42"}},
    }
    write("ingest-delete-by-filter", sqs_event(INGEST_QUEUE, "ingest-delete-by-filter", [dumps(by_filter)]))
    purge = {"schema_version": 1, "op": "purge_tenant", "tenant": "globex", "confirm": "globex"}
    write("ingest-purge-tenant", sqs_event(INGEST_QUEUE, "ingest-purge-tenant", [dumps(purge)]))
    mixed = [dumps(VALID_UPSERTS[0]), *(body for body, _ in ingest_poison()), dumps(VALID_UPSERTS[1])]
    write("ingest-mixed-with-poison", sqs_event(INGEST_QUEUE, "ingest-mixed-with-poison", mixed))
    queries = [
        query(
            vector=vector(1), top_k=3, filter={"year": {"$gte": 2023}}, include_metadata=True, correlation_id="c-123"
        ),
        query(id="doc-42#0", top_k=5, correlation_id="c-124"),
    ]
    write("query", sqs_event(QUERY_QUEUE, "query", [dumps(q) for q in queries]))
    # read-your-writes: answered once acme's namespace has indexed its first write (LSN 1), with "fresh"
    fresh = query(vector=vector(2), top_k=3, include_metadata=True, min_lsn=1, correlation_id="c-125")
    write("query-fresh", sqs_event(QUERY_QUEUE, "query-fresh", [dumps(fresh)]))
    query_mixed = [dumps(queries[0]), *(body for body, _ in query_poison())]
    write("query-mixed-with-poison", sqs_event(QUERY_QUEUE, "query-mixed-with-poison", query_mixed))
    write("receipts-retry", sqs_event(RECEIPT_RETRY_QUEUE, "receipts-retry", receipts_for_retry()))
    for step, name in [
        ("createSecret", "create-secret"),
        ("setSecret", "set-secret"),
        ("testSecret", "test-secret"),
        ("finishSecret", "finish-secret"),
    ]:
        token = str(uuid.uuid5(uuid.NAMESPACE_URL, "vector-relay/rotation"))
        write(f"rotation-{name}", {"Step": step, "SecretId": SECRET_ARN, "ClientRequestToken": token})
    # EventBridge's scheduled event, as `sam local generate-event cloudwatch scheduled-event` shapes it.
    write(
        "reconcile-scheduled",
        {
            "version": "0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "vector-relay/reconcile")),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": "2026-01-01T00:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/vector-relay-ReconcileSchedule"],
            "detail": {},
        },
    )


if __name__ == "__main__":
    main()
