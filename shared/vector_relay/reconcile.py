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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vector_relay.contract import VERSION_METADATA_KEY
from vector_relay.version_guard import LOCK_RECORD_ID, MARKER_NAMESPACE, RecordState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MismatchKind = Literal["missing", "behind", "resurrected", "ahead", "unversioned"]
FETCH_PAGE = 100  # ids per fetch: Pinecone takes ids in the query string, so pages stay short


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


@dataclass(slots=True)
class Report:
    checked: int = 0  # records compared
    in_flight: int = 0  # records skipped: a lease is still live
    repaired: int = 0  # resurrected records deleted again
    mismatches: list[Mismatch] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for mismatch in self.mismatches:
            counts[mismatch.kind] = counts.get(mismatch.kind, 0) + 1
        return counts


def guard_records(
    dynamodb: DynamoDBClient, table: str, namespaces: Sequence[str] | None = None
) -> Iterator[tuple[str, str, RecordState]]:
    """Every record item of the guard's table (claim locks and landed markers left out), page by page."""
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=table, ConsistentRead=True):
        for item in page.get("Items", []):
            namespace, record_id = item["namespace"]["S"], item["record_id"]["S"]
            if namespace == MARKER_NAMESPACE or record_id == LOCK_RECORD_ID:
                continue
            if namespaces is not None and namespace not in namespaces:
                continue
            yield namespace, record_id, RecordState.from_item(item)


def compare(
    records: Iterator[tuple[str, str, RecordState]],
    index: Index,
    *,
    now_ms: int,
    repair: bool = False,
    on_page: Callable[[int], None] | None = None,
) -> Report:
    """Compare each settled record with the index; with ``repair``, delete resurrected records again."""
    report = Report()
    pending: dict[str, list[tuple[str, RecordState]]] = {}
    for namespace, record_id, state in records:
        if state.until_ms > now_ms:
            report.in_flight += 1
            continue
        page = pending.setdefault(namespace, [])
        page.append((record_id, state))
        if len(page) >= FETCH_PAGE:
            _check(namespace, pending.pop(namespace), index, report, repair)
            if on_page is not None:
                on_page(report.checked)
    for namespace, page in pending.items():
        _check(namespace, page, index, report, repair)
        if on_page is not None:
            on_page(report.checked)
    return report


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
