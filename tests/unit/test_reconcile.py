"""The reconciler's paging and verdicts, against an in-memory index, guard and dead-letter queue."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.ingest.guard_records import GuardedWrite, Lease, RecordState
from vector_relay.operations.reconcile import (
    FETCH_PAGE,
    GuardPage,
    Mismatch,
    Report,
    WriteKey,
    compare,
    metric_values,
    redelivery_horizon_ms,
)


class FakeIndex:
    def __init__(self, records: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.records = records
        self.fetches: list[int] = []
        self.deleted: list[tuple[str, tuple[str, ...]]] = []

    def metadata(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.fetches.append(len(ids))
        return {i: self.records[(namespace, i)] for i in ids if (namespace, i) in self.records}

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        self.deleted.append((namespace, tuple(ids)))


class FakeGuard:
    """Holds every record it is asked to, unless told the record changed since the scan."""

    def __init__(self, changed: Collection[str] = ()) -> None:
        self.changed = set(changed)
        self.released: list[tuple[list[GuardedWrite], set[tuple[str, str]]]] = []

    def lease(self, seconds: float) -> Lease:
        return Lease("repair", int(seconds * 1000))

    def hold_unchanged(self, namespace: str, expected: Mapping[str, RecordState], lease: Lease) -> set[str]:
        return set(expected) - self.changed

    def release(self, lease: Lease, claimed: Iterable[GuardedWrite], landed: Collection[tuple[str, str]]) -> None:
        self.released.append((list(claimed), set(landed)))


class FakeDeadLetters:
    def __init__(self, writes: Collection[WriteKey]) -> None:
        self.writes = set(writes)
        self.asked: list[set[WriteKey]] = []

    def dead_lettered(self, writes: Collection[WriteKey]) -> set[WriteKey]:
        self.asked.append(set(writes))
        return self.writes & set(writes)


def test_records_are_fetched_in_pages_per_namespace_and_live_leases_are_skipped() -> None:
    records = [("ns1", f"r{i}", RecordState(2, "upsert", 0, ("t",))) for i in range(FETCH_PAGE + 5)]
    records += [
        ("ns2", "x", RecordState(1, "upsert", 0, ("t",))),
        ("ns2", "live", RecordState(1, "upsert", 10**13, ("t",))),
    ]
    index = FakeIndex({("ns1", f"r{i}"): {"_relay_version": "2"} for i in range(FETCH_PAGE + 5)})
    pages: list[int] = []

    report = compare([GuardPage(records, None)], index, now_ms=10**12, on_page=lambda r: pages.append(r.checked))

    assert sorted(index.fetches) == [1, 5, FETCH_PAGE]
    assert (report.checked, report.in_flight) == (FETCH_PAGE + 6, 1)
    assert report.counts() == {"missing": 1}  # ns2/x
    assert pages[-1] == FETCH_PAGE + 6


def test_a_newer_copy_after_a_recorded_delete_is_not_deleted() -> None:
    records = [("ns", "a", RecordState(5, "delete", 0, ())), ("ns", "b", RecordState(5, "delete", 0, ()))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "4"}, ("ns", "b"): {"_relay_version": "6"}})

    report = compare([GuardPage(records, None)], index, now_ms=1, repair=True, guard=FakeGuard())

    assert report.counts() == {"resurrected": 1, "ahead": 1}
    assert index.deleted == [("ns", ("a",))]  # only what the tombstone outranks
    assert report.repaired == 1


def test_a_pass_told_to_stop_ends_before_the_next_page_and_says_where_to_go_on() -> None:
    def page(name: str, next_key: str | None) -> GuardPage:
        key = {"record_id": {"S": next_key}} if next_key else None
        return GuardPage([("ns", name, RecordState(1, "upsert", 0, ()))], key)

    index = FakeIndex({("ns", n): {"_relay_version": "1"} for n in "abc"})
    pages_read: list[int] = []
    stop_after = 2

    report = compare(
        [page("a", "a"), page("b", "b"), page("c", None)],
        index,
        now_ms=1,
        on_page=lambda r: pages_read.append(r.pages),
        stop=lambda: len(pages_read) >= stop_after,
    )

    assert (report.pages, report.checked, report.complete) == (2, 2, False)
    assert report.resume_key == {"record_id": {"S": "b"}}  # page c is next
    finished = compare([page("c", None)], index, now_ms=1, report=report)
    assert (finished.pages, finished.checked, finished.complete, finished.resume_key) == (3, 3, True, None)


def test_metrics_name_the_total_and_every_kind_even_when_zero() -> None:
    records = [("ns", "a", RecordState(3, "upsert", 0, ())), ("ns", "b", RecordState(3, "delete", 0, ()))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "2"}, ("ns", "b"): {"_relay_version": "1"}})

    values = metric_values(compare([GuardPage(records, None)], index, now_ms=1, repair=True, guard=FakeGuard()))

    assert values == {
        "ReconcileChecked": 2,
        "ReconcileInFlight": 0,
        "ReconcileRepaired": 1,
        "ReconcileMismatches": 2,
        "ReconcileMismatchesMissing": 0,
        "ReconcileMismatchesBehind": 1,
        "ReconcileMismatchesResurrected": 1,
        "ReconcileMismatchesAhead": 0,
        "ReconcileMismatchesUnversioned": 0,
        "ReconcileDeadLettered": 0,
    }
    assert metric_values(Report())["ReconcileMismatches"] == 0


def test_a_repair_needs_the_guard() -> None:
    records = [("ns", "a", RecordState(5, "delete", 0, ()))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "4"}})

    with pytest.raises(ValueError, match="needs the version guard"):
        compare([GuardPage(records, None)], index, now_ms=1, repair=True)
    assert index.deleted == []


def test_a_repair_deletes_only_records_the_guard_still_holds_unchanged_and_releases_them() -> None:
    records = [("ns", "a", RecordState(5, "delete", 0, ("t",))), ("ns", "b", RecordState(5, "delete", 0, ("t",)))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "4"}, ("ns", "b"): {"_relay_version": "4"}})
    guard = FakeGuard(changed={"b"})  # b was claimed again between the scan and the repair

    report = compare([GuardPage(records, None)], index, now_ms=1, repair=True, guard=guard)

    assert index.deleted == [("ns", ("a",))]
    assert report.repaired == 1
    assert guard.released == [([GuardedWrite("ns", "a", 5, "delete")], {("ns", "a")})]


def test_a_repair_asks_the_index_again_under_the_hold_and_spares_a_version_written_since() -> None:
    records = [("ns", "a", RecordState(5, "delete", 0, ("t",)))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "4"}})

    class RewrittenWhileHeld(FakeGuard):
        def hold_unchanged(self, namespace: str, expected: Mapping[str, RecordState], lease: Lease) -> set[str]:
            index.records[("ns", "a")] = {"_relay_version": "6"}  # written from outside the relay meanwhile
            return super().hold_unchanged(namespace, expected, lease)

    guard = RewrittenWhileHeld()
    report = compare([GuardPage(records, None)], index, now_ms=1, repair=True, guard=guard)

    assert (index.deleted, report.repaired) == ([], 0)
    assert guard.released == [([GuardedWrite("ns", "a", 5, "delete")], {("ns", "a")})]  # nothing was sent


def test_the_redelivery_horizon_is_the_visibility_timeout_times_the_receive_count() -> None:
    assert redelivery_horizon_ms(420, 5) == 2_100_000
    assert redelivery_horizon_ms(190, 2) == 380_000


def test_a_record_is_judged_only_once_no_retry_of_its_write_can_come() -> None:
    lease_end = 1_000_000
    records = [("ns", "a", RecordState(3, "upsert", lease_end, ("t",)))]  # claimed, its write failed
    index = FakeIndex({})
    horizon = redelivery_horizon_ms(420, 5)

    def run(now_ms: int) -> Report:
        return compare([GuardPage(records, None)], index, now_ms=now_ms, redelivery_ms=horizon)

    retrying = run(lease_end + 300_000)  # 5 minutes after the lease: the message is still invisible
    assert (retrying.checked, retrying.in_flight, retrying.mismatches) == (0, 1, [])
    assert run(lease_end + horizon - 1).in_flight == 1
    settled = run(lease_end + horizon)
    assert (settled.checked, settled.counts()) == (1, {"missing": 1})


def test_records_whose_write_is_in_the_dlq_are_reported_apart_and_not_counted_as_mismatches() -> None:
    records = [
        ("ns", "gone", RecordState(3, "upsert", 0, ("t",))),  # its message was dead-lettered
        ("ns", "old", RecordState(3, "upsert", 0, ("t",))),  # v3 dead-lettered, the index has v2
        ("ns", "lost", RecordState(3, "upsert", 0, ("t",))),  # not in the DLQ: drift
        ("ns", "other", RecordState(4, "upsert", 0, ("t",))),  # the DLQ has another version of it
        ("ns", "far", RecordState(9, "upsert", 0, ("t",))),  # the index is ahead: never a DLQ question
    ]
    index = FakeIndex({("ns", "old"): {"_relay_version": "2"}, ("ns", "far"): {"_relay_version": "10"}})
    dlq = FakeDeadLetters(
        {
            ("ns", "gone", 3, "upsert"),
            ("ns", "old", 3, "upsert"),
            ("ns", "other", 3, "upsert"),
            ("ns", "far", 10, "upsert"),
        }
    )

    report = compare([GuardPage(records, None)], index, now_ms=1, dead_letters=dlq)

    assert report.dead_lettered == [
        Mismatch("ns", "gone", "dead_lettered", 3, "upsert", None),
        Mismatch("ns", "old", "dead_lettered", 3, "upsert", "2"),
    ]
    assert report.counts() == {"missing": 2, "ahead": 1}
    assert dlq.asked == [
        {
            ("ns", "gone", 3, "upsert"),
            ("ns", "old", 3, "upsert"),
            ("ns", "lost", 3, "upsert"),
            ("ns", "other", 4, "upsert"),
        }
    ]
    values = metric_values(report)
    assert (values["ReconcileMismatches"], values["ReconcileDeadLettered"]) == (3, 2)


def test_a_clean_pass_does_not_look_at_the_dlq() -> None:
    records = [("ns", "a", RecordState(1, "upsert", 0, ("t",)))]
    dlq = FakeDeadLetters(set())

    compare([GuardPage(records, None)], FakeIndex({("ns", "a"): {"_relay_version": "1"}}), now_ms=1, dead_letters=dlq)

    assert dlq.asked == []


def test_the_template_gives_the_reconciler_the_ingest_queues_retry_settings_and_dlq() -> None:
    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    reconciler = resources["ReconcileFunction"]["Properties"]["Environment"]["Variables"]
    variables = {**template["Globals"]["Function"]["Environment"]["Variables"], **reconciler}
    queue = resources["IngestQueue"]["Properties"]
    assert variables["SOURCE_QUEUE_VISIBILITY_TIMEOUT_SECONDS"] == queue["VisibilityTimeout"]
    assert variables["SOURCE_QUEUE_MAX_RECEIVE_COUNT"] == queue["RedrivePolicy"]["maxReceiveCount"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert variables["DEAD_LETTER_QUEUE_URL"] == {"Ref": "IngestDeadLetterQueue"}
    # a tenant's own ingest queue (templates/tenant.yaml) retries no later than the relay's
    tenant_queue = load_template(ROOT / "templates" / "tenant.yaml")["Resources"]["IngestQueue"]["Properties"]
    assert tenant_queue["VisibilityTimeout"] <= variables["SOURCE_QUEUE_VISIBILITY_TIMEOUT_SECONDS"]
