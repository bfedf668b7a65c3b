"""The backstop: compare the version guard's table with what the index holds, and report (or repair).

The guard records, per (namespace, id), the highest version claimed and whether it was an upsert
or a delete; every upserted record carries its version in metadata (``_relay_version``,
:data:`vector_relay.contract.fields.VERSION_METADATA_KEY`). A record is **settled** once its lease is
over and its message can no longer come back from SQS (:func:`redelivery_horizon_ms`): until then
a write may still be on its way, and the record is skipped as in flight. A settled record's index
entry should be exactly the recorded version, or nothing after a delete. Anything else is a
mismatch:

* ``missing``: an upsert is recorded and the index has no such record;
* ``behind``: the index holds an older version than the one recorded (a late write overtook it);
* ``resurrected``: a delete is recorded and the index holds the record again;
* ``ahead``: the index holds a newer version than recorded (the guard's item expired, or writes
  bypassed the relay);
* ``unversioned``: the record has no version key (written before the relay recorded it).

A ``missing``, ``behind`` or ``resurrected`` record whose recorded write is in the dead-letter
queue is not drift: the relay gave up on that write and said so. Such records are reported apart,
as ``dead_lettered`` (:class:`~vector_relay.operations.reconcile_dead_letters.DeadLetterQueue`), and
left out of the mismatch count the alarm watches.

Only ``resurrected`` can be repaired here, by deleting the record again (the tombstone says the
delete is the newest write, so deleting is what the relay itself would do). The repair is made
under the guard's own rules (:meth:`VersionGuard.hold_unchanged`): it takes the records' lease as
a worker's claim would, and only while their state is still the one the verdict was drawn from,
so it cannot delete a version written since. The others need the record's data: republish it
from its source (a newer version, or the same one after the lease).

This module judges and repairs; reading the guard's table, the scheduled pass's cursor and the
pass itself are :mod:`vector_relay.operations.reconcile_scan`, the look-up of dead-lettered writes
:mod:`vector_relay.operations.reconcile_dead_letters`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from vector_relay.contract.fields import VERSION_METADATA_KEY
from vector_relay.ingest.guard_records import GuardedWrite, Lease, RecordState
from vector_relay.metrics import (
    RECONCILE_CHECKED,
    RECONCILE_DEAD_LETTERED,
    RECONCILE_IN_FLIGHT,
    RECONCILE_MISMATCHES,
    RECONCILE_MISMATCHES_BY_KIND,
    RECONCILE_REPAIRED,
    Metric,
)

MismatchKind = Literal["missing", "behind", "resurrected", "ahead", "unversioned"]
MISMATCH_KINDS: tuple[MismatchKind, ...] = ("missing", "behind", "resurrected", "ahead", "unversioned")
DEAD_LETTERED: Final = "dead_lettered"  # the kind of a record whose recorded write is in the DLQ: not drift
# The kinds a relay write that never landed leaves behind (its message may be in the DLQ).
UNLANDED_KINDS = frozenset({"missing", "behind", "resurrected"})
FETCH_PAGE = 100  # ids per fetch: Pinecone takes ids in the query string, so pages stay short
# How long a repair holds its records: RecordReader's delete makes up to 4 attempts of 30 s with
# back-offs of up to 60 s between them (the SDK's defaults), twice when the key is refused and read
# again, so 600 s at worst; a minute more for a late attempt Pinecone applies after giving up on it.
# A delete that landed releases the records at once.
REPAIR_LEASE_SECONDS = 660.0

type TableKey = dict[str, Any]  # a DynamoDB key in the low-level format, as Scan's LastEvaluatedKey
type WriteKey = tuple[str, str, int, str]  # namespace, record id, version, operation


class Index(Protocol):
    def metadata(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None: ...


class RepairGuard(Protocol):
    """What a repair needs of :class:`vector_relay.ingest.version_guard.VersionGuard`."""

    def lease(self, seconds: float) -> Lease: ...

    def hold_unchanged(self, namespace: str, expected: Mapping[str, RecordState], lease: Lease) -> set[str]: ...

    def release(self, lease: Lease, claimed: Iterable[GuardedWrite], landed: Collection[tuple[str, str]]) -> None: ...


class DeadLetters(Protocol):
    def dead_lettered(self, writes: Collection[WriteKey]) -> set[WriteKey]:
        """Those of ``writes`` (namespace, id, version, operation) whose message is in the dead-letter queue."""
        ...


@dataclass(frozen=True, slots=True)
class Mismatch:
    namespace: str
    record_id: str
    kind: MismatchKind | Literal["dead_lettered"]  # dead_lettered: only in Report.dead_lettered
    recorded_version: int
    recorded_operation: str
    found_version: str | None  # the index's _relay_version; None when absent or unversioned

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "id": self.record_id,
            "kind": self.kind,
            "recorded_version": self.recorded_version,
            "recorded_operation": self.recorded_operation,
            "found_version": self.found_version,
        }

    @property
    def write(self) -> WriteKey:
        """The recorded write this record should show."""
        return (self.namespace, self.record_id, self.recorded_version, self.recorded_operation)


@dataclass(frozen=True, slots=True)
class GuardPage:
    """One page of the guard's table: its record items, and the scan keys before and after it."""

    records: list[tuple[str, str, RecordState]]
    next_key: TableKey | None  # None: the last page of the table


