"""Write receipt contract v1: the spec's three receipts parse and are sent as written, every copy of a receipt has
the same receipt_id, a receipt that contradicts its fate is refused, and a read-your-writes query asks for the highest
LSN its applied receipts name (or says why it cannot)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from tests.receipt_samples import AT, SENT, applied_receipt
from vector_relay import producer
from vector_relay.contract.receipts import RECEIPT_MAX_LISTED, Receipt, RecordVersion, receipt_id

REPLY = "https://sqs.us-east-1.amazonaws.com/123456789012/replies"


def applied(message_id: str = "m-1", lsn: int | None = 1234, tenant: str = "acme", at: int = AT) -> dict[str, Any]:
    return applied_receipt(message_id, lsn=lsn, tenant=tenant, at=at)


def stale(message_id: str = "m-2") -> dict[str, Any]:
    dropped = [{"id": "doc-7", "version": 3}]
    return {
        "schema_version": 1,
        "type": "receipt",
        "receipt_id": receipt_id(message_id, "stale", "delete", [], dropped, None),
        "message_id": message_id,
        "tenant": "acme",
        "op": "delete",
        "fate": "stale",
        "namespace": "tenant-acme",
        "records": [],
        "record_count": 0,
        "stale": dropped,
        "stale_count": 1,
        "lsn": None,
        "at": AT,
        "first_sent_at": SENT,
    }


def dead_lettered(message_id: str = "m-3", op: str | None = "upsert", at: int = AT) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "type": "receipt",
        "receipt_id": receipt_id(message_id, "dead_lettered", op, [], [], "dimension_mismatch"),
        "message_id": message_id,
        "tenant": "acme",
        "op": op,
        "fate": "dead_lettered",
        "error_code": "dimension_mismatch",
        "error_codes": ["dimension_mismatch"],
        "at": at,
        "first_sent_at": SENT,
    }


# ------------------------------------------------------------------ the receipt as the spec writes it


@pytest.mark.parametrize("body", [applied(), stale(), dead_lettered(), dead_lettered(op=None)])
def test_each_fate_parses_and_is_sent_with_exactly_the_fields_the_spec_gives_it(body: dict[str, Any]) -> None:
    receipt = Receipt.model_validate_json(json.dumps(body))

    assert json.loads(receipt.body()) == body


def test_a_dead_letter_carries_no_records_counts_lsn_or_namespace_and_the_others_no_error_codes() -> None:
    dead = json.loads(Receipt.model_validate(dead_lettered()).body())
    written = json.loads(Receipt.model_validate(applied()).body())

    assert not {"namespace", "records", "record_count", "stale", "stale_count", "lsn"} & set(dead)
    assert not {"error_code", "error_codes"} & set(written)
    assert written["lsn"] == 1234


def test_an_applied_receipt_without_an_lsn_says_null_rather_than_leaving_it_out() -> None:
    assert json.loads(Receipt.model_validate(applied(lsn=None)).body())["lsn"] is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"fate": "dead_lettered"}, "a dead_lettered receipt names its error_code"),
        (
            {"fate": "dead_lettered", "error_code": "x", "stale": [{"id": "a", "version": 1}], "stale_count": 1},
            "a dead_lettered receipt names no stale records",
        ),
        (
            {"fate": "dead_lettered", "error_code": "x", "records": [], "record_count": 0, "lsn": 5},
            "a dead_lettered receipt has an lsn only for records written before it was refused",
        ),
        ({"namespace": None}, "an applied receipt names its namespace"),
        ({"error_code": "x"}, "only a dead_lettered receipt has error codes"),
        ({"record_count": 0}, "record_count and stale_count count at least the records listed"),
        ({"fate": "stale"}, "a stale receipt wrote nothing"),
    ],
)
def test_a_receipt_that_contradicts_its_fate_is_refused_with_why(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        Receipt.model_validate(applied() | change)


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 2},
        {"type": "reply"},
        {"fate": "lost"},
        {"op": "query"},
        {"receipt_id": "5f0c"},
        {"receipt_id": "G" * 32},
        {"lsn": -1},
        {"lsn": "1234"},
        {"at": 1.5},
        {"values": [0.1]},  # never values nor metadata: no field for them
        {"metadata": {"year": 2024}},
        {"records": [{"id": "a", "version": 1, "metadata": {}}]},
        {"records": [{"id": f"d{i}", "version": 1} for i in range(RECEIPT_MAX_LISTED + 1)], "record_count": 500},
    ],
    ids=repr,
)
def test_what_is_not_a_receipt_v1_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Receipt.model_validate_json(json.dumps(applied() | change))


def test_a_hundred_records_are_listed_and_the_count_gives_the_total() -> None:
    listed = [{"id": f"d{i}", "version": 1} for i in range(RECEIPT_MAX_LISTED)]
    body = applied() | {"records": listed, "record_count": 2500}

    receipt = Receipt.model_validate(body)

    assert (len(receipt.records), receipt.record_count) == (100, 2500)


# ------------------------------------------------------------------ receipt_id


def test_receipt_id_is_32_hex_of_sha256_over_the_canonical_string() -> None:
    canonical = (
        '{"error_code":null,"fate":"applied","message_id":"m-1","op":"upsert",'
        '"records":[["doc-42#0",17]],"stale":[],"v":1}'
    )

    value = receipt_id("m-1", "applied", "upsert", [{"id": "doc-42#0", "version": 17}], [], None)

    assert value == hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert value == "e268171bbe473a0400b274d68ff3f4a7"  # pinned: the worker and every reader must agree


def test_every_copy_has_the_same_id_however_its_records_are_given_or_ordered() -> None:
    as_mappings = [{"id": "b", "version": 2}, {"id": "a", "version": 1}]
    as_models = [RecordVersion(id="a", version=1), RecordVersion(id="b", version=2)]
    as_pairs = [("b", 2), ("a", 1)]

    ids = {receipt_id("m-1", "applied", "upsert", records, [("c", 3)], None) for records in (as_mappings, as_models)}
    ids.add(receipt_id("m-1", "applied", "upsert", as_pairs, [{"id": "c", "version": 3}], None))

    assert len(ids) == 1


@pytest.mark.parametrize(
    "other",
    [
        ("m-2", "applied", "upsert", [("a", 1)], [], None),  # another message
        ("m-1", "dead_lettered", "upsert", [], [], "dimension_mismatch"),  # its dead letter, before a redrive
        ("m-1", "stale", "upsert", [], [("a", 1)], None),  # the same record dropped, not written
        ("m-1", "applied", "delete", [("a", 1)], [], None),
        ("m-1", "applied", "upsert", [("a", 2)], [], None),
    ],
)
def test_another_receipt_has_another_id(other: tuple[Any, ...]) -> None:
    assert receipt_id(*other) != receipt_id("m-1", "applied", "upsert", [("a", 1)], [], None)


# ------------------------------------------------------------------ read-your-writes from receipts


def receipts(*bodies: dict[str, Any]) -> list[Receipt]:
    return [Receipt.model_validate(body) for body in bodies]


def test_the_query_waits_for_the_highest_lsn_of_the_applied_receipts() -> None:
    after = receipts(applied("m-1", lsn=7), applied("m-2", lsn=12), stale("m-3"), dead_lettered("m-4"))

    question = producer.query("acme", reply_to=REPLY, id="doc-1", after=after)

    assert producer.min_lsn_after(after, "acme") == 12
    assert question.min_lsn == 12
    assert json.loads(producer.body_of(question))["min_lsn"] == 12


def test_the_query_says_when_the_newest_applied_write_was_sent_for_the_freshness_metric() -> None:
    sent_later = applied("m-2", lsn=12) | {"first_sent_at": SENT + 400}
    after = receipts(applied("m-1", lsn=7), sent_later, dead_lettered("m-4") | {"first_sent_at": SENT + 900})

    question = producer.query("acme", reply_to=REPLY, id="doc-1", after=after)

    assert question.writes_sent_at == SENT + 400  # the applied ones only: a dead letter wrote nothing
    assert producer.query("acme", reply_to=REPLY, id="doc-1", min_lsn=3).writes_sent_at is None


def test_receipts_with_nothing_applied_ask_for_nothing() -> None:
    after = receipts(stale(), dead_lettered())

    assert producer.min_lsn_after(after, "acme") is None
    assert "min_lsn" not in json.loads(producer.body_of(producer.query("acme", reply_to=REPLY, id="d", after=after)))
    assert "min_lsn" not in json.loads(producer.body_of(producer.query("acme", reply_to=REPLY, id="d")))


def test_a_min_lsn_given_beside_receipts_asks_for_the_higher() -> None:
    after = receipts(applied(lsn=7))

    assert producer.query("acme", reply_to=REPLY, id="d", after=after, min_lsn=3).min_lsn == 7
    assert producer.query("acme", reply_to=REPLY, id="d", after=after, min_lsn=30).min_lsn == 30


def test_an_applied_receipt_without_an_lsn_cannot_be_waited_for_and_says_which() -> None:
    after = receipts(applied("m-1", lsn=7), applied("m-9", lsn=None))
    unknown = after[1].receipt_id

    with pytest.raises(ValueError, match=rf"receipt {unknown} \(message m-9\) was applied without an LSN"):
        producer.min_lsn_after(after, "acme")
    with pytest.raises(ValueError, match="whether a query reflects it cannot be checked"):
        producer.query("acme", reply_to=REPLY, id="d", after=after)


def test_another_tenants_receipt_is_refused_not_ignored() -> None:
    after = receipts(applied("m-1", lsn=7), applied("m-2", lsn=99, tenant="globex"))

    with pytest.raises(ValueError, match="belongs to tenant 'globex': a query of tenant 'acme' cannot wait for it"):
        producer.min_lsn_after(after, "acme")


def test_the_latest_receipt_of_a_message_is_the_one_decided_last() -> None:
    dead, redriven = receipts(dead_lettered("m-1", at=AT), applied("m-1", at=AT + 5000))
    wait = producer.ReceiptWait([dead, redriven], missing=["m-2"])

    assert wait.of("m-1") == [dead, redriven]
    assert wait.latest("m-1") == redriven
    assert wait.latest("m-2") is None
    assert not wait.complete
