"""The reconciler's paging and verdicts, against an in-memory index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vector_relay.reconcile import FETCH_PAGE, GuardPage, Report, compare, metric_values
from vector_relay.version_guard import RecordState


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

    report = compare([GuardPage(records, None)], index, now_ms=1, repair=True)

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

    values = metric_values(compare([GuardPage(records, None)], index, now_ms=1, repair=True))

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
    }
    assert metric_values(Report())["ReconcileMismatches"] == 0
