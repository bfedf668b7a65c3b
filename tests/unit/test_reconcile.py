"""The reconciler's paging and verdicts, against an in-memory index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vector_relay.reconcile import FETCH_PAGE, compare
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

    report = compare(iter(records), index, now_ms=10**12, on_page=pages.append)

    assert sorted(index.fetches) == [1, 5, FETCH_PAGE]
    assert (report.checked, report.in_flight) == (FETCH_PAGE + 6, 1)
    assert report.counts() == {"missing": 1}  # ns2/x
    assert pages[-1] == FETCH_PAGE + 6


def test_a_newer_copy_after_a_recorded_delete_is_not_deleted() -> None:
    records = [("ns", "a", RecordState(5, "delete", 0, ())), ("ns", "b", RecordState(5, "delete", 0, ()))]
    index = FakeIndex({("ns", "a"): {"_relay_version": "4"}, ("ns", "b"): {"_relay_version": "6"}})

    report = compare(iter(records), index, now_ms=1, repair=True)

    assert report.counts() == {"resurrected": 1, "ahead": 1}
    assert index.deleted == [("ns", ("a",))]  # only what the tombstone outranks
    assert report.repaired == 1
