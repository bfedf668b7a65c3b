"""The ingest worker's receipts: which fate each message gets from what its batch wrote, and who is told.

No network: the batch's outcome is built by hand (what the runner reports: each (namespace, id) a
successful request wrote, with its LSN), the planner's ``coalesce`` decides the winners as in a
real batch, and the receipts are read back as the contract's model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from tests.lambda_events import lambda_sqs_record
from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, DeleteRecord, UpsertRecord
from vector_relay.contract.receipts import RECEIPT_MAX_LISTED, Receipt
from vector_relay.errors import PoisonMessageError, Problem
from vector_relay.ingest.planning import PlannableWrite, coalesce
from vector_relay.ingest.receipts import Landed, ReceiptBook
from vector_relay.ingest.runner import WriteOutcome
from vector_relay.pinecone.wire import EncodedUpsert, encode_record
from vector_relay.sqs.message_age import first_message_id
from vector_relay.tenancy import TenantRegistry

SHARED_QUEUE = "arn:aws:sqs:us-east-1:123456789012:ingest"
BOUND_QUEUE = "arn:aws:sqs:us-east-1:123456789012:relay-tenant-bound-ingest"
REGISTRY = TenantRegistry.from_mapping(
    {
        "acme": {"namespace": "ns-acme", "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/acme-r"},
        "globex": {"namespace": "ns-globex", "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/globex-r"},
        "initech": "ns-initech",  # no receipt queue: no receipts
        "bound": {
            "namespace": "ns-bound",
            "queues": [BOUND_QUEUE],
            "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/bound-r",
        },
    },
    source="test",
)


def record(message_id: str, body: str = "{}", *, queue: str = SHARED_QUEUE, **attributes: str) -> SQSRecord:
    message = {
        "MessageId": message_id,
        "ReceiptHandle": "handle",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1765000000000"},
        "MessageAttributes": {name: {"DataType": "String", "StringValue": v} for name, v in attributes.items()},
    }
    message["Attributes"]["ApproximateFirstReceiveTimestamp"] = "1765000000001"
    return SQSRecord(lambda_sqs_record(message, queue))


def upsert(tenant: str, *records: tuple[str, int]) -> EncodedUpsert:
    encoded = tuple(
        encode_record(UpsertRecord.model_construct(id=i, version=v, values=[1.0], sparse_values=None, metadata=None))
        for i, v in records
    )
    return EncodedUpsert(tenant=tenant, records=encoded)


def delete(tenant: str, *records: tuple[str, int]) -> DeleteMessage:
    return DeleteMessage.model_construct(
        schema_version=1,
        op="delete",
        tenant=tenant,
        records=[DeleteRecord.model_construct(id=i, version=v) for i, v in records],
    )


def book_after(
    messages: list[tuple[str, PlannableWrite]], written: dict[tuple[str, str], int | None], **filter_lsns: int | None
) -> list[dict[str, Any]]:
    """The receipts of a batch of ``messages`` (all done) whose requests wrote ``written``."""
    batch = [(message_id, REGISTRY.namespace_for(message.tenant), message) for message_id, message in messages]
    coalesced = coalesce(batch)
    outcome = WriteOutcome(written=dict(written), filter_lsns=dict(filter_lsns))
    book = ReceiptBook(REGISTRY, clock=lambda: 1765000001.0)
    for message_id, namespace, message in batch:
        book.done(record(message_id), namespace, message, coalesced, outcome)
    receipts = [json.loads(pending.body) for pending in book.pending]
    for receipt in receipts:
        Receipt.model_validate(receipt)
    return receipts


def test_a_message_superseded_in_its_batch_by_an_equal_version_was_applied_by_that_write() -> None:
    [first, second] = book_after(
        [("m1", upsert("acme", ("a", 2))), ("m2", upsert("acme", ("a", 2)))], {("ns-acme", "a"): 17}
    )

    assert (first["fate"], first["records"], first["lsn"]) == ("applied", [{"id": "a", "version": 2}], 17)
    assert (second["fate"], second["lsn"]) == ("applied", 17)


def test_a_message_superseded_by_a_higher_version_in_its_batch_is_stale() -> None:
    [older, newer] = book_after(
        [("m1", upsert("acme", ("a", 1), ("b", 1))), ("m2", delete("acme", ("a", 2)))],
        {("ns-acme", "a"): 30, ("ns-acme", "b"): 29},
    )

    assert older["fate"] == "applied"  # b was written
    assert older["records"] == [{"id": "b", "version": 1}]
    assert older["stale"] == [{"id": "a", "version": 1}]
    assert older["lsn"] == 29
    assert (newer["fate"], newer["op"], newer["lsn"]) == ("applied", "delete", 30)


def test_nothing_written_is_stale_and_an_unknown_lsn_makes_the_receipts_lsn_unknown() -> None:
    [stale, unknown] = book_after(
        [("m1", upsert("acme", ("a", 1))), ("m2", upsert("globex", ("x", 1), ("y", 1)))],
        {("ns-globex", "x"): 5, ("ns-globex", "y"): None},  # a was dropped by the guard: not written
    )

    assert (stale["fate"], stale["record_count"], stale["stale_count"], stale["lsn"]) == ("stale", 0, 1, None)
    assert (unknown["fate"], unknown["record_count"], unknown["lsn"]) == ("applied", 2, None)


def test_a_filter_operation_is_applied_with_its_requests_lsn() -> None:
    message = DeleteByFilterMessage.model_construct(
        schema_version=1, op="delete_by_filter", tenant="acme", filter={"doc": {"$eq": "d"}}, confirm=None
    )

    [receipt] = book_after([("m1", message)], {}, m1=44)

    assert (receipt["fate"], receipt["op"], receipt["records"], receipt["lsn"]) == (
        "applied",
        "delete_by_filter",
        [],
        44,
    )


def test_a_tenant_without_a_receipt_queue_gets_none_and_each_receipt_goes_to_its_own_tenants_queue() -> None:
    batch = [("m1", upsert("initech", ("a", 1))), ("m2", upsert("globex", ("a", 1)))]
    coalesced = coalesce([(i, REGISTRY.namespace_for(m.tenant), m) for i, m in batch])
    outcome = WriteOutcome(written={("ns-initech", "a"): 1, ("ns-globex", "a"): 2})
    book = ReceiptBook(REGISTRY)
    for message_id, message in batch:
        book.done(record(message_id), REGISTRY.namespace_for(message.tenant), message, coalesced, outcome)

    assert [(pending.destination, pending.message_id) for pending in book.pending] == [
        ("https://sqs.us-east-1.amazonaws.com/123456789012/globex-r", "m2")
    ]


def test_records_beyond_the_listing_bound_are_counted_not_listed() -> None:
    ids = [(f"r{i}", 1) for i in range(RECEIPT_MAX_LISTED + 5)]

    [receipt] = book_after([("m1", upsert("acme", *ids))], {("ns-acme", i): 3 for i, _ in ids})

    assert len(receipt["records"]) == RECEIPT_MAX_LISTED
    assert receipt["record_count"] == RECEIPT_MAX_LISTED + 5


def test_a_copy_names_the_producers_original_message_and_duplicates_share_a_receipt_id() -> None:
    coalesced = coalesce([("copy", "ns-acme", upsert("acme", ("a", 1)))])
    outcome = WriteOutcome(written={("ns-acme", "a"): 8})
    book = ReceiptBook(REGISTRY)
    book.done(record("copy", first_message_id="original"), "ns-acme", upsert("acme", ("a", 1)), coalesced, outcome)
    book.done(record("copy", first_message_id="original"), "ns-acme", upsert("acme", ("a", 1)), coalesced, outcome)

    first, again = (json.loads(pending.body) for pending in book.pending)
    assert first["message_id"] == "original"
    assert first["receipt_id"] == again["receipt_id"]


POISON = PoisonMessageError([Problem("dimension_mismatch", "records[0].values", "expected 8 values")])


def test_a_dead_letter_is_told_only_to_a_tenant_its_queue_may_speak_for() -> None:
    book = ReceiptBook(REGISTRY)
    body = json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [{"values": [9.5]}]})

    book.dead_lettered(record("m1", body), POISON)
    book.dead_lettered(record("m2", "not json"), POISON)
    book.dead_lettered(record("m3", json.dumps({"tenant": "nobody"})), POISON)
    book.dead_lettered(record("m4", json.dumps({"tenant": "bound", "op": "upsert"})), POISON)  # not its queue
    book.dead_lettered(record("m6", json.dumps({"tenant": "bound", "op": "delete"}), queue=BOUND_QUEUE), POISON)
    book.dead_lettered(record("m5", json.dumps({"tenant": "acme", "op": "drop_table"})), POISON)

    receipts = [json.loads(pending.body) for pending in book.pending]
    assert [(r["message_id"], r["op"], r["error_code"]) for r in receipts] == [
        ("m1", "upsert", "dimension_mismatch"),
        ("m6", "delete", "dimension_mismatch"),  # from the tenant's own queue
        ("m5", None, "dimension_mismatch"),  # an op the contract does not know is not repeated
    ]
    for receipt in receipts:
        Receipt.model_validate(receipt)
        assert "9.5" not in json.dumps(receipt)
        assert "expected 8 values" not in json.dumps(receipt)  # no error detail: it may quote input


def test_a_message_dead_lettered_after_part_of_it_was_written_names_what_is_in_the_index() -> None:
    # M's records went out in two requests: the first landed (a and b, LSN 41), the second was rejected
    message = upsert("acme", ("a", 1), ("b", 1), ("c", 1))
    coalesced = coalesce([("m", "ns-acme", message)])
    outcome = WriteOutcome(written={("ns-acme", "a"): 41, ("ns-acme", "b"): 41})
    rejected = PoisonMessageError([Problem("pinecone_rejected", "", "rejected by Pinecone")])
    book = ReceiptBook(REGISTRY)
    body = json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": []})

    book.dead_lettered(record("m", body), rejected, Landed("ns-acme", message, coalesced, outcome))
    book.dead_lettered(record("n", body), rejected, None)  # nothing of it written

    partly, nothing = (Receipt.model_validate_json(pending.body) for pending in book.pending)
    assert (partly.fate, partly.error_code, partly.lsn, partly.namespace) == (
        "dead_lettered",
        "pinecone_rejected",
        41,
        "ns-acme",
    )
    assert [(r.id, r.version) for r in partly.records] == [("a", 1), ("b", 1)]
    assert partly.record_count == 2
    assert (nothing.record_count, nothing.records, nothing.lsn) == (0, [], None)
    assert "records" not in json.loads(nothing.body())  # a dead letter that wrote nothing says nothing of records


@pytest.mark.parametrize(
    "attribute",
    [
        {"DataType": "Binary", "BinaryValue": "AAEC"},  # no string value at all
        {"DataType": "String", "StringValue": "x" * 101},
        {"DataType": "String", "StringValue": "not an id; DROP"},
        {"DataType": "String", "StringValue": ""},
    ],
)
def test_a_first_message_id_not_shaped_like_an_sqs_message_id_is_ignored(attribute: dict[str, str]) -> None:
    message = {
        "MessageId": "own-id",
        "ReceiptHandle": "handle",
        "Body": "{}",
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1765000000000",
            "ApproximateFirstReceiveTimestamp": "1765000000001",
        },
        "MessageAttributes": {"first_message_id": attribute},
    }
    raw = lambda_sqs_record(message, SHARED_QUEUE)
    if attribute["DataType"] == "Binary":  # as Lambda builds it: a binaryValue, no stringValue key
        raw["messageAttributes"]["first_message_id"] = {"binaryValue": "AAEC", "dataType": "Binary"}

    assert first_message_id(SQSRecord(raw)) == "own-id"
    assert first_message_id(record("copy", first_message_id="0c1f7a52-3b8e-4d5a-9f61-2e7b8c4d9a10")) == (
        "0c1f7a52-3b8e-4d5a-9f61-2e7b8c4d9a10"
    )
