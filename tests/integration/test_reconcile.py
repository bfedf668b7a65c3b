"""The reconciler compares the version guard's table with the index (moto's DynamoDB, the emulator over HTTP).

Records are written through the ingest handler, then the index is damaged behind the relay's back,
the way a late write or an outside client would: each kind of mismatch is reported by name, a
record still under a live lease is left alone, and only a resurrected record is repaired.
"""

from __future__ import annotations

import functools
import importlib
import json
import time

import boto3
import pytest

from functions.ingest import app as ingest_app
from functions.reconcile import app as reconcile_app
from tests.conftest import SAMPLE_TENANTS, FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from vector_relay.errors import FailureKind
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.keys.api_key_cache import read_api_key
from vector_relay.operations.reconcile import Mismatch, Report, compare
from vector_relay.operations.reconcile_run import run_scheduled_reconcile
from vector_relay.operations.reconcile_scan import guard_pages, load_cursor, scheduled_pass
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.pinecone.record_reader import RecordReader
from vector_relay.settings import get_settings

NAMESPACE = SAMPLE_TENANTS["acme"]
TABLE = "relay-write-versions"


def delete_body(ids: list[str], version: int) -> str:
    records = [{"id": i, "version": version} for i in ids]
    return json.dumps({"schema_version": 1, "op": "delete", "tenant": "acme", "records": records})


