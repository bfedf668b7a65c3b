"""The version guard against moto's DynamoDB over HTTP: stale writes dropped, concurrent writers serialised, locks."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_TENANTS, FakeLambdaContext
from tests.integration.conftest import Pipeline, SqsDriver, create_version_table, parametrize_transports
from tests.integration.test_ingest import upsert_body
from tests.lambda_events import lambda_sqs_record
from vector_relay import dependencies
from vector_relay.aws_clients import aws_credentials, dynamodb_client
from vector_relay.dependencies import reset_worker_dependencies, worker_dependencies
from vector_relay.errors import GuardUnavailableError
from vector_relay.ingest.dynamodb_json import JsonDynamoDB
from vector_relay.ingest.guard_records import (
    LOCK_RECORD_ID,
    LOCK_SECONDS,
    LOCK_WAIT_SECONDS,
    GuardedWrite,
    Lease,
    RecordState,
    Verdict,
)
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.settings import get_settings

TABLE = "guard-test"


class Clock:
    """Wall-clock time under the test's control; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test on the pipeline runs over REST and over gRPC


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_guard(clock: Clock, dynamodb: object | None = None) -> VersionGuard:
    return VersionGuard(
        dynamodb or boto3.client("dynamodb"),  # type: ignore[arg-type]
        TABLE,
        ttl_seconds=3600,
        clock=clock,
        sleep=clock.sleep,
    )


@pytest.fixture
def guards(aws: str, clock: Clock) -> tuple[VersionGuard, VersionGuard]:
    create_version_table(TABLE)
    return make_guard(clock), make_guard(clock)


def w(record_id: str, version: int, operation: str = "upsert", namespace: str = "ns") -> GuardedWrite:
    return GuardedWrite(namespace, record_id, version, operation)


def claim(
    guard: VersionGuard, *writes: GuardedWrite, seconds: float = 30
) -> tuple[Lease, dict[tuple[str, str], Verdict]]:
    lease = guard.lease(seconds)
    return lease, guard.claim(list(writes), lease)


def recorded(record_id: str, namespace: str = "ns") -> RecordState:
    return RecordState.parse(item(record_id, namespace)["state"]["S"])


def item(record_id: str, namespace: str = "ns") -> dict[str, Any]:
    key = {"namespace": {"S": namespace}, "record_id": {"S": record_id}}
    return boto3.client("dynamodb").get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item", {})


def test_newer_versions_are_claimed_and_older_ones_are_stale(guards: tuple[VersionGuard, VersionGuard]) -> None:
    a, _ = guards
    lease, verdicts = claim(a, w("x", 5))
    assert verdicts == {("ns", "x"): Verdict.CLAIMED}
    a.release(lease, [w("x", 5)], landed={("ns", "x")})
    assert claim(a, w("x", 4), w("y", 1))[1] == {("ns", "x"): Verdict.STALE, ("ns", "y"): Verdict.CLAIMED}
    lease, verdicts = claim(a, w("x", 5))
    assert verdicts == {("ns", "x"): Verdict.CLAIMED}  # a redelivery re-applies
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}  # v5 may still be in flight
    a.release(lease, [w("x", 5)], landed={("ns", "x")})  # v5 landed
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}
    assert recorded("x").version == 6


def test_a_delete_leaves_a_tombstone_that_older_upserts_cannot_pass(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    claim(a, w("x", 5, "delete"))
    clock.now += 3600  # days later, a redriven old upsert arrives at another worker
    assert claim(b, w("x", 4))[1] == {("ns", "x"): Verdict.STALE}
    state = recorded("x")
    assert (state.version, state.operation) == (5, "delete")
    assert int(item("x")["expires_at"]["N"]) == 1_000_000 + 3600


def test_only_the_lease_holders_release_frees_a_record(guards: tuple[VersionGuard, VersionGuard]) -> None:
    a, b = guards
    lease_a, _ = claim(a, w("x", 5))
    lease_b, _ = claim(b, w("y", 1))
    b.release(lease_b, [w("x", 5), w("y", 1)], landed={("ns", "x"), ("ns", "y")})  # x is not b's to release
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}
    a.release(lease_a, [w("x", 5)], landed={("ns", "x")})
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}


