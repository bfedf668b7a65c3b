"""The scheduled reconciler beside working workers (moto's DynamoDB and SQS, an in-memory index, an injected clock).

Workers are played by the version guard itself, claiming, writing the index and releasing as the
ingest worker does, at moments the test chooses: between the reconciler's read of the index and
its repair, while a failed write waits for its retry, after a write was dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest

from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import create_version_table
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.ingest.guard_records import GuardedWrite, RecordState, Verdict
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.operations import reconcile_run
from vector_relay.operations.reconcile import Mismatch, Report, metric_values
from vector_relay.operations.reconcile_run import run_scheduled_reconcile
from vector_relay.settings import get_settings
from vector_relay.sqs.dead_letter import send_to_dead_letter_queue

TABLE = "relay-write-versions"
NAMESPACE = SAMPLE_TENANTS["acme"]
START = 1_900_000_000.0  # the test's clock starts here (epoch seconds)
LEASE_SECONDS = 65.0  # an ingest invocation's lease: its time left, DEADLINE_MARGIN_MS and the slack
VISIBILITY_TIMEOUT = 420  # template.yaml's IngestQueue
MAX_RECEIVE_COUNT = 5


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeIndex:
    """The index, as the reconciler's RecordReader sees it; ``after_fetch`` / ``before_delete`` run once."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}  # id -> _relay_version, in NAMESPACE
        self.after_fetch: Callable[[], object] | None = None
        self.before_delete: Callable[[], object] | None = None

    def metadata(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        answer = {i: {"_relay_version": self.versions[i]} for i in ids if i in self.versions}
        hook, self.after_fetch = self.after_fetch, None
        if hook is not None:
            hook()
        return answer

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        hook, self.before_delete = self.before_delete, None
        if hook is not None:
            hook()
        for record_id in ids:
            self.versions.pop(record_id, None)

    def close(self) -> None:
        pass


@pytest.fixture
def dlq_url(aws: str, sample_settings: None, monkeypatch: pytest.MonkeyPatch) -> str:
    create_version_table(TABLE)
    monkeypatch.setenv("WRITE_VERSION_TABLE", TABLE)
    monkeypatch.setenv("SOURCE_QUEUE_VISIBILITY_TIMEOUT_SECONDS", str(VISIBILITY_TIMEOUT))
    monkeypatch.setenv("SOURCE_QUEUE_MAX_RECEIVE_COUNT", str(MAX_RECEIVE_COUNT))
    url = boto3.client("sqs").create_queue(QueueName="ingest-dlq")["QueueUrl"]
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def worker(dlq_url: str, clock: Clock) -> Iterator[VersionGuard]:
    guard = VersionGuard(boto3.client("dynamodb"), TABLE, ttl_seconds=86_400, clock=clock)
    yield guard
    guard.close()


def write(
    worker: VersionGuard, index: FakeIndex, record_id: str, version: int, operation: str, *, lands: bool = True
) -> Verdict:
    """One invocation's write of one record: claim, write the index if claimed (and ``lands``), release."""
    lease = worker.lease(LEASE_SECONDS)
    claimed = GuardedWrite(NAMESPACE, record_id, version, operation)
    verdict = worker.claim([claimed], lease)[claimed.key]
    if verdict is Verdict.CLAIMED and lands:
        if operation == "upsert":
            index.versions[record_id] = str(version)
        else:
            index.versions.pop(record_id, None)
        worker.release(lease, [claimed], {claimed.key})
    return verdict


def recorded(record_id: str) -> RecordState:
    item = boto3.client("dynamodb").get_item(
        TableName=TABLE, Key={"namespace": {"S": NAMESPACE}, "record_id": {"S": record_id}}, ConsistentRead=True
    )["Item"]
    return RecordState.from_item(item)


def reconcile(monkeypatch: pytest.MonkeyPatch, index: FakeIndex, clock: Clock, *, repair: bool = False) -> Report:
    """One run of the scheduled function's pass, at ``clock``'s time, against ``index``."""
    monkeypatch.setattr(reconcile_run, "RecordReader", lambda **_: index)
    monkeypatch.setenv("RECONCILE_REPAIR", "true" if repair else "false")
    get_settings.cache_clear()
    return run_scheduled_reconcile(lambda: 900_000, clock=clock)


def resurrected_after_delete(worker: VersionGuard, index: FakeIndex, clock: Clock) -> None:
    """a: upserted at v1, deleted at v2 through the relay, then v1 written back behind its back; an hour passes."""
    assert write(worker, index, "a", 1, "upsert") is Verdict.CLAIMED
    assert write(worker, index, "a", 2, "delete") is Verdict.CLAIMED
    index.versions["a"] = "1"
    clock.now += 3600


def test_a_repair_spares_an_equal_version_upsert_that_landed_after_the_index_was_read(
    worker: VersionGuard, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a resurrected record, and an upsert of the delete's version that lands once the index was read
    index = FakeIndex()
    resurrected_after_delete(worker, index, clock)
    index.after_fetch = lambda: write(worker, index, "a", 2, "upsert")

    # WHEN the scheduled reconciler repairs
    report = reconcile(monkeypatch, index, clock, repair=True)

    # THEN the upsert, now the record's current write, is still in the index
    assert index.versions.get("a") == "2"
    assert (recorded("a").version, recorded("a").operation) == (2, "upsert")
    assert report.repaired == 0


def test_a_worker_write_arriving_during_a_repair_waits_for_it_and_then_lands(
    worker: VersionGuard, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a resurrected record, and a newer upsert whose worker tries to claim it just as the repair deletes
    index = FakeIndex()
    resurrected_after_delete(worker, index, clock)
    verdicts: list[Verdict] = []
    index.before_delete = lambda: verdicts.append(write(worker, index, "a", 3, "upsert"))

    # WHEN the scheduled reconciler repairs
    report = reconcile(monkeypatch, index, clock, repair=True)

    # THEN the worker found the record held (busy: SQS retries it), the old copy was deleted...
    assert verdicts == [Verdict.BUSY]
    assert report.repaired == 1
    assert "a" not in index.versions
    # ...and the retry, right after (the repair released its hold), claims the record and lands
    assert write(worker, index, "a", 3, "upsert") is Verdict.CLAIMED
    assert index.versions.get("a") == "3"


def test_a_failed_write_is_not_reported_while_its_message_may_still_come_back(
    worker: VersionGuard, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an upsert claimed whose Pinecone request failed: its lease ends, SQS redelivers after 420 s
    index = FakeIndex()
    assert write(worker, index, "a", 1, "upsert", lands=False) is Verdict.CLAIMED
    lease_end = recorded("a").until_ms / 1000

    # WHEN the reconciler runs 5 minutes after the lease, before the retry can have come
    clock.now = lease_end + 300
    waiting = reconcile(monkeypatch, index, clock)

    # THEN nothing is counted for the alarm; the record is in flight
    assert metric_values(waiting)["ReconcileMismatches"] == 0
    assert (waiting.checked, waiting.in_flight) == (0, 1)

    # and once every retry is past (visibility timeout x maxReceiveCount), the record is missing
    clock.now = lease_end + VISIBILITY_TIMEOUT * MAX_RECEIVE_COUNT
    settled = reconcile(monkeypatch, index, clock)
    assert settled.counts() == {"missing": 1}


def dead_letter(url: str, record_id: str, version: int) -> None:
    """What the ingest worker sends on a write's last failed delivery."""
    body = json.dumps(
        {
            "schema_version": 1,
            "op": "upsert",
            "tenant": "acme",
            "records": [{"id": record_id, "version": version, "values": [0.1, 0.2]}],
        }
    )
    attributes = DeadLetterAttributes(
        error_code="retries_exhausted",
        error_detail="last delivery failed: 503",
        source_queue="arn:aws:sqs:us-east-1:123456789012:ingest",
        source_message_id=f"m-{record_id}",
        receive_count=MAX_RECEIVE_COUNT,
    )
    send_to_dead_letter_queue(boto3.client("sqs"), queue_url=url, body=body, attributes=attributes)


def test_a_dead_lettered_write_is_reported_as_such_not_as_drift_and_stays_in_the_dlq(
    worker: VersionGuard, clock: Clock, dlq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN three upserts that never landed: a's message is in the DLQ, b's is not, c's DLQ copy is another version
    index = FakeIndex()
    for record_id, version in (("a", 1), ("b", 1), ("c", 2)):
        assert write(worker, index, record_id, version, "upsert", lands=False) is Verdict.CLAIMED
    dead_letter(dlq_url, "a", 1)
    dead_letter(dlq_url, "c", 1)

    # WHEN the reconciler runs once every retry is past
    clock.now = recorded("c").until_ms / 1000 + VISIBILITY_TIMEOUT * MAX_RECEIVE_COUNT
    report = reconcile(monkeypatch, index, clock)

    # THEN a is counted apart from the mismatches the alarm watches; b and c are drift
    values = metric_values(report)
    assert (values["ReconcileMismatches"], values["ReconcileMismatchesMissing"]) == (2, 2)
    assert values["ReconcileDeadLettered"] == 1
    assert report.dead_lettered == [Mismatch(NAMESPACE, "a", "dead_lettered", 1, "upsert", None)]
    assert sorted(m.record_id for m in report.mismatches) == ["b", "c"]

    # and reading the DLQ consumed nothing: both messages are there, visible at once
    sqs = boto3.client("sqs")
    seen = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert sorted(json.loads(m["Body"])["records"][0]["id"] for m in seen) == ["a", "c"]


def test_the_dlq_is_read_up_to_its_limit_and_every_message_read_is_made_visible_again(dlq_url: str) -> None:
    # imported here: the other tests of the module run without it
    from vector_relay.operations.reconcile_dead_letters import DeadLetterQueue

    # GIVEN 12 dead-lettered writes, none of them the one looked for
    for number in range(12):
        dead_letter(dlq_url, f"other-{number}", 1)
    sqs = boto3.client("sqs")
    receives: list[int] = []
    sqs.meta.events.register("before-call.sqs.ReceiveMessage", lambda **kwargs: receives.append(1))
    queue = DeadLetterQueue(sqs, dlq_url, SAMPLE_TENANTS.get, limit=5)

    # WHEN a write is looked up with a limit of 5 messages
    found = queue.dead_lettered({(NAMESPACE, "a", 1, "upsert")})

    # THEN one receive of 5 was made, nothing was found, and all 12 messages are visible
    assert (found, len(receives)) == (set(), 1)
    attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "12"


def test_an_unreadable_dlq_leaves_the_records_reported_as_mismatches(
    worker: VersionGuard, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an upsert that never landed, and a DLQ the reconciler cannot read (here: it does not exist)
    index = FakeIndex()
    assert write(worker, index, "a", 1, "upsert", lands=False) is Verdict.CLAIMED
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-dlq")

    # WHEN the reconciler runs once every retry is past
    clock.now = recorded("a").until_ms / 1000 + VISIBILITY_TIMEOUT * MAX_RECEIVE_COUNT
    report = reconcile(monkeypatch, index, clock)

    # THEN the pass completes and the record is a mismatch, as without the DLQ lookup
    assert (report.complete, report.counts(), report.dead_lettered) == (True, {"missing": 1}, [])