def test_each_kind_of_mismatch_is_reported_and_only_a_resurrected_record_is_repaired(pipeline: Pipeline) -> None:
    # GIVEN records written through the relay: a, b (v3 over v1), c (deleted at v2), d, e (in order)
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    for body in (
        upsert_body("acme", ["a", "b", "c", "d", "e"], version=1),
        delete_body(["c"], version=2),
        upsert_body("acme", ["b"], version=3),
    ):
        driver.publish([body])
        driver.run_until_empty()
    dynamodb = boto3.client("dynamodb")
    reader = RecordReader(host=pipeline.emulator.index_host("relay-test"), read_key=lambda: pipeline.emulator.api_key)
    settled = int(time.time() * 1000) + 3_600_000  # an hour on: every lease of those writes is over
    try:
        clean = compare(guard_pages(dynamodb, TABLE), reader, now_ms=settled)
        assert (clean.checked, clean.mismatches) == (5, [])
        live = compare(guard_pages(dynamodb, TABLE), reader, now_ms=0)  # every lease still live
        assert (live.checked, live.in_flight) == (0, 5)

        # WHEN the index is damaged behind the relay's back
        index = pipeline.index
        index.delete(ids=["a"], namespace=NAMESPACE)  # missing
        index.upsert(vectors=[("b", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)  # behind
        index.upsert(vectors=[("c", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)  # resurrected
        index.upsert(vectors=[("d", vector(1), {"_relay_version": "9"})], namespace=NAMESPACE)  # ahead
        index.upsert(vectors=[("e", vector(1), {"note": "outside"})], namespace=NAMESPACE)  # unversioned
        guard = VersionGuard(dynamodb, TABLE, ttl_seconds=86_400, clock=lambda: settled / 1000)
        report = compare(guard_pages(dynamodb, TABLE), reader, now_ms=settled, repair=True, guard=guard)

        # THEN each is reported by name, and only the resurrected record is deleted again
        assert sorted(report.mismatches, key=lambda m: m.record_id) == [
            Mismatch(NAMESPACE, "a", "missing", 1, "upsert", None),
            Mismatch(NAMESPACE, "b", "behind", 3, "upsert", "1"),
            Mismatch(NAMESPACE, "c", "resurrected", 2, "delete", "1"),
            Mismatch(NAMESPACE, "d", "ahead", 1, "upsert", "9"),
            Mismatch(NAMESPACE, "e", "unversioned", 1, "upsert", None),
        ]
        assert report.repaired == 1
        after = compare(guard_pages(dynamodb, TABLE), reader, now_ms=settled)
        assert after.counts() == {"missing": 1, "behind": 1, "ahead": 1, "unversioned": 1}
        assert set(pipeline.fetch("acme", ["c"])) == set()
    finally:
        reader.close()


def emf_metrics(stdout: str) -> dict[str, tuple[float, dict[str, str]]]:
    """Metric name -> (value, dimensions) from the CloudWatch embedded-metric lines a function printed."""
    found: dict[str, tuple[float, dict[str, str]]] = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            dimensions = {name: blob[name] for names in directive["Dimensions"] for name in names}
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                found[metric["Name"]] = (value[-1] if isinstance(value, list) else value, dimensions)
    return found


def test_the_scheduled_function_counts_mismatches_for_the_alarm_and_repairs_only_when_configured(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN records written through the relay (their leases released on landing), then one resurrected
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    for body in (upsert_body("acme", ["a", "b"], version=1), delete_body(["b"], version=2)):
        driver.publish([body])
        driver.run_until_empty()
    pipeline.index.upsert(vectors=[("b", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "reconcile")  # as the template sets it, before the import
    importlib.reload(reconcile_app)
    an_hour_on = functools.partial(run_scheduled_reconcile, clock=lambda: time.time() + 3600)  # leases are over
    monkeypatch.setattr(reconcile_app, "run_scheduled_reconcile", an_hour_on)
    capsys.readouterr()

    # WHEN the scheduled function runs with repair off (the template's default)
    summary = reconcile_app.lambda_handler(load_event("reconcile-scheduled"), FakeLambdaContext(remaining_ms=900_000))

    # THEN the mismatch is counted as the metric the template's alarm watches, and left in place
    assert (summary["ReconcileChecked"], summary["ReconcileMismatchesResurrected"], summary["complete"]) == (2, 1, True)
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics["ReconcileMismatches"] == (1.0, {"service": "reconcile"})
    assert metrics["ReconcileMismatchesMissing"][0] == 0.0
    assert set(pipeline.fetch("acme", ["b"])) == {"b"}

    # WHEN it runs again with RECONCILE_REPAIR=true
    monkeypatch.setenv("RECONCILE_REPAIR", "true")
    get_settings.cache_clear()
    repaired = reconcile_app.lambda_handler(load_event("reconcile-scheduled"), FakeLambdaContext(remaining_ms=900_000))

    # THEN the record is deleted again, and a third run finds nothing
    assert repaired["ReconcileRepaired"] == 1
    assert set(pipeline.fetch("acme", ["b"])) == set()
    clean = reconcile_app.lambda_handler(load_event("reconcile-scheduled"), FakeLambdaContext(remaining_ms=900_000))
    assert clean["ReconcileMismatches"] == 0


def test_a_pass_cut_short_by_time_goes_on_from_its_cursor_and_a_complete_pass_clears_it(pipeline: Pipeline) -> None:
    # GIVEN 7 settled records, read 2 per page, and runs that have time for one page each
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", [f"r{i}" for i in range(7)], version=1)])
    driver.run_until_empty()
    pipeline.index.delete(ids=["r5"], namespace=NAMESPACE)
    dynamodb = boto3.client("dynamodb")
    reader = RecordReader(host=pipeline.emulator.index_host("relay-test"), read_key=lambda: pipeline.emulator.api_key)
    settled = int(time.time() * 1000) + 3_600_000
    try:
        runs: list[Report] = []
        while not runs or not runs[-1].complete:
            assert len(runs) < 10, "the passes never reached the table's end"
            one_page = iter([False])  # asked before each page: the first may start, then time is up
            report = scheduled_pass(
                dynamodb,
                TABLE,
                reader,
                now_ms=settled,
                repair=False,
                page_size=2,
                out_of_time=lambda one_page=one_page: next(one_page, True),
            )
            runs.append(report)
            if not report.complete:
                assert report.resume_key is not None
                assert load_cursor(dynamodb, TABLE) == report.resume_key

        # THEN the runs together checked every record once and found the missing one; the cursor is gone
        assert sum(r.checked for r in runs) == 7
        assert [m.record_id for r in runs for m in r.mismatches] == ["r5"]
        assert len(runs) >= 4  # 7 records at 2 per page (moto may add an empty last page)
        assert load_cursor(dynamodb, TABLE) is None
    finally:
        reader.close()


def test_a_key_rotated_during_a_pass_is_read_again_and_the_pass_goes_on(pipeline: Pipeline) -> None:
    # GIVEN a reader holding a key that is then replaced in the secret and revoked (rotation's end)
    emulator = pipeline.emulator
    admin = pipeline.admin()
    secrets = boto3.client("secretsmanager")
    first = admin.api_keys.create(project_id=emulator.project_id, name="first")
    pipeline.put_key(first.value)
    reads: list[str] = []

    def read_key() -> str:
        reads.append(read_api_key(secrets, pipeline.secret_arn).value)
        return reads[-1]

    reader = RecordReader(host=emulator.index_host("relay-test"), read_key=read_key)
    pipeline.index.upsert(vectors=[("a", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)
    try:
        assert reader.metadata(NAMESPACE, ["a"]) == {"a": {"_relay_version": "1"}}
        second = admin.api_keys.create(project_id=emulator.project_id, name="second")
        pipeline.put_key(second.value)
        admin.api_keys.delete(api_key_id=first.key.id)

        # WHEN the next page is fetched, THEN it is answered with the new key (read once more), not an error
        assert reader.metadata(NAMESPACE, ["a"]) == {"a": {"_relay_version": "1"}}
        assert reads == [first.value, second.value]

        # and a key refused with nothing newer in the secret is an auth failure, not a loop
        admin.api_keys.delete(api_key_id=second.key.id)
        with pytest.raises(PineconeRequestError) as refused:
            reader.metadata(NAMESPACE, ["a"])
        assert refused.value.kind is FailureKind.AUTH
        assert second.value not in str(refused.value)
    finally:
        reader.close()
