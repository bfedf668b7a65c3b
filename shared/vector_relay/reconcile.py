"""The backstop: compare the version guard's table with what the index holds, and report (or repair).

The guard records, per (namespace, id), the highest version claimed and whether it was an upsert
or a delete; every upserted record carries its version in metadata (``_relay_version``,
:data:`vector_relay.contract.VERSION_METADATA_KEY`). For each record whose lease is over (a live
lease means a write may still be on its way), the index should hold exactly that version, or
nothing after a delete. Anything else is a mismatch:

* ``missing``: an upsert is recorded and the index has no such record;
* ``behind``: the index holds an older version than the one recorded (a late write overtook it);
* ``resurrected``: a delete is recorded and the index holds the record again;
* ``ahead``: the index holds a newer version than recorded (the guard's item expired, or writes
  bypassed the relay);
* ``unversioned``: the record has no version key (written before the relay recorded it).

Only ``resurrected`` can be repaired here, by deleting the record again (the tombstone says the
delete is the newest write, so deleting is what the relay itself would do). The others need the
record's data: republish it from its source (a newer version, or the same one after the lease).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vector_relay.contract import VERSION_METADATA_KEY
from vector_relay.version_guard import LOCK_RECORD_ID, MARKER_NAMESPACE, RecordState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MismatchKind = Literal["missing", "behind", "resurrected", "ahead", "unversioned"]
MISMATCH_KINDS: tuple[MismatchKind, ...] = ("missing", "behind", "resurrected", "ahead", "unversioned")
FETCH_PAGE = 100  # ids per fetch: Pinecone takes ids in the query string, so pages stay short
# Where a scheduled pass left off, kept in the guard's table beside the landed markers (which no
# record can collide with: record keys are ASCII). Kept a week: an older cursor starts a new pass.
CURSOR_RECORD_ID = "§reconcile-cursor"
CURSOR_KEEP_SECONDS = 7 * 86_400

type TableKey = dict[str, Any]  # a DynamoDB key in the low-level format, as Scan's LastEvaluatedKey


class Index(Protocol):
    def metadata(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    def delete(self, namespace: str, ids: Sequence[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class Mismatch:
    namespace: str
    record_id: str
    kind: MismatchKind
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


@dataclass(frozen=True, slots=True)
class GuardPage:
    """One page of the guard's table: its record items, and the scan keys before and after it."""

    records: list[tuple[str, str, RecordState]]
    next_key: TableKey | None  # None: the last page of the table


@dataclass(slots=True)
class Report:
    checked: int = 0  # records compared
    in_flight: int = 0  # records skipped: a lease is still live
    repaired: int = 0  # resurrected records deleted again
    mismatches: list[Mismatch] = field(default_factory=list)
    pages: int = 0  # pages of the guard's table read
    complete: bool = False  # the scan reached the table's end (False: stopped early, see resume_key)
    resume_key: TableKey | None = None  # where to go on from when not complete

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mismatch in self.mismatches:
            counts[mismatch.kind] = counts.get(mismatch.kind, 0) + 1
        return counts


def guard_pages(
    dynamodb: DynamoDBClient,
    table: str,
    *,
    namespaces: Sequence[str] | None = None,
    start_key: TableKey | None = None,
    page_size: int | None = None,
) -> Iterator[GuardPage]:
    """The record items of the guard's table (claim locks and markers left out), one scan page at a time."""
    key = start_key
    while True:
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        if key is not None:
            request["ExclusiveStartKey"] = key
        if page_size is not None:
            request["Limit"] = page_size
        response = dynamodb.scan(**request)
        records = []
        for item in response.get("Items", []):
            namespace, record_id = item["namespace"]["S"], item["record_id"]["S"]
            if namespace == MARKER_NAMESPACE or record_id == LOCK_RECORD_ID:
                continue
            if namespaces is not None and namespace not in namespaces:
                continue
            records.append((namespace, record_id, RecordState.from_item(item)))
        key = response.get("LastEvaluatedKey") or None
        yield GuardPage(records, key)
        if key is None:
            return


