"""Rotations while the ingest and query workers are busy, and a key revoked out of band: no message lost.

Workers run as Lambda's event source mapping would drive them (``SqsDriver``), each in its own
thread, publishing and consuming a steady stream; rotations run through moto's ``rotate_secret``
(see test_rotation_steps.py) against the emulator's Admin API. The cache TTL and the revocation
grace are shortened to seconds, keeping grace >= TTL + the longest invocation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from pinecone import Index

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_TENANTS, FakeLambdaContext, wait_until
from tests.integration.conftest import SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from tests.integration.test_query import query_body
from tests.integration.test_rotation_steps import INITIAL_KEY_ID, Rotation, rotation_setup
from vector_relay.settings import get_settings

__all__ = ["rotation_setup"]

TTL_SECONDS = 1
GRACE_SECONDS = 2
PAUSE_BETWEEN_ROTATIONS = GRACE_SECONDS + 0.5  # at least: so each finish may revoke the key from two rotations back


class Stream(threading.Thread):
    """Publishes a few messages, delivers a batch, again and again until told to stop."""

    def __init__(self, driver: SqsDriver, bodies: Callable[[int], list[str]], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.driver = driver
        self.bodies = bodies
        self.stop = stop
        self.rounds = 0
        self.failed: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.driver.publish(self.bodies(self.rounds))
                self.rounds += 1
                self.deliver()
                time.sleep(0.02)
        except BaseException as error:
            self.errors.append(error)

    def deliver(self) -> None:
        response = self.driver.deliver_once(FakeLambdaContext(remaining_ms=30_000))
        if response and response["batchItemFailures"]:
            self.failed.append(response)

    def drain(self, ceiling: float = 180.0) -> None:
        """Deliver until the queue holds nothing: a message that waited for the version guard's hold on its
        last delivery is requeued with a delay (DelaySeconds) and must be delivered too, however late."""
        deadline = time.monotonic() + ceiling
        while True:
            if self.driver.deliver_once(FakeLambdaContext(remaining_ms=30_000)) is not None:
                continue
            if self.driver.held() == 0:
                return
            assert time.monotonic() < deadline, f"the queue still holds messages after {ceiling:.0f} s"
            time.sleep(0.2)


def ingest_bodies(round_: int) -> list[str]:
    return [upsert_body("acme", [f"load-{round_}-{m}-{r}" for r in range(3)]) for m in range(2)]


def query_bodies(round_: int) -> list[str]:
    return [query_body(vector=vector(round_), top_k=3, correlation_id=f"q-{round_}")]


def scan_for(values: list[str], captured: pytest.CaptureResult[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Which of ``values`` appear in what was printed or logged, by position: a failure never shows a secret."""
    text = captured.out + captured.err + caplog.text
    assert "ingest batch done" in text  # the workers' logs were captured
    return [f"value #{i}" for i, value in enumerate(values) if value in text]


def test_three_rotations_under_load_lose_nothing_and_move_traffic_to_each_new_key(
    rotation_setup: Rotation,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    log_level: str,  # and again with every level at DEBUG: no key may reach a log either way
) -> None:
    r = rotation_setup
    pipeline, emulator = r.pipeline, r.emulator
    monkeypatch.setenv("API_KEY_CACHE_TTL_SECONDS", str(TTL_SECONDS))
    monkeypatch.setenv("KEY_REVOCATION_GRACE_SECONDS", str(GRACE_SECONDS))
    monkeypatch.setenv("WORKER_MAX_TIMEOUT_SECONDS", str(GRACE_SECONDS - TTL_SECONDS))  # invocations here are short
    get_settings.cache_clear()
    stop = threading.Event()
    ingest = Stream(SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler), ingest_bodies, stop)
    query = Stream(
        SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler), query_bodies, stop
    )
    # Warm both workers here: boto3 clients are built once, not by two threads at the same time.
    for stream in (ingest, query):
        stream.driver.publish(stream.bodies(-1))
        stream.deliver()

    def carried(key_id: str) -> bool:
        """Both workers have had a request answered with this key (or a stream died: stop waiting)."""
        if ingest.errors or query.errors:
            return True
        return all(emulator.control.count(operation=op, status=200, api_key=key_id) > 0 for op in ("upsert", "query"))

    keys = [{"api_key": emulator.api_key, "key_id": INITIAL_KEY_ID}]
    ingest.start()
    query.start()
    try:
        wait_until(lambda: carried(INITIAL_KEY_ID), "traffic on the initial key")
        for _ in range(3):
            keys.append(r.secret("AWSCURRENT", r.rotate()))
            rotated = time.monotonic()  # after the rotation: its retirement time is no later than this
            # Rotate again only once traffic is on the new key (a condition, however slow the machine)
            # and the retiring key's grace has run (a lower bound: the next rotation's revocation is no race).
            # Timed from before the rotation instead, a slow finishSecret (a busy machine) ate into the
            # pause and the next rotation found the key still in its grace: [False, True, True, True].
            wait_until(lambda: carried(keys[-1]["key_id"]), "traffic moved to the new key")
            time.sleep(max(0.0, rotated + PAUSE_BETWEEN_ROTATIONS - time.monotonic()))
        wait_until(lambda: min(ingest.rounds, query.rounds) >= 20 or bool(ingest.errors or query.errors), "20 rounds")
    finally:
        stop.set()
        ingest.join(timeout=120)
        query.join(timeout=120)
    assert not ingest.is_alive()
    assert not query.is_alive()
    ingest.drain()
    query.drain()

    assert ingest.errors == query.errors == []
    assert ingest.rounds >= 20
    assert query.rounds >= 20
    # no request failed for its key: a batch item fails for its key only once the key re-read after a
    # refusal is refused too, and that is counted as AuthFailure (asserted absent below; a busy machine may
    # time out a guard claim or a request, which SQS retries: not the rotation's doing); nothing is in a
    # DLQ, and (below) every record landed
    assert pipeline.drain() == []
    ids = [f"load-{n}-{m}-{r}" for n in range(-1, ingest.rounds) for m in range(2) for r in range(3)]
    landed: set[str] = set()
    with Index(host=emulator.index_host("relay-test"), api_key=keys[-1]["api_key"]) as index:  # the initial key is gone
        for start in range(0, len(ids), 500):
            landed |= set(index.fetch(ids=ids[start : start + 500], namespace=SAMPLE_TENANTS["acme"]).vectors)
    assert landed == set(ids)
    answered = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    # every query answered (at least once: a delivery retried after its reply was sent answers again)
    assert {reply["correlation_id"] for reply in answered} == {f"q-{n}" for n in range(-1, query.rounds)}
    assert {reply["status"] for reply in answered} == {"ok"}

    # each rotation revoked the key from two rotations back; the last two keys are valid
    assert [r.works(key["api_key"]) for key in keys] == [False, False, True, True]
    # traffic moved to each new key in turn, and no request was refused more than once
    for key in keys:
        for operation in ("upsert", "query"):
            assert emulator.control.count(operation=operation, status=200, api_key=key["key_id"]) > 0, (
                operation,
                key["key_id"],
            )
    # (with grace > TTL + an invocation, none is expected; a stalled worker may meet one per revoked key)
    assert emulator.control.count(status=401) <= 2 * 2

    secrets = [key["api_key"] for key in keys] + [emulator.client_secret]
    captured = capsys.readouterr()
    assert '"AuthFailure"' not in captured.out + caplog.text  # the metric (EMF) of a request refused for its key
    assert scan_for(secrets, captured, caplog) == []