@dataclass(slots=True)
class Report:
    checked: int = 0  # records compared
    in_flight: int = 0  # records skipped: a lease is live, or the write's message may still come back
    repaired: int = 0  # resurrected records deleted again
    mismatches: list[Mismatch] = field(default_factory=list)  # drift: what the alarm counts
    dead_lettered: list[Mismatch] = field(default_factory=list)  # the recorded write is in the DLQ
    pages: int = 0  # pages of the guard's table read
    complete: bool = False  # the scan reached the table's end (False: stopped early, see resume_key)
    resume_key: TableKey | None = None  # where to go on from when not complete

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mismatch in self.mismatches:
            counts[mismatch.kind] = counts.get(mismatch.kind, 0) + 1
        return counts


def redelivery_horizon_ms(visibility_timeout_seconds: float, max_receive_count: int) -> int:
    """How long after a write's lease ends its message may still be delivered again, or reach the DLQ.

    The lease ends after the delivery that claimed the record was received. Each later delivery
    comes at most one visibility timeout after the one before (sooner when the worker shortens it),
    and there are at most ``maxReceiveCount`` - 1 of them; the last one lands or dead-letters its
    write within one function timeout, which is under a visibility timeout (the template keeps it
    at least 6 times the function's). So ``visibility timeout x maxReceiveCount`` after the lease
    end covers every retry, including deliveries that failed before they reached the guard.
    """
    return round(visibility_timeout_seconds * max_receive_count * 1000)


def compare(
    pages: Iterable[GuardPage],
    index: Index,
    *,
    now_ms: int,
    repair: bool = False,
    guard: RepairGuard | None = None,
    redelivery_ms: int = 0,
    dead_letters: DeadLetters | None = None,
    on_page: Callable[[Report], None] | None = None,
    stop: Callable[[], bool] | None = None,
    report: Report | None = None,
) -> Report:
    """Compare each settled record with the index; with ``repair``, delete resurrected records again.

    A record is settled ``redelivery_ms`` after its lease ended (:func:`redelivery_horizon_ms`; 0:
    as soon as it ended). ``repair`` needs ``guard``: each repair holds its records under the
    guard's rules (see the module's docstring). With ``dead_letters``, the pass's ``missing``,
    ``behind`` and ``resurrected`` records whose recorded write is in the DLQ are moved from
    ``mismatches`` to ``dead_lettered`` when the pass ends. ``stop`` is asked before each page;
    when it says so the pass ends there, incomplete, and ``resume_key`` says where the next one
    goes on from. ``on_page`` sees the report after each page.
    """
    if repair and guard is None:
        raise ValueError("a repair needs the version guard, to hold its records the way a worker's claim does")
    report = report if report is not None else Report()
    repair_guard = guard if repair else None
    for page in pages:
        if stop is not None and stop():
            break
        pending: dict[str, list[tuple[str, RecordState]]] = {}
        for namespace, record_id, state in page.records:
            if state.until_ms + redelivery_ms > now_ms:
                report.in_flight += 1
                continue
            batch = pending.setdefault(namespace, [])
            batch.append((record_id, state))
            if len(batch) >= FETCH_PAGE:
                _check(namespace, pending.pop(namespace), index, report, repair_guard)
        for namespace, batch in pending.items():
            _check(namespace, batch, index, report, repair_guard)
        report.pages += 1
        report.resume_key = page.next_key
        report.complete = page.next_key is None
        if on_page is not None:
            on_page(report)
    if dead_letters is not None:
        _set_aside_dead_letters(report, dead_letters)
    return report