class HeldAnswers:
    """The guard's client (the JSON client against moto's server), whose ``PutItem`` is sent and answered only
    once ``let_go`` is set (a marker DynamoDB has not applied yet)."""

    def __init__(self) -> None:
        self._client = JsonDynamoDB(dynamodb_client(), aws_credentials())
        self.let_go = threading.Event()
        self.sent: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send(self, operation: str, request: dict[str, Any] | bytes) -> Callable[[], Any]:
        self.sent.append(operation)
        if operation != "PutItem":
            return self._client.send(operation, request)

        def held() -> Any:
            assert self.let_go.wait(60)
            return self._client.send(operation, request)()

        return held


def test_the_handlers_release_returns_before_its_answer_and_the_same_guard_reads_its_marker_after_it(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    """The batch does not wait a round trip for its release marker (wait=False), yet this container's next
    claim of the record, which reads markers, sees it: the read waits for the marker's answer."""
    client = HeldAnswers()
    a = make_guard(clock, client)
    lease, verdicts = claim(a, w("x", 5))
    assert verdicts == {("ns", "x"): Verdict.CLAIMED}
    released = threading.Thread(target=a.release, args=(lease, [w("x", 5)], {("ns", "x")}), kwargs={"wait": False})
    released.start()
    released.join(60)
    assert not released.is_alive()  # returned with the answer still held (waiting for it would hang here)
    assert client.sent[-1] == "PutItem"
    threading.Timer(0.2, client.let_go.set).start()  # the answer arrives later, whenever: the read waits for it
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}  # v5's lease read as released
    a.close()


def test_a_release_not_waited_for_that_fails_is_ignored_and_the_lease_expires(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    _, b = guards
    a = make_guard(clock, JsonDynamoDB(dynamodb_client(), aws_credentials()))
    lease, _ = claim(a, w("x", 5))
    boto3.client("dynamodb").delete_table(TableName=TABLE)  # the marker's write fails (ResourceNotFound)
    a.release(lease, [w("x", 5)], landed={("ns", "x")}, wait=False)
    a.close()  # its answer read (and its failure ignored) before the guard's threads end
    create_version_table(TABLE)
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}  # a new table: nothing held


def test_a_write_that_did_not_land_keeps_its_lease(guards: tuple[VersionGuard, VersionGuard], clock: Clock) -> None:
    a, b = guards
    lease, _ = claim(a, w("x", 5), w("y", 5))
    # x landed; y's request was cancelled at the deadline and may still reach Pinecone
    a.release(lease, [w("x", 5), w("y", 5)], landed={("ns", "x")})
    assert claim(b, w("x", 6), w("y", 6))[1] == {("ns", "x"): Verdict.CLAIMED, ("ns", "y"): Verdict.BUSY}
    clock.now += 31  # the lease has expired
    assert claim(b, w("y", 6))[1] == {("ns", "y"): Verdict.CLAIMED}


def test_a_second_writer_waits_for_the_lease_even_with_a_newer_version(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    assert claim(a, w("x", 5))[1] == {("ns", "x"): Verdict.CLAIMED}
    # b holds v6 while a may still be writing v5: b must not write now, or v5 could land after v6
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}
    clock.now += 31  # SQS redelivers b's message after the visibility timeout, longer than any lease
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}
    assert claim(a, w("x", 5))[1] == {("ns", "x"): Verdict.STALE}


def test_a_duplicate_delivery_shares_the_lease_and_holds_newer_versions_back(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    lease_a, _ = claim(a, w("x", 5), seconds=10)
    clock.now += 5
    # the same message delivered twice, to two workers at once: both may write it (same content) ...
    lease_b, verdicts = claim(b, w("x", 5), seconds=30)
    assert verdicts == {("ns", "x"): Verdict.CLAIMED}
    assert claim(b, w("x", 5, "delete"))[1] == {("ns", "x"): Verdict.BUSY}  # not the same write
    # ... and a newer version waits for both: the first worker's release is not enough
    a.release(lease_a, [w("x", 5)], landed={("ns", "x")})
    clock.now += 6
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}
    b.release(lease_b, [w("x", 5)], landed={("ns", "x")})
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}


def test_a_duplicates_lease_expires_at_the_later_end(guards: tuple[VersionGuard, VersionGuard], clock: Clock) -> None:
    a, b = guards
    claim(a, w("x", 5), seconds=10)
    claim(b, w("x", 5), seconds=30)  # both die before writing
    clock.now += 11
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}
    clock.now += 20
    assert claim(a, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}


