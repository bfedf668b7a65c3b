"""Poison goes to the DLQ on first receive, untouched and with its reasons; nothing valid is acknowledged unapplied.

The handlers run as Lambda runs them (the sample events, Powertools' partial batch response)
against moto's server over HTTP.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import FakeLambdaContext, load_event
from tests.unit.test_events import documented_poison
from vector_relay.contract import DeadLetterAttributes


@pytest.fixture
def dead_letter_queue(aws: str, sample_settings: None, monkeypatch: pytest.MonkeyPatch) -> str:
    url = boto3.client("sqs").create_queue(QueueName="vector-relay-dlq")["QueueUrl"]
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", url)
    return url


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", []):
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


@pytest.mark.parametrize(
    ("event_name", "handler"),
    [("ingest-mixed-with-poison", ingest_app.lambda_handler), ("query-mixed-with-poison", query_app.lambda_handler)],
)
def test_each_poison_message_is_dead_lettered_with_its_reason_and_the_rest_stay(
    dead_letter_queue: str, lambda_context: FakeLambdaContext, event_name: str, handler: Any
) -> None:
    # GIVEN a batch mixing valid messages with one poison message of each kind
    event = load_event(event_name)
    poison = documented_poison()[event_name]
    records = event["Records"]

    # WHEN the function handles it
    response = handler(event, lambda_context)

    # THEN only the valid messages are left for SQS to redeliver (this build does not apply them yet) ...
    valid_ids = [r["messageId"] for i, r in enumerate(records) if i not in poison]
    assert response == {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in valid_ids]}
    # ... and each poison message is in the DLQ once, body untouched, with its code and every reason
    dead = {m["MessageAttributes"]["source_message_id"]["StringValue"]: m for m in drain(dead_letter_queue)}
    assert set(dead) == {records[i]["messageId"] for i in poison}
    for index, code in poison.items():
        message = dead[records[index]["messageId"]]
        assert message["Body"] == records[index]["body"]
        attributes = DeadLetterAttributes.from_message_attributes(message["MessageAttributes"])
        assert attributes.error_code == code
        assert f"[{code}]" in attributes.error_detail
        assert attributes.source_queue == records[index]["eventSourceARN"]
        assert attributes.receive_count == 1


def test_a_failed_dead_letter_send_keeps_the_message_on_its_queue(
    dead_letter_queue: str, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a DLQ that does not exist (deleted, or no permission to send)
    boto3.client("sqs").delete_queue(QueueUrl=dead_letter_queue)
    event = load_event("ingest-mixed-with-poison")
    event["Records"] = event["Records"][1:3]  # two poison messages

    # WHEN the function handles them THEN every message fails, so Lambda returns the whole batch to SQS
    with pytest.raises(BatchProcessingError, match="All records failed processing"):
        ingest_app.lambda_handler(event, lambda_context)


def test_one_bad_send_fails_only_its_own_message(
    dead_letter_queue: str, lambda_context: FakeLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a poison message whose DLQ copy SQS refuses, next to a normal one. Real SQS refuses a 1 MiB body
    # once the reason attributes are added; moto counts only the body, so the body here is one byte over.
    event = load_event("ingest-mixed-with-poison")
    big, small = event["Records"][1], event["Records"][2]
    big["body"] = "x" * (1_048_576 + 1)
    event["Records"] = [big, small]

    # WHEN handled
    response = ingest_app.lambda_handler(event, lambda_context)

    # THEN the refused one stays on its queue (the redrive policy takes it later) and the other is dead-lettered
    assert response == {"batchItemFailures": [{"itemIdentifier": big["messageId"]}]}
    assert [m["MessageAttributes"]["source_message_id"]["StringValue"] for m in drain(dead_letter_queue)] == [
        small["messageId"]
    ]


def test_valid_messages_are_never_acknowledged_unapplied(
    dead_letter_queue: str, lambda_context: FakeLambdaContext
) -> None:
    event = load_event("ingest-upsert")
    with pytest.raises(BatchProcessingError):
        ingest_app.lambda_handler(event, lambda_context)
    assert drain(dead_letter_queue) == []