def test_a_key_revoked_out_of_band_is_retried_until_the_secret_holds_a_valid_key(
    rotation_setup: Rotation,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    log_level: str,  # and again with every level at DEBUG
) -> None:
    r = rotation_setup
    monkeypatch.setenv("API_KEY_CACHE_TTL_SECONDS", "300")  # the default: only a refused key makes a re-read
    get_settings.cache_clear()
    pipeline, emulator = r.pipeline, r.emulator
    sm = boto3.client("secretsmanager")
    first = r.admin.api_keys.create(project_id=emulator.project_id, name="first")
    value = {"api_key": first.value, "key_id": first.key.id, "project_id": emulator.project_id}
    sm.put_secret_value(SecretId=pipeline.secret_arn, SecretString=json.dumps(value))
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    query = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    ingest.publish([upsert_body("acme", ["warm"])])
    assert ingest.deliver_once() == {"batchItemFailures": []}

    # WHEN the key in the secret is revoked with nothing to replace it
    r.admin.api_keys.delete(api_key_id=first.key.id)
    ingest.publish([upsert_body("acme", [f"outage-{i}"]) for i in range(3)])
    query.publish([query_body(vector=vector(1), top_k=1, correlation_id="during-outage")])
    for _ in range(2):  # THEN every delivery fails and is retried; nothing is dead-lettered
        assert len(ingest.deliver_once()["batchItemFailures"]) == 3  # type: ignore[index]
        assert len(query.deliver_once()["batchItemFailures"]) == 1  # type: ignore[index]
    assert pipeline.drain() == []
    assert pipeline.fetch("acme", [f"outage-{i}" for i in range(3)]) == {}
    assert '"AuthFailure"' in capsys.readouterr().out  # the metric, in embedded metric format

    # WHEN a valid key is stored: the very next delivery re-reads it on the 401, long before the TTL
    second = r.admin.api_keys.create(project_id=emulator.project_id, name="second")
    value = {"api_key": second.value, "key_id": second.key.id, "project_id": emulator.project_id}
    sm.put_secret_value(SecretId=pipeline.secret_arn, SecretString=json.dumps(value))
    refusals = emulator.control.count(status=401)
    assert ingest.deliver_once() == {"batchItemFailures": []}
    assert query.deliver_once() == {"batchItemFailures": []}
    # each worker was refused (with the revoked key only) and went on with the new key in the same delivery;
    # how many attempts the revoked key made is the machine's timing, not the promise
    assert emulator.control.count(status=401) > refusals
    assert emulator.control.count(status=401, api_key=second.key.id) == 0

    assert set(pipeline.fetch("acme", [f"outage-{i}" for i in range(3)])) == {f"outage-{i}" for i in range(3)}
    [reply] = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    assert (reply["correlation_id"], reply["status"]) == ("during-outage", "ok")
    assert pipeline.drain() == []
    assert emulator.control.count(operation="upsert", status=200, api_key=second.key.id) >= 1
    assert scan_for([first.value, second.value], capsys.readouterr(), caplog) == []