def test_many_records_are_claimed_in_batches_and_one_stale_record_spoils_nothing(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    claim(a, w("r42", 9))
    clock.now += 31
    before = b.requests
    lease, verdicts = claim(b, *(w(f"r{i}", 3) for i in range(250)))
    assert len(verdicts) == 250
    assert [key for key, verdict in verdicts.items() if verdict is not Verdict.CLAIMED] == [("ns", "r42")]
    assert verdicts[("ns", "r42")] is Verdict.STALE
    # 3 transactions of up to 100 blind conditional puts, the one refused for r42 sent again without it,
    # then for r42 alone: lock + read + unlock (no claim: stale); instead of one request per record
    assert b.requests - before == 3 + 1 + 1 + 1 + 1
    b.release(lease, [w(f"r{i}", 3) for i in range(250) if i != 42], landed={("ns", f"r{i}") for i in range(250)})
    assert b.requests - before == 8
    assert all(recorded(f"r{i}").version == 3 for i in (0, 99, 100, 249))


def per_record_guard_item(record_id: str, namespace: str = "ns", version: int = 0) -> None:
    """An item as the per-record guard (before 2026-11) left it, its lease long over: a blind claim cannot
    judge it (it has no numeric version and lease end), so claiming its record takes the lock and a read."""
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "namespace": {"S": namespace},
            "record_id": {"S": record_id},
            "version": {"N": str(version)},
            "operation": {"S": "upsert"},
            "lease_until": {"N": "0"},
        },
    )


def test_a_held_claim_lock_makes_records_that_must_be_read_busy_until_it_expires(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    a, b = guards
    lease, _ = claim(a, w("x", 1))
    a.release(lease, [w("x", 1)], landed={("ns", "x")})  # x's lease is over by its marker: only a read tells
    # a worker took the namespace's claim lock and died before dropping it
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "namespace": {"S": "ns"},
            "record_id": {"S": LOCK_RECORD_ID},
            "lock_token": {"S": "dead-worker"},
            "lock_until": {"N": str(int((clock.now + LOCK_SECONDS) * 1000))},
        },
    )
    started = clock.now
    # y, which nobody holds, is claimed without the lock; x must be read, under the lock
    assert claim(b, w("x", 2), w("y", 1))[1] == {("ns", "x"): Verdict.BUSY, ("ns", "y"): Verdict.CLAIMED}
    assert started + LOCK_WAIT_SECONDS - 0.5 <= clock.now <= started + LOCK_WAIT_SECONDS + 0.5  # waited, then gave up
    assert claim(a, w("x", 2), namespace_other := w("z", 1, namespace="other"))[1] == {
        ("ns", "x"): Verdict.BUSY,
        namespace_other.key: Verdict.CLAIMED,  # other namespaces are not held up
    }
    clock.now = started + LOCK_SECONDS + 1
    assert claim(b, w("x", 2))[1] == {("ns", "x"): Verdict.CLAIMED}
    assert item(LOCK_RECORD_ID) == {}  # and the lock was dropped again


class SlowReads:
    """A DynamoDB client whose reads take so long that the claim lock expires, and maybe another worker takes it."""

    def __init__(self, clock: Clock, *, taken_over: bool) -> None:
        self._client = boto3.client("dynamodb")
        self._clock = clock
        self._taken_over = taken_over

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, **kwargs: Any) -> Any:
        self._clock.now += LOCK_SECONDS + 1
        if self._taken_over:
            self._client.put_item(
                TableName=TABLE,
                Item={
                    "namespace": {"S": "ns"},
                    "record_id": {"S": LOCK_RECORD_ID},
                    "lock_token": {"S": "another-worker"},
                    "lock_until": {"N": str(int((self._clock.now + LOCK_SECONDS) * 1000))},
                },
            )
        return self._client.batch_get_item(**kwargs)


def test_no_claim_is_written_once_the_lock_was_taken_over(aws: str, clock: Clock) -> None:
    create_version_table(TABLE)
    per_record_guard_item("x")
    slow = make_guard(clock, SlowReads(clock, taken_over=True))
    assert claim(slow, w("x", 1))[1] == {("ns", "x"): Verdict.BUSY}
    assert "state" not in item("x")  # not claimed: still the per-record guard's item
    assert item(LOCK_RECORD_ID)["lock_token"] == {"S": "another-worker"}  # not dropped by the slow worker


