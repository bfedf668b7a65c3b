"""Writes to an index that is still Initializing (right after deploy) are retried by SQS, never dead-lettered."""

from __future__ import annotations

from functions.ingest import app as ingest_app
from tests.integration.conftest import INDEX_NAME, Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body


def test_an_initializing_index_makes_writes_wait_and_nothing_is_dead_lettered(pipeline: Pipeline) -> None:
    # GIVEN the index is still Initializing when the first messages arrive
    control = pipeline.emulator.control
    control.set_index_state(INDEX_NAME, "Initializing")
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ["first"]), upsert_body("globex", ["second"])])

    # WHEN they are delivered, THEN both go back to the queue (Pinecone's 503 is transient), none to the DLQ
    response = driver.deliver_once()
    assert response is not None
    assert len(response["batchItemFailures"]) == 2
    assert pipeline.drain(pipeline.dlq_url) == []

    # WHEN the index is Ready, THEN the redelivered messages land
    control.set_index_state(INDEX_NAME, "Ready")
    driver.run_until_empty()
    assert set(pipeline.fetch("acme", ["first"])) == {"first"}
    assert set(pipeline.fetch("globex", ["second"])) == {"second"}
    assert pipeline.drain(pipeline.dlq_url) == []
