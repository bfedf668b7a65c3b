"""The producer library's receipt reader against moto's SQS: the receipts of the wanted messages are returned once
(a copy is deleted, not returned again), deleted, and ordered by when each fate was decided; every other message on
the receipt queue is left there, visible at once; a wait that ends first names the messages without a receipt; and
``Publisher.publish`` names the message id of each message it sent, which is what receipts name."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tests.integration.test_producer import FlakySqs
from tests.receipt_samples import applied_receipt
from vector_relay.contract.receipts import Receipt, receipt_id
from vector_relay.producer import Publisher, ReceiptReader, purge_tenant, wait_for_receipts

AT = 1765087200123


def applied(message_id: str, *, lsn: int | None = 10, at: int = AT, tenant: str = "acme") -> Receipt:
    records = [{"id": f"{message_id}-doc#0", "version": 3}]
    return Receipt.model_validate(applied_receipt(message_id, lsn=lsn, at=at, tenant=tenant, records=records))


def dead_lettered(message_id: str, *, at: int = AT) -> Receipt:
    return Receipt.model_validate(
        {
            "schema_version": 1,
            "type": "receipt",
            "receipt_id": receipt_id(message_id, "dead_lettered", "upsert", [], [], "dimension_mismatch"),
            "message_id": message_id,
            "tenant": "acme",
            "op": "upsert",
            "fate": "dead_lettered",
            "error_code": "dimension_mismatch",
            "error_codes": ["dimension_mismatch"],
            "at": at,
            "first_sent_at": AT - 1000,
        }
    )


@pytest.fixture
def receipt_queue(aws: str) -> str:
    return str(boto3.client("sqs").create_queue(QueueName="relay-tenant-acme-receipts")["QueueUrl"])


def put(queue_url: str, *bodies: str) -> None:
    for body in bodies:
        boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)


def left_on(queue_url: str) -> tuple[int, int, list[str]]:
    """(visible, in flight) as SQS counts them, and the bodies of what is there (read without consuming)."""
    sqs = boto3.client("sqs")
    names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    counts = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    seen = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    bodies = [m["Body"] for m in seen]
    return int(counts["ApproximateNumberOfMessages"]), int(counts["ApproximateNumberOfMessagesNotVisible"]), bodies


def stopped_clock(looks: int) -> Callable[[], float]:
    """A clock that stands at 0 for the deadline and ``looks`` checks of the time left, then is past any deadline."""
    readings = itertools.chain([0.0] * (1 + looks), itertools.repeat(1e9))
    return lambda: next(readings)


def test_the_wanted_receipts_are_returned_once_deleted_and_everything_else_stays_visible(receipt_queue: str) -> None:
    # GIVEN a receipt queue with m-1's receipt twice (SQS delivered it twice), m-2's, another producer's, and no receipt
    mine, copy_of_mine, also_mine = applied("m-1"), applied("m-1"), dead_lettered("m-2")
    other, junk = applied("someone-else").body(), "not a receipt"
    put(receipt_queue, mine.body(), other, copy_of_mine.body(), junk, also_mine.body())

    # WHEN a producer waits for m-1 and m-2
    found = wait_for_receipts(boto3.client("sqs"), receipt_queue, ["m-1", "m-2"], timeout=60)

    # THEN it has each receipt once, in the order asked; they are gone; the rest is there and visible at once
    assert found.receipts == [mine, also_mine]
    assert (found.missing, found.complete) == ([], True)
    visible, in_flight, bodies = left_on(receipt_queue)
    assert (visible, in_flight) == (2, 0)
    assert sorted(bodies) == sorted([other, junk])


def test_a_copy_arriving_after_its_receipt_was_returned_is_deleted_and_not_returned_again(receipt_queue: str) -> None:
    reader = ReceiptReader(boto3.client("sqs"), receipt_queue, poll_seconds=0, clock=stopped_clock(looks=3))
    put(receipt_queue, applied("m-1").body())
    assert [r.message_id for r in reader.wait(["m-1"], timeout=60).receipts] == ["m-1"]

    put(receipt_queue, applied("m-1").body())  # SQS delivers the same receipt again
    again = reader.wait(["m-1"], timeout=60)

    assert (again.receipts, again.missing) == ([], ["m-1"])
    assert left_on(receipt_queue) == (0, 0, [])  # the copy was consumed


def test_a_dead_letter_and_the_applied_receipt_of_its_redrive_are_both_returned_earliest_first(
    receipt_queue: str,
) -> None:
    dead, redriven = dead_lettered("m-1", at=AT), applied("m-1", at=AT + 60_000)
    put(receipt_queue, redriven.body(), dead.body())

    found = wait_for_receipts(boto3.client("sqs"), receipt_queue, ["m-1"], timeout=60)

    assert found.receipts == [dead, redriven]
    assert found.latest("m-1") == redriven
    assert found.latest("m-1").fate == "applied"  # type: ignore[union-attr]


def test_at_the_deadline_what_arrived_is_returned_with_the_missing_ids_and_the_others_are_released(
    receipt_queue: str,
) -> None:
    other = applied("someone-else").body()
    put(receipt_queue, applied("m-1").body(), other)

    # two looks (the receipts; then an empty queue, as the other is held), then the clock is past the deadline
    found = wait_for_receipts(
        boto3.client("sqs"), receipt_queue, ["m-1", "m-never", "m-1"], timeout=5, poll_seconds=0, clock=stopped_clock(2)
    )

    assert [r.message_id for r in found.receipts] == ["m-1"]
    assert (found.missing, found.complete) == (["m-never"], False)
    assert left_on(receipt_queue) == (1, 0, [other])


class FailingSqs:
    """moto's client, with one chosen call raising once, as a dropped connection would."""

    def __init__(self, failing: str, on_call: int) -> None:
        self.real = boto3.client("sqs")
        self.failing = failing
        self.on_call = on_call
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)
        if name != self.failing:
            return method

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.on_call:
                raise ConnectionError(f"{name}: the connection dropped")
            return method(**kwargs)

        return call