def test_a_lock_nobody_took_meanwhile_is_renewed_and_the_claims_written(aws: str, clock: Clock) -> None:
    create_version_table(TABLE)
    per_record_guard_item("x")
    slow = make_guard(clock, SlowReads(clock, taken_over=False))
    assert claim(slow, w("x", 1))[1] == {("ns", "x"): Verdict.CLAIMED}
    assert recorded("x").version == 1
    assert item(LOCK_RECORD_ID) == {}


def test_one_session_claims_a_record_again_with_a_higher_version(guards: tuple[VersionGuard, VersionGuard]) -> None:
    a, b = guards
    lease = a.lease(30)
    session = a.session(lease)
    first = session.submit("ns", [w("x", 3), w("y", 1)])
    second = session.submit("ns", [w("x", 5)])  # a later message of the same batch: its own lease is no obstacle
    third = session.submit("ns", [w("x", 4)])
    session.close()
    assert first.result() == {("ns", "x"): Verdict.CLAIMED, ("ns", "y"): Verdict.CLAIMED}
    assert second.result() == {("ns", "x"): Verdict.CLAIMED}
    assert third.result() == {("ns", "x"): Verdict.STALE}
    assert recorded("x").version == 5
    assert claim(b, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}  # but another invocation's is


def test_concurrent_workers_never_both_hold_a_record(aws: str) -> None:
    """Eight workers claim the same records with different versions at once, on real threads and clocks.

    Which worker wins the race is not asserted, nor whether a loser hears ``STALE`` or ``BUSY`` (a
    worker that meets another's claim lock is told ``BUSY`` whatever its version). What the guard
    promises is: one holder per record while its lease is live, the recorded version is the
    holder's, and every ``BUSY`` writer that retries after the hold ends is then claimed or stale.
    """
    create_version_table(TABLE)
    workers = [VersionGuard(boto3.client("dynamodb"), TABLE, ttl_seconds=3600) for _ in range(8)]
    records = [f"r{i}" for i in range(40)]
    start = threading.Barrier(len(workers))

    def writes_of(index: int) -> list[GuardedWrite]:
        return [w(record_id, index + 1) for record_id in records]  # worker i writes version i + 1

    def run(index: int) -> tuple[Lease, dict[tuple[str, str], Verdict]]:
        start.wait()
        guard = workers[index]
        lease = guard.lease(600)  # live for the whole test: only a release ends a hold here
        return lease, guard.claim(writes_of(index), lease)

    with ThreadPoolExecutor(len(workers)) as pool:
        results = list(pool.map(run, range(len(workers))))
    for record_id in records:
        verdicts = [verdicts[("ns", record_id)] for _, verdicts in results]
        assert verdicts.count(Verdict.CLAIMED) == 1, verdicts  # every lease is still live: one holder only
        holder = verdicts.index(Verdict.CLAIMED)
        assert recorded(record_id).version == holder + 1
        for index, verdict in enumerate(verdicts):
            assert verdict in (Verdict.CLAIMED, Verdict.STALE, Verdict.BUSY)
            if verdict is Verdict.STALE:  # stale only ever means "an equal or newer version is recorded"
                assert index < holder, verdicts

    # The holders' writes land and they release; then each busy writer retries, as SQS would redeliver it.
    for index, (lease, verdicts) in enumerate(results):
        landed = {key for key, verdict in verdicts.items() if verdict is Verdict.CLAIMED}
        workers[index].release(lease, [w(key[1], index + 1) for key in landed], landed=landed)
    retries = [
        (index, record_id)
        for index, (_, verdicts) in enumerate(results)
        for record_id in records
        if verdicts[("ns", record_id)] is Verdict.BUSY
    ]
    random.Random(12).shuffle(retries)  # in no particular order: lower versions after higher ones too
    for index, record_id in retries:
        before = recorded(record_id).version
        guard = workers[index]
        lease = guard.lease(60)
        verdict = guard.claim([w(record_id, index + 1)], lease)[("ns", record_id)]
        assert verdict is (Verdict.CLAIMED if index + 1 > before else Verdict.STALE), (index, record_id, before)
        if verdict is Verdict.CLAIMED:
            guard.release(lease, [w(record_id, index + 1)], landed={("ns", record_id)})
    for record_id in records:  # the highest version (never stale, so claimed or retried) is the last word
        assert recorded(record_id).version == len(workers)


