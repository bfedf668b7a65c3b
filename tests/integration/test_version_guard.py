"""The version guard against moto's DynamoDB over HTTP: stale writes dropped, concurrent writers serialised."""

from __future__ import annotations

import json

import boto3
import pytest

from functions.ingest import app as ingest_app
from tests.conftest import FakeLambdaContext
from tests.integration.conftest import Pipeline, SqsDriver, create_version_table
from tests.integration.test_ingest import upsert_body
from vector_relay.version_guard import GuardedWrite, GuardUnavailableError, Verdict, VersionGuard

TABLE = "guard-test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guards(aws: str, clock: Clock) -> tuple[VersionGuard, VersionGuard]:
    create_version_table(TABLE)
    dynamodb = boto3.client("dynamodb")
    return (
        VersionGuard(dynamodb, TABLE, ttl_seconds=3600, clock=clock, owner="worker-a"),
        VersionGuard(dynamodb, TABLE, ttl_seconds=3600, clock=clock, owner="worker-b"),
    )


def w(record_id: str, version: int, operation: str = "upsert", namespace: str = "ns") -> GuardedWrite:
    return GuardedWrite(namespace, record_id, version, operation)


def test_newer_versions_are_claimed_and_older_ones_are_stale(guards: tuple[VersionGuard, VersionGuard]) -> None:
    a, _ = guards
    assert a.claim([w("x", 5)], lease_seconds=60) == {("ns", "x"): Verdict.CLAIMED}
    assert a.claim([w("x", 4), w("y", 1)], lease_seconds=60) == {
        ("ns", "x"): Verdict.STALE,
        ("ns", "y"): Verdict.CLAIMED,
    }
    assert a.claim([w("x", 5)], lease_seconds=60) == {("ns", "x"): Verdict.CLAIMED}  # a redelivery re-applies
    assert a.claim([w("x", 6)], lease_seconds=60) == {("ns", "x"): Verdict.BUSY}  # v5 may still be in flight
    a.release([w("x", 5)], lease_seconds=60, claimed_at=a.last_claim_at)  # v5 landed
    assert a.claim([w("x", 6)], lease_seconds=60) == {("ns", "x"): Verdict.CLAIMED}


def test_a_delete_leaves_a_tombstone_that_older_upserts_cannot_pass(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    a.claim([w("x", 5, "delete")], lease_seconds=60)
    clock.now += 3600  # days later, a redriven old upsert arrives at another worker
    assert b.claim([w("x", 4)], lease_seconds=60) == {("ns", "x"): Verdict.STALE}
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"namespace": {"S": "ns"}, "record_id": {"S": "x"}})
    assert item["Item"]["operation"] == {"S": "delete"}
    assert item["Item"]["version"] == {"N": "5"}
    assert int(item["Item"]["expires_at"]["N"]) == 1_000_000 + 3600


def test_a_released_lease_lets_the_next_version_through_at_once(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    a.claim([w("x", 5)], lease_seconds=30)
    b.release([w("x", 5)], lease_seconds=30, claimed_at=b.last_claim_at)  # not b's lease: nothing happens
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.BUSY}
    a.release([w("x", 5)], lease_seconds=30, claimed_at=a.last_claim_at)
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}


def test_a_second_writer_waits_for_the_lease_even_with_a_newer_version(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    assert a.claim([w("x", 5)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}
    # b holds v6 while a may still be writing v5: b must not write now, or v5 could land after v6
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.BUSY}
    clock.now += 31  # SQS redelivers b's message after the visibility timeout, longer than any lease
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}
    assert a.claim([w("x", 5)], lease_seconds=30) == {("ns", "x"): Verdict.STALE}


def test_a_dead_workers_lease_expires(guards: tuple[VersionGuard, VersionGuard], clock: Clock) -> None:
    a, b = guards
    a.claim([w("x", 5)], lease_seconds=30)  # a dies before writing to Pinecone
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.BUSY}
    clock.now += 31
    assert b.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}


def test_a_duplicate_delivery_shares_the_lease_and_holds_newer_versions_back(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    a.claim([w("x", 5)], lease_seconds=10)
    clock.now += 5
    # the same message delivered twice, to two workers at once: both may write it (same content) ...
    assert b.claim([w("x", 5)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}
    assert b.claim([w("x", 5, "delete")], lease_seconds=30) == {("ns", "x"): Verdict.BUSY}  # not the same write
    # ... and a newer version waits for the longer of the two leases, even if the first worker releases
    a.release([w("x", 5)], lease_seconds=10, claimed_at=1_000_000.0)
    clock.now += 6
    assert a.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.BUSY}
    clock.now += 30
    assert a.claim([w("x", 6)], lease_seconds=30) == {("ns", "x"): Verdict.CLAIMED}


def test_many_records_are_claimed_concurrently_and_one_stale_record_spoils_nothing(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    a.claim([w("r42", 9)], lease_seconds=30)
    clock.now += 31
    writes = [w(f"r{i}", 3) for i in range(250)]
    verdicts = b.claim(writes, lease_seconds=30)
    assert len(verdicts) == 250
    assert [key for key, verdict in verdicts.items() if verdict is not Verdict.CLAIMED] == [("ns", "r42")]
    assert verdicts[("ns", "r42")] is Verdict.STALE


def test_an_unreachable_table_is_a_transient_failure(aws: str) -> None:
    guard = VersionGuard(boto3.client("dynamodb"), "no-such-table", ttl_seconds=60)
    with pytest.raises(GuardUnavailableError):
        guard.claim([w("x", 1)], lease_seconds=30)


# ------------------------------------------------------------------ through the ingest function


def delete_body(tenant: str, record_id: str, version: int) -> str:
    return json.dumps(
        {"schema_version": 1, "op": "delete", "tenant": tenant, "records": [{"id": record_id, "version": version}]}
    )


def test_an_old_upsert_redelivered_after_a_newer_delete_does_not_resurrect(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ["doc"], version=3)])
    driver.run_until_empty()
    driver.publish([delete_body("acme", "doc", 5)])
    driver.run_until_empty()

    # an operator redrives an old copy of the version 4 upsert days later
    driver.publish([upsert_body("acme", ["doc"], version=4)])
    driver.run_until_empty()

    assert pipeline.fetch("acme", ["doc"]) == {}
    assert pipeline.drain() == []
    assert '"StaleWritesDropped":[1.0]' in capsys.readouterr().out.replace(" ", "")


def test_versions_arriving_in_any_order_end_with_the_highest(pipeline: Pipeline) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler, batch_size=1)
    for version in [2, 7, 1, 5, 7, 3]:
        driver.publish([upsert_body("acme", ["doc"], version=version, note=f"v{version}")])
        driver.run_until_empty()
    [record] = pipeline.fetch("acme", ["doc"]).values()
    assert record.metadata == {"v": 7, "note": "v7"}
