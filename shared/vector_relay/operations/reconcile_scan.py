"""The reconciler's side of the guard's table: its pages, the scheduled pass's cursor, the scheduled pass.

What each page's records are judged by is :func:`vector_relay.operations.reconcile.compare`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from vector_relay.ingest.guard_records import LOCK_RECORD_ID, MARKER_NAMESPACE, RecordState
from vector_relay.operations.reconcile import DeadLetters, GuardPage, Index, RepairGuard, Report, TableKey, compare

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Where a scheduled pass left off, kept in the guard's table beside the landed markers (which no
# record can collide with: record keys are ASCII). Kept a week: an older cursor starts a new pass.
CURSOR_RECORD_ID = "§reconcile-cursor"
CURSOR_KEEP_SECONDS = 7 * 86_400


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
    guard: RepairGuard | None = None,
    redelivery_ms: int = 0,
    dead_letters: DeadLetters | None = None,
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
        guard=guard,
        redelivery_ms=redelivery_ms,
        dead_letters=dead_letters,
        stop=out_of_time,
        report=report,
        on_page=lambda r: save_cursor(dynamodb, table, r, now_ms),
    )


def _cursor_key() -> TableKey:
    return {"namespace": {"S": MARKER_NAMESPACE}, "record_id": {"S": CURSOR_RECORD_ID}}