def test_an_unreachable_table_is_a_transient_failure(aws: str) -> None:
    guard = VersionGuard(boto3.client("dynamodb"), "no-such-table", ttl_seconds=60)
    with pytest.raises(GuardUnavailableError):
        guard.claim([w("x", 1)], guard.lease(30))


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
    assert record.metadata == {"v": 7, "note": "v7", "_relay_version": "7"}


def test_a_record_another_invocation_is_writing_is_retried_not_written(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """Transient: the message comes back; the other invocation's release lets it through at once."""
    acme = SAMPLE_TENANTS["acme"]
    other = VersionGuard(boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600)
    lease = other.lease(60)
    assert other.claim([w("doc", 4, namespace=acme)], lease) == {(acme, "doc"): Verdict.CLAIMED}
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ["doc"], version=5), upsert_body("acme", ["free"], version=1)])
    response = driver.deliver_once()
    assert response is not None
    assert len(response["batchItemFailures"]) == 1
    assert set(pipeline.fetch("acme", ["doc", "free"])) == {"free"}
    assert '"BusyWrites":[1.0]' in capsys.readouterr().out.replace(" ", "")

    other.release(lease, [w("doc", 4, namespace=acme)], landed=set())  # v4 failed: still held
    assert driver.deliver_once() is not None
    assert set(pipeline.fetch("acme", ["doc"])) == set()
    other.release(lease, [w("doc", 4, namespace=acme)], landed={(acme, "doc")})
    driver.run_until_empty()
    [record] = pipeline.fetch("acme", ["doc"]).values()
    assert record.metadata is not None
    assert record.metadata["v"] == 5


def test_a_sessions_submissions_of_the_same_records_are_claimed_in_order(aws: str) -> None:
    """Two groups are claimed at a time, but never the same record twice at once: the last word is the highest."""
    create_version_table(TABLE)
    guard = VersionGuard(boto3.client("dynamodb"), TABLE, ttl_seconds=3600)
    for seed in range(4):  # a race shows up in some runs only: try a few
        namespace = f"ns{seed}"
        rng = random.Random(seed)
        session = guard.session(guard.lease(60))
        submitted = []
        for step in range(1, 61):
            version = step if step % 7 else step - 5  # now and then an older version arrives late
            writes = [w(record_id, version, namespace=namespace) for record_id in rng.sample(RECORD_POOL, 8)]
            submitted.append((writes, session.submit(namespace, writes)))
        session.close()
        seen: dict[str, int] = {}  # the highest version of each record submitted so far
        for writes, future in submitted:
            for write in writes:
                before = seen.get(write.record_id, 0)
                assert future.result()[write.key] is (Verdict.CLAIMED if write.version >= before else Verdict.STALE)
            for write in writes:
                seen[write.record_id] = max(seen.get(write.record_id, 0), write.version)
        for record_id, version in seen.items():
            assert recorded(record_id, namespace).version == version


RECORD_POOL = [f"r{i}" for i in range(25)]


class TimedOutWrites:
    """A DynamoDB client whose claim writes are applied but answered too late (the client times out)."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self._client.transact_write_items(**kwargs)
        raise ReadTimeoutError(endpoint_url="http://dynamodb")


def test_after_a_claim_write_of_unknown_outcome_the_lock_is_dropped_and_the_applied_claim_holds_its_lease(
    aws: str, clock: Clock
) -> None:
    """Transient: the writes are retried. The lock need not be left to expire (it was until issue 32): a
    claim applied late is applied only if the record is still as its worker read it, and this one was."""
    create_version_table(TABLE)
    guard = make_guard(clock, TimedOutWrites())
    with pytest.raises(GuardUnavailableError):
        claim(guard, w("x", 5))
    assert "lock_token" not in item(LOCK_RECORD_ID)  # dropped: the next worker does not wait LOCK_SECONDS
    other = make_guard(clock)
    assert claim(other, w("x", 6))[1] == {("ns", "x"): Verdict.BUSY}  # the applied claim's lease is live
    assert claim(other, w("x", 4))[1] == {("ns", "x"): Verdict.STALE}
    clock.now += 31  # the lease (30 s) ended
    assert claim(other, w("x", 6))[1] == {("ns", "x"): Verdict.CLAIMED}


def test_a_blind_claim_never_replaces_a_higher_version_nor_a_lease_that_ended_after_it_was_sent(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    """A blind claim carries its sender's clock (its ``:now``): applied late, it is still judged by that time."""
    a, b = guards
    claim(a, w("x", 4))  # a's lease on x v4: 30 s
    lease_b = b.lease(30)
    clock.now -= 5  # b's claim of v5 was sent 5 s ago and DynamoDB applies it only now
    assert b._claim_blind("ns", [w("x", 5)], lease_b, lambda: False) == (set(), [w("x", 5)])
    clock.now += 5 + 31  # sent once a's lease had ended
    assert b._claim_blind("ns", [w("x", 5)], lease_b, lambda: False) == ({("ns", "x")}, [])
    assert (recorded("x").version, recorded("x").tokens) == (5, (lease_b.token,))
    clock.now += 31
    assert a._claim_blind("ns", [w("x", 4)], a.lease(30), lambda: False) == (set(), [w("x", 4)])  # v5 is higher
    assert recorded("x").version == 5


