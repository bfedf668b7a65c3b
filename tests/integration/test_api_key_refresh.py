"""A key revoked out of band is recovered from by re-reading the secret, and no key ever reaches the logs."""

from __future__ import annotations

import asyncio
import logging

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline, parametrize_transports
from vector_relay import dependencies as worker


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test here runs over REST and over gRPC


def test_a_revoked_key_is_replaced_from_the_secret_without_a_failed_message(
    pipeline: Pipeline,
    lambda_context: FakeLambdaContext,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    log_level: str,  # no log level, however it is set, may put a key in a log
) -> None:
    emulator = pipeline.emulator
    admin = pipeline.admin()
    first = admin.api_keys.create(project_id=emulator.project_id, name="first")
    pipeline.put_key(first.value, first.key.id)

    # GIVEN a warm worker holding the first key
    event = load_event("ingest-upsert")
    assert ingest_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    # WHEN the key is replaced in the secret and the old one revoked, outside any rotation
    second = admin.api_keys.create(project_id=emulator.project_id, name="second")
    pipeline.put_key(second.value, second.key.id)
    admin.api_keys.delete(api_key_id=first.key.id)
    response = ingest_app.lambda_handler(load_event("ingest-delete"), lambda_context)

    # THEN the refused request is retried once with the new key and nothing fails
    assert response == {"batchItemFailures": []}
    assert pipeline.fetch("acme", ["doc-42#1"]) == {}
    # refused with the revoked key only (an attempt that outlived its timeout may be refused twice), never the new
    assert emulator.control.count(status=401) >= 1
    assert emulator.control.count(status=401) == emulator.control.count(status=401, api_key=first.key.id)
    assert pipeline.drain() == []

    # AND neither key value appears in anything the function printed or logged, at any level
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "ingest batch done" in text  # the logs were captured
    if log_level == "DEBUG":
        assert any(record.levelno == logging.DEBUG for record in caplog.records)  # DEBUG records were made
    # named, never shown: a failure must not print the key it found
    assert [name for name, key in [("first", first.value), ("second", second.value)] if key in text] == []


def test_a_secret_without_a_usable_key_is_retried_not_dead_lettered(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=pipeline.secret_arn, SecretString='{"key_id": "x"}')
    event = load_event("ingest-upsert")
    with pytest.raises(BatchProcessingError, match="All records failed"):
        ingest_app.lambda_handler(event, lambda_context)
    assert pipeline.drain() == []


def test_a_refused_key_whose_secret_is_unreadable_fails_the_batch_for_retry_and_leaves_nothing_running(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    """The re-read after a 401 raises (malformed secret): every request's messages are retried and
    each handler returns only when none of its requests is still running on the worker's loop."""
    emulator = pipeline.emulator
    admin = pipeline.admin()
    secrets = boto3.client("secretsmanager")
    first = admin.api_keys.create(project_id=emulator.project_id, name="first")
    pipeline.put_key(first.value, first.key.id)
    # GIVEN warm workers holding the key
    assert ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context) == {"batchItemFailures": []}
    assert query_app.lambda_handler(load_event("query"), lambda_context) == {"batchItemFailures": []}

    # WHEN the key is revoked and the secret holds no usable key
    admin.api_keys.delete(api_key_id=first.key.id)
    secrets.put_secret_value(SecretId=pipeline.secret_arn, SecretString='{"key_id": "x"}')

    # THEN every message is retried by SQS (the whole batch failed), none dead-lettered
    with pytest.raises(BatchProcessingError, match="All records failed"):
        ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        query_app.lambda_handler(load_event("query"), lambda_context)
    assert emulator.control.count(status=401) >= 2  # both workers met the revoked key
    assert pipeline.drain() == []

    # AND nothing of either invocation is left on the loops the warm workers keep
    assert len(worker._built) == 2
    for deps in worker._built:
        assert asyncio.all_tasks(deps.loop.get_loop()) == set()
