"""Issue 32: a claim that DynamoDB applies late can neither lower the recorded version nor let an older write win.

The version guard used to write claims with an unconditional ``BatchWriteItem`` and relied on a
timing assumption (a claim write sent while the namespace's claim lock had 4 s left is applied
within 2 s); DynamoDB promises no such bound. Here the fault proxy (relay_local.dynamodb_faults)
drops the connection of one claim write and applies it only when the test flushes it, after the
lock expired and another invocation claimed and wrote a newer version. Time is the guard's clock
moved on, never slept through. With the unconditional write this ended (4, 4, 4): the late claim
recorded v4 over v5 and the redelivered v4 was written over v5 (f567edc kept it as a strict xfail).
Claims are now conditional on the item as read, so the late one is refused.

The setup's own steps are checked with :func:`require` (a ``RuntimeError``), so a scenario that did
not happen as designed fails as such, not as the guard's defect.
"""

from __future__ import annotations

import time

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from relay_local.dynamodb_faults import DynamoDBFaultProxy
from tests.conftest import SAMPLE_TENANTS, FakeLambdaContext
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body
from tests.lambda_events import lambda_sqs_record
from vector_relay.dependencies import worker_dependencies
from vector_relay.ingest.guard_records import LOCK_SECONDS, RecordState

TABLE = "relay-write-versions"  # the pipeline's WRITE_VERSION_TABLE
VISIBILITY_TIMEOUT_SECONDS = 420  # the pipeline's ingest queue
TRIES = 5  # deliveries of one message before the scenario is given up (transient guard timeouts)


class ShiftedClock:
    """The wall clock, moved forward when the test says so (the guard's clock: leases, locks, message age)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def require(condition: bool, what: str) -> None:
    """A step of the scenario that must hold for the test to mean anything (not the defect under test)."""
    if not condition:
        raise RuntimeError(f"scenario did not go as designed: {what}")


def deliver_until_done(driver: SqsDriver, clock: ShiftedClock) -> None:
    """Deliver the queue's message until a delivery has no failure.

    On a starved machine a guard call may time out (1.5 s): a transient failure, whose claim lock
    is left to expire (the guard's clock is moved past it) before SQS's redelivery.
    """
    for _ in range(TRIES):
        response = driver.deliver_once()
        require(response is not None, "a message to deliver")
        if response == {"batchItemFailures": []}:
            return
        clock.offset += LOCK_SECONDS + 1
    raise RuntimeError(f"scenario did not go as designed: a delivery still failing after {TRIES} tries")


def recorded_version(record_id: str) -> int | None:
    key = {"namespace": {"S": SAMPLE_TENANTS["acme"]}, "record_id": {"S": record_id}}
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")
    return None if item is None else RecordState.from_item(item).version


def indexed_version(pipeline: Pipeline, record_id: str) -> int | None:
    record = pipeline.fetch("acme", [record_id]).get(record_id)
    return None if record is None else int(record.metadata["_relay_version"])


def test_a_claim_applied_late_neither_lowers_the_recorded_version_nor_lets_an_older_write_win(
    pipeline: Pipeline, dynamodb_faults: DynamoDBFaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = worker_dependencies(ingest_app.metrics).guard
    require(guard is not None, "the pipeline runs with the version guard on")
    assert guard is not None
    clock = ShiftedClock()
    monkeypatch.setattr(guard, "_clock", clock)
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    sqs = boto3.client("sqs")

    # GIVEN an invocation claiming version 4 of r whose claim write DynamoDB answers with a dropped
    # connection (the client gives up: the message fails, transiently) but applies later
    dynamodb_faults.script("TransactWriteItems", {"drop_then_apply_after_ms": 600_000}, table=TABLE)
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert_body("acme", ["r"], version=4))
    for _ in range(TRIES):
        [v4] = sqs.receive_message(QueueUrl=pipeline.queue_url, AttributeNames=["All"], MessageAttributeNames=["All"])[
            "Messages"
        ]
        event = {"Records": [lambda_sqs_record(v4, pipeline.queue_arn)]}
        with pytest.raises(BatchProcessingError, match="GuardUnavailableError"):  # its only record failed
            ingest_app.lambda_handler(event, FakeLambdaContext())
        if dynamodb_faults.pending() == 1:
            break
        # a guard call before the claim write timed out (a starved machine): the lock expires, SQS redelivers
        clock.offset += LOCK_SECONDS + 1
        sqs.change_message_visibility(
            QueueUrl=pipeline.queue_url, ReceiptHandle=v4["ReceiptHandle"], VisibilityTimeout=0
        )
    require(dynamodb_faults.pending() == 1 and recorded_version("r") is None, "v4's claim is held, not applied")

    # WHEN its claim lock has expired (a claim of unknown outcome never drops it) and another
    # invocation claims and writes version 5 (v4's message is invisible for the queue's 420 s)
    clock.offset += LOCK_SECONDS + 1
    driver.publish([upsert_body("acme", ["r"], version=5)])
    deliver_until_done(driver, clock)
    require((recorded_version("r"), indexed_version(pipeline, "r")) == (5, 5), "v5 is recorded and indexed")

    # AND only then does DynamoDB apply the first invocation's claim write
    require(dynamodb_faults.flush() == 1, "the held claim was forwarded")
    late = [e["status"] for e in dynamodb_faults.state()["journal"] if "forwarded" in e]
    require(len(late) == 1, "DynamoDB (moto) answered the late claim write")
    after_late_claim = recorded_version("r")

    # AND v4's message comes back after its visibility timeout, when that invocation's lease has ended
    clock.offset += VISIBILITY_TIMEOUT_SECONDS
    sqs.change_message_visibility(QueueUrl=pipeline.queue_url, ReceiptHandle=v4["ReceiptHandle"], VisibilityTimeout=0)
    deliver_until_done(driver, clock)

    # THEN version 5 is still the recorded version, and what the index holds: v4 was stale
    assert (after_late_claim, recorded_version("r"), indexed_version(pipeline, "r")) == (5, 5, 5)