def test_items_written_before_blind_claims_are_read_and_then_carry_the_numbers(
    guards: tuple[VersionGuard, VersionGuard], clock: Clock
) -> None:
    """An item as the guard wrote it until 2026-12-07 (its state string only, no ``v`` and ``u``): a blind
    claim cannot judge it, so it is read and claimed as before, and written in today's form."""
    ended = int((clock.now - 60) * 1000)
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={"namespace": {"S": "ns"}, "record_id": {"S": "x"}, "state": {"S": f"3 upsert {ended} old-token"}},
    )
    a, _ = guards
    before = a.requests
    assert claim(a, w("x", 2))[1] == {("ns", "x"): Verdict.STALE}
    assert a.requests - before == 4  # blind (refused), lock, read, unlock
    lease, verdicts = claim(a, w("x", 4))
    assert verdicts == {("ns", "x"): Verdict.CLAIMED}
    assert (item("x")["v"], item("x")["u"]) == ({"N": "4"}, {"N": str(lease.until_ms)})


def test_items_of_the_per_record_guard_are_read(guards: tuple[VersionGuard, VersionGuard], clock: Clock) -> None:
    boto3.client("dynamodb").put_item(
        TableName=TABLE,
        Item={
            "namespace": {"S": "ns"},
            "record_id": {"S": "old"},
            "version": {"N": "5"},
            "operation": {"S": "delete"},
            "lease_until": {"N": str(int((clock.now + 10) * 1000))},
        },
    )
    a, _ = guards
    assert claim(a, w("old", 4))[1] == {("ns", "old"): Verdict.STALE}
    assert claim(a, w("old", 6))[1] == {("ns", "old"): Verdict.BUSY}  # its lease can only expire
    clock.now += 11
    assert claim(a, w("old", 6))[1] == {("ns", "old"): Verdict.CLAIMED}


class RecordedCalls:
    """A DynamoDB client that notes the namespace of every lock taken and dropped, in order."""

    def __init__(self) -> None:
        self._client = boto3.client("dynamodb")
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        self.calls.append(f"lock {kwargs['Item']['namespace']['S']}")
        return self._client.put_item(**kwargs)

    def delete_item(self, **kwargs: Any) -> Any:
        self.calls.append(f"unlock {kwargs['Key']['namespace']['S']}")
        return self._client.delete_item(**kwargs)


def test_a_namespaces_lock_is_dropped_as_soon_as_its_claims_are_made(aws: str) -> None:
    """Even with one claim thread and other namespaces queued behind it."""
    create_version_table(TABLE)
    for namespace, record_id in [("a", "x"), ("b", "x"), ("a", "y"), ("c", "x")]:
        per_record_guard_item(record_id, namespace)  # each must be read: its namespace's lock is taken
    client = RecordedCalls()
    guard = VersionGuard(client, TABLE, ttl_seconds=3600, concurrency=1)  # type: ignore[arg-type]
    session = guard.session(guard.lease(60))
    busy = threading.Event()
    guard._pool.submit(busy.wait)  # type: ignore[union-attr]  # hold the one thread until all is queued
    for namespace, record_id in [("a", "x"), ("b", "x"), ("a", "y"), ("c", "x")]:
        session.submit(namespace, [w(record_id, 1, namespace=namespace)])
    busy.set()
    session.close()
    # a's second drain, queued behind b's, finds a's claims made: a's lock was dropped before b's was taken
    assert client.calls == ["lock a", "unlock a", "lock b", "unlock b", "lock c", "unlock c"]


