"""Poison goes to the DLQ on first receive, untouched and with its reasons, without disturbing its batch.

The handlers run as Lambda runs them (the sample events, Powertools' partial batch response)
against moto's server and the Pinecone emulator over HTTP.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline, parametrize_transports
from tests.unit.test_events import documented_poison
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes


def assert_dead_lettered(dead: list[dict[str, Any]], records: list[dict[str, Any]], poison: dict[int, str]) -> None:
    by_source = {m["MessageAttributes"]["source_message_id"]["StringValue"]: m for m in dead}
    assert set(by_source) == {records[i]["messageId"] for i in poison}
    for index, code in poison.items():
        message = by_source[records[index]["messageId"]]
        assert message["Body"] == records[index]["body"]
        attributes = DeadLetterAttributes.from_message_attributes(message["MessageAttributes"])
        assert attributes.error_code == code
        assert f"[{code}]" in attributes.error_detail
        assert attributes.source_queue == records[index]["eventSourceARN"]
        assert attributes.receive_count == 1


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test here runs over REST and over gRPC


def test_each_poison_write_is_dead_lettered_and_its_batch_mates_land(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    # GIVEN a batch mixing two valid upserts with one poison message of each kind
    event = load_event("ingest-mixed-with-poison")
    poison = documented_poison()["ingest-mixed-with-poison"]

    # WHEN the ingest function handles it
    response = ingest_app.lambda_handler(event, lambda_context)

    # THEN nothing is left for redelivery, every poison message is in the DLQ with its code ...
    assert response == {"batchItemFailures": []}
    assert_dead_lettered(pipeline.drain(), event["Records"], poison)
    # ... and the valid messages landed
    assert set(pipeline.fetch("acme", ["doc-42#0", "doc-42#1"])) == {"doc-42#0", "doc-42#1"}
    assert set(pipeline.fetch("globex", ["kb-7#0"])) == {"kb-7#0"}


def test_a_failed_dead_letter_send_keeps_the_message_on_its_queue(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    # GIVEN a DLQ that cannot be reached (deleted, or no permission to send): an SQS outage for the DLQ
    boto3.client("sqs").delete_queue(QueueUrl=pipeline.dlq_url)
    event = load_event("ingest-mixed-with-poison")
    event["Records"] = event["Records"][1:3]  # two poison messages

    # WHEN the function handles them THEN every message fails, so Lambda returns the whole batch to SQS
    with pytest.raises(BatchProcessingError, match="All records failed processing"):
        ingest_app.lambda_handler(event, lambda_context)


def test_one_refused_dead_letter_send_fails_only_its_own_message(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
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
    dead = pipeline.drain()
    assert [m["MessageAttributes"]["source_message_id"]["StringValue"] for m in dead] == [small["messageId"]]