def metric_counts(report: Report) -> dict[Metric, int]:
    """The pass as metrics (namespace ``VectorRelay``): the total mismatches the alarm watches, and each kind.

    Dead-lettered records are counted apart (``ReconcileDeadLettered``): the DLQ's own alarm covers them.
    """
    counts = report.counts()
    values = {
        RECONCILE_CHECKED: report.checked,
        RECONCILE_IN_FLIGHT: report.in_flight,
        RECONCILE_REPAIRED: report.repaired,
        RECONCILE_MISMATCHES: len(report.mismatches),
    }
    for kind in MISMATCH_KINDS:
        values[RECONCILE_MISMATCHES_BY_KIND[kind]] = counts.get(kind, 0)
    values[RECONCILE_DEAD_LETTERED] = len(report.dead_lettered)
    return values


def metric_values(report: Report) -> dict[str, int]:
    """:func:`metric_counts` by metric name (the run's summary, ``vector-relay reconcile --json``)."""
    return {metric.name: value for metric, value in metric_counts(report).items()}


def _check(
    namespace: str, page: list[tuple[str, RecordState]], index: Index, report: Report, guard: RepairGuard | None
) -> None:
    found = index.metadata(namespace, [record_id for record_id, _ in page])
    resurrected: dict[str, RecordState] = {}
    for record_id, state in page:
        report.checked += 1
        mismatch = _verdict(namespace, record_id, state, found.get(record_id))
        if mismatch is None:
            continue
        report.mismatches.append(mismatch)
        if mismatch.kind == "resurrected":
            resurrected[record_id] = state
    if guard is not None and resurrected:
        report.repaired += _repair(namespace, resurrected, index, guard)


def _repair(namespace: str, resurrected: dict[str, RecordState], index: Index, guard: RepairGuard) -> int:
    """Delete resurrected records again under the guard's lease; how many were deleted.

    Only records whose guard state is still the one the verdict was drawn from, and not under a
    live lease, are held; under the hold no worker can write them, and the index is asked again,
    so a version written since the verdict (by the relay or from outside) is never deleted.
    """
    lease = guard.lease(REPAIR_LEASE_SECONDS)
    held = sorted(guard.hold_unchanged(namespace, resurrected, lease))
    if not held:
        return 0
    claimed = [GuardedWrite(namespace, record_id, resurrected[record_id].version, "delete") for record_id in held]
    landed: set[tuple[str, str]] = set()  # a failed call keeps the hold until the lease ends
    try:
        found = index.metadata(namespace, held)
        doomed = [
            record_id
            for record_id in held
            if (again := _verdict(namespace, record_id, resurrected[record_id], found.get(record_id))) is not None
            and again.kind == "resurrected"
        ]
        if doomed:
            index.delete(namespace, doomed)
        landed = {(namespace, record_id) for record_id in held}
    finally:
        guard.release(lease, claimed, landed)
    return len(doomed)


def _set_aside_dead_letters(report: Report, dead_letters: DeadLetters) -> None:
    candidates = [m for m in report.mismatches if m.kind in UNLANDED_KINDS]
    if not candidates:
        return
    in_dlq = dead_letters.dead_lettered({m.write for m in candidates})
    if not in_dlq:
        return
    report.dead_lettered += [dataclasses.replace(m, kind=DEAD_LETTERED) for m in candidates if m.write in in_dlq]
    report.mismatches = [m for m in report.mismatches if m.kind not in UNLANDED_KINDS or m.write not in in_dlq]


def _verdict(namespace: str, record_id: str, state: RecordState, metadata: Mapping[str, Any] | None) -> Mismatch | None:
    def mismatch(kind: MismatchKind, found: str | None) -> Mismatch:
        return Mismatch(namespace, record_id, kind, state.version, state.operation, found)

    if metadata is None:
        return None if state.operation == "delete" else mismatch("missing", None)
    found = _version_text(metadata)
    if found is None or not found.isdigit():
        return mismatch("unversioned", None)
    if int(found) > state.version:
        return mismatch("ahead", found)
    if state.operation == "delete":  # an older version came back after the delete
        return mismatch("resurrected", found)
    return None if int(found) == state.version else mismatch("behind", found)


def _version_text(metadata: Mapping[str, Any]) -> str | None:
    value = metadata.get(VERSION_METADATA_KEY)
    return value if isinstance(value, str) else None