def test_a_filter_operation_waits_for_an_earlier_busy_write_of_its_batch(pipeline: Pipeline) -> None:
    """Transient: both messages come back; the purge never runs before the write it follows."""
    acme = SAMPLE_TENANTS["acme"]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ["keep"], version=1)])
    driver.run_until_empty()
    other = VersionGuard(boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600)
    other.claim([w("doc", 4, namespace=acme)], other.lease(60))
    purge = json.dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": "acme"})
    driver.publish([upsert_body("acme", ["doc"], version=5)])
    driver.publish([purge])
    response = driver.deliver_once()
    assert response is not None
    assert len(response["batchItemFailures"]) == 2
    assert set(pipeline.fetch("acme", ["keep"])) == {"keep"}


def workers_guard_reads_the_time_of(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """The ingest worker's version guard reads ``moment`` as the time (its clock injected).

    A test whose other worker holds a record for 2 s must meet that hold live however long a busy
    machine takes to reach the handler's claim: with a real clock, one repeat run of twenty let the 2 s
    pass first, the record was claimed, not busy, and nothing waited. Delays the worker computes from
    the hold's end (visibility, requeued copies) come from this clock too, so they are never shorter
    than the real hold has left.
    """
    monkeypatch.setattr(
        dependencies,
        "version_guard",
        lambda settings: VersionGuard(
            boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600, clock=lambda: moment
        ),
    )
    reset_worker_dependencies()  # the next invocation builds its container, and guard, with it


def test_a_busy_message_comes_back_when_the_hold_ends_not_after_the_visibility_timeout(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transient, and retried soon: the queue's visibility timeout (420 s) would hold it for minutes.

    No wall-clock race: the message cannot come back before the hold has ended (the worker sets its
    visibility to the hold's end plus a second, a lower bound that holds however slow the machine),
    and it must come back within a ceiling far above the hold and far below the queue's 420 s.
    """
    acme = SAMPLE_TENANTS["acme"]
    other = VersionGuard(boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600)
    hold = other.lease(2)  # another worker holds doc for 2 s more
    other.claim([w("doc", 4, namespace=acme)], hold)
    workers_guard_reads_the_time_of(monkeypatch, time.time())  # the hold is live whenever the handler gets there
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert_body("acme", ["doc"], version=5))
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert_body("acme", ["free"], version=1))
    messages = sqs.receive_message(QueueUrl=pipeline.queue_url, AttributeNames=["All"], MaxNumberOfMessages=2)
    event = {"Records": [lambda_sqs_record(m, pipeline.queue_arn, "us-east-1") for m in messages["Messages"]]}
    [message] = [m for m in messages["Messages"] if '"doc"' in m["Body"]]
    response = ingest_app.lambda_handler(event, FakeLambdaContext())
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == [message["MessageId"]]

    ceiling = time.time() + 120
    while not (again := sqs.receive_message(QueueUrl=pipeline.queue_url, WaitTimeSeconds=1).get("Messages")):
        assert time.time() < ceiling, "the busy message did not come back when the hold ended"
    seen_at = time.time()
    assert again[0]["MessageId"] == message["MessageId"]
    assert seen_at >= hold.until_ms / 1000  # not before the hold ended


def test_a_message_still_busy_on_its_last_delivery_is_sent_again_not_dead_lettered(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting for another worker is not a failure: a hot record must not push writes into the DLQ."""
    monkeypatch.setenv("SOURCE_QUEUE_MAX_RECEIVE_COUNT", "1")  # every delivery is the last
    get_settings.cache_clear()
    reset_worker_dependencies()
    acme = SAMPLE_TENANTS["acme"]
    other = VersionGuard(boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600)
    other.claim([w("doc", 4, namespace=acme)], other.lease(60))  # held for a minute by another worker
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    body = upsert_body("acme", ["doc"], version=5)
    driver.publish([body])

    response = driver.deliver_once()

    assert response == {"batchItemFailures": []}  # the original is done with
    assert pipeline.drain(pipeline.dlq_url) == []
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"  # a fresh copy, back when the hold ends


def test_messages_held_behind_a_busy_write_on_their_last_delivery_are_sent_again_with_it_after_it(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting is never a failure, also for the messages that wait behind the busy one in its namespace."""
    monkeypatch.setenv("SOURCE_QUEUE_MAX_RECEIVE_COUNT", "1")  # every delivery is the last
    get_settings.cache_clear()
    reset_worker_dependencies()
    acme = SAMPLE_TENANTS["acme"]
    other = VersionGuard(boto3.client("dynamodb"), "relay-write-versions", ttl_seconds=3600)
    other.claim([w("doc", 4, namespace=acme)], other.lease(2))  # another worker holds doc v4 for 2 s
    workers_guard_reads_the_time_of(monkeypatch, time.time())  # the hold is live whenever the handler gets there
    purge = json.dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": "acme"})
    bodies = [upsert_body("acme", ["doc"], version=5), purge, upsert_body("acme", ["after"], version=1)]
    sqs = boto3.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    received = sqs.receive_message(QueueUrl=pipeline.queue_url, AttributeNames=["All"], MaxNumberOfMessages=3)
    by_body = {m["Body"]: m for m in received["Messages"]}
    assert set(by_body) == set(bodies)
    # one batch, in this order: the busy upsert, then the purge and the upsert that must follow it
    event = {"Records": [lambda_sqs_record(by_body[b], pipeline.queue_arn, "us-east-1") for b in bodies]}

    # WHEN the batch's last delivery meets the busy record
    response = ingest_app.lambda_handler(event, FakeLambdaContext())

    # THEN nothing is dead-lettered: the busy message and both messages held behind it are sent again,
    # the held ones no sooner than the busy one, each copy carrying when its write was first sent
    assert response == {"batchItemFailures": []}
    assert pipeline.drain(pipeline.dlq_url) == []
    delays = {
        getattr(record, "message_id", None): getattr(record, "delay", None)
        for record in caplog.records
        if record.getMessage() == "waiting on its last delivery: sent again"
    }
    ids = [by_body[b]["MessageId"] for b in bodies]
    assert set(delays) == set(ids)
    assert delays[ids[1]] >= delays[ids[0]]
    assert delays[ids[2]] >= delays[ids[0]]
    copies: list[dict[str, Any]] = []
    ceiling = time.monotonic() + 120  # the copies are delayed until the 2 s hold has ended
    while len(copies) < 3:
        assert time.monotonic() < ceiling, "the requeued copies did not come back"
        copies += sqs.receive_message(
            QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", [])
    first_sent = {m["Body"]: m["Attributes"]["SentTimestamp"] for m in received["Messages"]}
    assert {m["Body"]: m["MessageAttributes"]["first_sent_at"]["StringValue"] for m in copies} == first_sent


def test_a_write_first_sent_longer_ago_than_the_guard_remembers_is_dead_lettered_as_expired(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Poison: applied, it could overtake a delete whose tombstone the guard has let expire."""
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    guard = worker_dependencies(ingest_app.metrics).guard
    assert guard is not None
    ttl = get_settings().write_version_ttl_seconds
    sqs = boto3.client("sqs")
    now_ms = int(time.time() * 1000)
    # GIVEN a copy (requeued or redriven) whose write was first sent 20 days ago, beside a fresh write
    sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=upsert_body("acme", ["old"], version=1),
        MessageAttributes={"first_sent_at": {"DataType": "Number", "StringValue": str(now_ms - 20 * 86_400_000)}},
    )
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert_body("acme", ["new"], version=1))

    assert driver.deliver_once() == {"batchItemFailures": []}

    # THEN the old one is in the DLQ with its code, and only the fresh one landed
    [dead] = pipeline.drain()
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "write_expired"
    assert int(dead["MessageAttributes"]["first_sent_at"]["StringValue"]) == now_ms - 20 * 86_400_000
    assert set(pipeline.fetch("acme", ["old", "new"])) == {"new"}

    # AND a copy first sent just now is refused once the guard's memory of that time is nearly over
    # (the clock is the guard's, moved on instead of waited out); its SentTimestamp is no excuse
    sqs.send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=upsert_body("acme", ["late"], version=1),
        MessageAttributes={"first_sent_at": {"DataType": "Number", "StringValue": str(now_ms)}},
    )
    monkeypatch.setattr(guard, "_clock", lambda: time.time() + ttl - 1800)
    assert driver.deliver_once() == {"batchItemFailures": []}
    [late] = pipeline.drain()
    assert late["MessageAttributes"]["error_code"]["StringValue"] == "write_expired"
    assert "late" not in pipeline.fetch("acme", ["late"])