def compare(
    pages: Iterable[GuardPage],
    index: Index,
    *,
    now_ms: int,
    repair: bool = False,
    on_page: Callable[[Report], None] | None = None,
    stop: Callable[[], bool] | None = None,
    report: Report | None = None,
) -> Report:
    """Compare each settled record with the index; with ``repair``, delete resurrected records again.

    ``stop`` is asked before each page; when it says so the pass ends there, incomplete, and
    ``resume_key`` says where the next one goes on from. ``on_page`` sees the report after each page.
    """
    report = report if report is not None else Report()
    for page in pages:
        if stop is not None and stop():
            return report
        pending: dict[str, list[tuple[str, RecordState]]] = {}
        for namespace, record_id, state in page.records:
            if state.until_ms > now_ms:
                report.in_flight += 1
                continue
            batch = pending.setdefault(namespace, [])
            batch.append((record_id, state))
            if len(batch) >= FETCH_PAGE:
                _check(namespace, pending.pop(namespace), index, report, repair)
        for namespace, batch in pending.items():
            _check(namespace, batch, index, report, repair)
        report.pages += 1
        report.resume_key = page.next_key
        report.complete = page.next_key is None
        if on_page is not None:
            on_page(report)
    return report


def metric_values(report: Report) -> dict[str, int]:
    """The pass as metrics (namespace ``VectorRelay``): the total mismatches the alarm watches, and each kind."""
    counts = report.counts()
    values = {
        "ReconcileChecked": report.checked,
        "ReconcileInFlight": report.in_flight,
        "ReconcileRepaired": report.repaired,
        "ReconcileMismatches": len(report.mismatches),
    }
    for kind in MISMATCH_KINDS:
        values[f"ReconcileMismatches{kind.capitalize()}"] = counts.get(kind, 0)
    return values


def load_cursor(dynamodb: DynamoDBClient, table: str) -> TableKey | None:
    """Where the last scheduled pass stopped (None: start at the table's beginning)."""
    response = dynamodb.get_item(TableName=table, Key=_cursor_key(), ConsistentRead=True)
    text = response.get("Item", {}).get("resume_key", {}).get("S")
    return json.loads(text) if text else None


def save_cursor(dynamodb: DynamoDBClient, table: str, report: Report, now_ms: int) -> None:
    """Keep where this pass got to; a complete pass clears it, so the next one starts over."""
    if report.complete or report.resume_key is None:
        dynamodb.delete_item(TableName=table, Key=_cursor_key())
        return
    item = {
        **_cursor_key(),
        "resume_key": {"S": json.dumps(report.resume_key, sort_keys=True)},
        "expires_at": {"N": str(now_ms // 1000 + CURSOR_KEEP_SECONDS)},
    }
    dynamodb.put_item(TableName=table, Item=item)


def scheduled_pass(
    dynamodb: DynamoDBClient,
    table: str,
    index: Index,
    *,
    now_ms: int,
    repair: bool,
    out_of_time: Callable[[], bool],
    page_size: int | None = None,
) -> Report:
    """One run of the scheduled reconciler: go on from the saved cursor until the table ends or time runs out.

    The cursor is saved after every page, so a run cut short (timeout, crash) loses one page at
    most and a table of any size is covered over successive runs.
    """
    start = load_cursor(dynamodb, table)
    report = Report(resume_key=start)
    pages = guard_pages(dynamodb, table, start_key=start, page_size=page_size)
    return compare(
        pages,
        index,
        now_ms=now_ms,
        repair=repair,
        stop=out_of_time,
        report=report,
        on_page=lambda r: save_cursor(dynamodb, table, r, now_ms),
    )


def _cursor_key() -> TableKey:
    return {"namespace": {"S": MARKER_NAMESPACE}, "record_id": {"S": CURSOR_RECORD_ID}}


def _check(namespace: str, page: list[tuple[str, RecordState]], index: Index, report: Report, repair: bool) -> None:
    found = index.metadata(namespace, [record_id for record_id, _ in page])
    resurrected: list[str] = []
    for record_id, state in page:
        report.checked += 1
        mismatch = _verdict(namespace, record_id, state, found.get(record_id))
        if mismatch is None:
            continue
        report.mismatches.append(mismatch)
        if mismatch.kind == "resurrected":
            resurrected.append(record_id)
    if repair and resurrected:
        index.delete(namespace, resurrected)
        report.repaired += len(resurrected)


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
