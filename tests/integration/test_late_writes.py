"""A write that may still land late keeps its record leased, so no newer version can be overtaken by it.

The emulator holds a write server-side and drops its connection; the worker's retry of it succeeds.
The first copy can land at any time until Pinecone gives up on it: the worker counts the write but
keeps its version-guard lease (an uncertain landing, docs/ordering.md), so a newer version waits.
The held copy is carried out by ``flush_applies`` (instead of waiting), and the guard's clock is
moved past the lease (instead of sleeping through it).
"""

from __future__ import annotations

import time

import pytest

from functions.ingest import app as ingest_app
from pinecone_emulator.control import EmulatorControl
from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import INDEX_NAME, Pipeline, SqsDriver, parametrize_transports
from tests.integration.test_ingest import index_state, upsert_body
from vector_relay.dependencies import worker_dependencies


class ShiftedClock:
    """The wall clock, moved forward when the test says so."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def applied(control: EmulatorControl) -> list[str]:
    """The versions of record r that the index has carried out, oldest first, repeats collapsed."""
    entries = control.journal(INDEX_NAME, SAMPLE_TENANTS["acme"], "r")
    versions = [(entry["metadata"] or {}).get("_relay_version") for entry in entries]
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test on the pipeline runs over REST and over gRPC


def test_a_write_whose_first_copy_may_land_late_keeps_its_lease_and_the_newer_version_waits(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = pipeline.emulator.control
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    guard = worker_dependencies(ingest_app.metrics).guard
    assert guard is not None
    clock = ShiftedClock()
    monkeypatch.setattr(guard, "_clock", clock)

    # GIVEN version 1 of a record whose first upsert is held by Pinecone and its connection dropped;
    # the worker's second attempt succeeds
    control.script("upsert", {"drop": True, "apply_after_ms": 600_000}, "ok")
    driver.publish([upsert_body("acme", ["r"], version=1)])
    assert driver.deliver_once() == {"batchItemFailures": []}
    assert control.pending_applies() == 1
    assert applied(control) == ["1"]  # by the retry (an attempt outliving its timeout on a busy box adds a "1")

    # WHEN version 2 arrives while the held copy of version 1 has not landed
    driver.publish([upsert_body("acme", ["r"], version=2)])
    busy = driver.deliver_once()

    # THEN version 2 waits for the lease of version 1 (released at once, it would be written now and
    # then overwritten by the held copy, for good)
    assert busy is not None
    assert len(busy["batchItemFailures"]) == 1
    assert "2" not in applied(control)

    # WHEN the held copy lands, and later the lease is over
    assert control.flush_applies() == 1
    assert index_state(pipeline, "acme", ["r"])["r"][1]["v"] == 1
    clock.offset = 3600
    driver.run_until_empty()

    # THEN version 2 is what the index holds
    assert index_state(pipeline, "acme", ["r"])["r"][1]["v"] == 2
    assert pipeline.drain() == []


@pytest.mark.parametrize(
    "second_try",
    [
        pytest.param({"status": 401}, id="then-a-key-refresh"),
        pytest.param({"status": 400, "message": "scripted rejection"}, id="then-a-split"),
    ],
)
def test_an_uncertain_first_attempt_keeps_its_lease_whatever_path_the_retry_takes(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, second_try: dict[str, object]
) -> None:
    control = pipeline.emulator.control
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    guard = worker_dependencies(ingest_app.metrics).guard
    assert guard is not None
    clock = ShiftedClock()
    monkeypatch.setattr(guard, "_clock", clock)

    # GIVEN version 1 of r (and of s, coalesced into the same request) whose first attempt Pinecone
    # answers 503 and applies later; the next try is refused (a 401: the key is re-read and the request
    # sent again; or a 400: the request is split by message) and then everything succeeds
    control.script("upsert", {"status": 503, "retry_after": "0", "apply_after_ms": 600_000}, second_try, "ok", "ok")
    driver.publish([upsert_body("acme", ["r"], version=1), upsert_body("acme", ["s"], version=1)])
    assert driver.deliver_once() == {"batchItemFailures": []}
    assert control.pending_applies() == 1

    # WHEN version 2 of r arrives while that first copy has not landed
    driver.publish([upsert_body("acme", ["r"], version=2)])
    busy = driver.deliver_once()

    # THEN it waits for the lease of version 1: the success after the refresh or the split did not
    # make the held copy any less able to land (released, version 2 would be overwritten by it)
    assert busy is not None
    assert len(busy["batchItemFailures"]) == 1
    assert "2" not in applied(control)

    # WHEN the held copy lands and the lease is over, version 2 is what the index holds
    assert control.flush_applies() == 1
    clock.offset = 3600
    driver.run_until_empty()
    assert index_state(pipeline, "acme", ["r"])["r"][1]["v"] == 2
    assert pipeline.drain() == []