def test_a_receipt_whose_delete_failed_is_visible_again_at_once_for_the_next_wait(receipt_queue: str) -> None:
    sqs = FailingSqs("delete_message_batch", on_call=1)
    reader = ReceiptReader(sqs, receipt_queue, poll_seconds=0)  # type: ignore[arg-type]
    put(receipt_queue, applied("m-1").body())

    with pytest.raises(ConnectionError):
        reader.wait(["m-1"], timeout=60)

    assert left_on(receipt_queue)[:2] == (1, 0)
    assert [r.message_id for r in reader.wait(["m-1"], timeout=60).receipts] == ["m-1"]
    assert left_on(receipt_queue) == (0, 0, [])


def test_a_receipt_taken_by_a_wait_that_then_failed_is_returned_by_the_next_wait(receipt_queue: str) -> None:
    sqs = FailingSqs("receive_message", on_call=2)  # the first look takes m-1's receipt; the second raises
    reader = ReceiptReader(sqs, receipt_queue, poll_seconds=0, clock=stopped_clock(looks=3))  # type: ignore[arg-type]
    put(receipt_queue, applied("m-1").body())

    with pytest.raises(ConnectionError):
        reader.wait(["m-1", "m-2"], timeout=60)

    assert left_on(receipt_queue) == (0, 0, [])  # taken off the queue...
    assert [r.message_id for r in reader.wait(["m-1"], timeout=60).receipts] == ["m-1"]  # ...and not lost


def test_publish_names_the_sqs_message_id_of_each_message_in_the_order_given_through_retries(aws: str) -> None:
    queue = boto3.client("sqs").create_queue(QueueName="relay-ingest")["QueueUrl"]
    messages = [purge_tenant(f"t{i}") for i in range(14)]
    bodies = [m.model_dump_json(exclude_none=True) for m in messages]
    # two batch calls (10 + 4 messages): in each, one message is refused once and sent again after the others;
    # the fifth is refused for good
    flaky = FlakySqs(
        [
            {bodies[1]: ("ServiceUnavailable", False), bodies[4]: ("InvalidMessageContents", True)},
            {},
            {bodies[11]: ("ServiceUnavailable", False)},
        ]
    )

    result = Publisher(queue, sqs=flaky, sleep=lambda _: None).publish(messages)  # type: ignore[arg-type]

    arrived = {m["MessageId"]: m["Body"] for m in drain(queue)}
    assert (flaky.calls, result.retried) == (4, 2)  # the second and the twelfth arrived after those behind them
    assert len(result.message_ids) == len(set(result.message_ids)) == result.sent == 13
    assert [arrived[i] for i in result.message_ids] == [b for n, b in enumerate(bodies) if n != 4]
    assert [sent.index for sent in result.published] == [n for n in range(14) if n != 4]
    assert result.message_ids_of(4) == []
    assert [arrived[i] for i in result.message_ids_of(11)] == [bodies[11]]


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
        entries: Any = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    return messages


def test_a_split_upsert_names_each_part(aws: str) -> None:
    from tests.integration.test_ingest import vector
    from vector_relay.producer import upsert

    queue = boto3.client("sqs").create_queue(QueueName="relay-ingest")["QueueUrl"]
    records = [{"id": f"r{i}", "version": 1, "values": vector(i)} for i in range(40)]

    result = Publisher(queue, sqs=boto3.client("sqs"), max_bytes=60_000).publish(
        [purge_tenant("globex"), upsert("acme", records), purge_tenant("initech")]
    )

    parts = result.message_ids_of(1)
    arrived = {m["MessageId"]: json.loads(m["Body"]) for m in drain(queue)}
    assert len(parts) > 1
    assert sorted(r["id"] for i in parts for r in arrived[i]["records"]) == sorted(r["id"] for r in records)
    assert result.message_ids == [*result.message_ids_of(0), *parts, *result.message_ids_of(2)]
