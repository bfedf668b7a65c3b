"""Send while validating, end to end: a batch whose first messages fill a request, with the version guard on.

The SQS event is built from messages moto's SQS delivered, in the order the test chooses; the
handler runs once, over REST and over gRPC, against the emulator through the official SDK.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.ingest import app as ingest_app
from tests.conftest import FakeLambdaContext
from tests.integration.conftest import REGION, Pipeline, parametrize_transports
from tests.integration.test_ingest import index_state, upsert_body
from tests.lambda_events import lambda_sqs_record

PER_MESSAGE = 250  # about 0.9 MB of 384-dimension records as JSON: three pass the 2 MB of a REST request
MESSAGES = 4  # and four make the 1,000 records of a gRPC one


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)


def one_event(pipeline: Pipeline, bodies: list[str]) -> dict[str, Any]:
    """One event holding ``bodies`` in this order, from messages moto's SQS delivered."""
    sqs = boto3.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    received: dict[str, dict[str, Any]] = {}
    for _ in range(100):  # moto hands out every visible message at once; a bound, not a wait
        if len(received) == len(bodies):
            break
        for message in sqs.receive_message(
            QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", []):
            received[message["Body"]] = message
    assert len(received) == len(bodies), f"moto delivered {len(received)} of {len(bodies)} messages"
    return {"Records": [lambda_sqs_record(received[body], pipeline.queue_arn, REGION) for body in bodies]}


def batch_log(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """The fields of the batch's "ingest batch done" log line."""
    [record] = [record for record in caplog.records if record.getMessage() == "ingest batch done"]
    return vars(record)


def test_a_request_filled_early_lands_and_a_record_written_again_later_ends_at_its_highest_version(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, caplog: pytest.LogCaptureFixture
) -> None:
    filled = [[f"m{m}-{n}" for n in range(PER_MESSAGE)] for m in range(MESSAGES)]
    filled[0][0] = "x"
    bodies = [upsert_body("acme", ids, version=1, note="first") for ids in filled]
    # x again, after its early request: the batch's winner
    event = one_event(pipeline, [*bodies, upsert_body("acme", ["x", "y"], version=2, note="again")])
    caplog.clear()

    response = ingest_app.lambda_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}
    done = batch_log(caplog)
    assert done["early_requests"] >= 1  # the first request went out before the last message was read
    assert done["records_upserted"] >= MESSAGES * PER_MESSAGE + 1
    last = f"m{MESSAGES - 1}-{PER_MESSAGE - 1}"
    state = index_state(pipeline, "acme", ["x", "y", "m0-1", last])
    assert state["x"][1] == {"v": 2, "note": "again", "_relay_version": "2"}
    assert set(state) == {"x", "y", "m0-1", last}
    assert pipeline.namespace_count("acme") == MESSAGES * PER_MESSAGE + 1
    assert pipeline.drain() == []
