"""Publishing to the relay from an upstream Python service: typed messages, packed batches, retried entries.

Needs ``pydantic`` and ``boto3`` (no Lambda libraries)::

    import boto3
    from vector_relay.producer import Publisher, VersionClock, upsert, delete, query

    versions = VersionClock()
    publisher = Publisher(queue_url, sqs=boto3.client("sqs"))
    result = publisher.publish([
        upsert("acme", [{"id": "doc-1#0", "version": versions.next(), "values": [...], "metadata": {"year": 2024}}]),
        delete("acme", [("doc-2#0", versions.next())]),
    ])
    assert not result.failed, result.failed

Messages are checked against the contract (docs/contract.md) when built, so a malformed one fails
in the producer, not in the DLQ; what only the relay knows (its tenants, the index's dimension,
a tenant's schema) is still checked there. :class:`Publisher` packs bodies into
``SendMessageBatch`` calls (at most 10 entries and 1 MiB together), splits an upsert too large for
one SQS message into several, retries failed entries with back-off and returns what finally failed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vector_relay.contract import (
    DeleteByFilterMessage,
    DeleteMessage,
    DeleteRecord,
    PurgeTenantMessage,
    QueryMessage,
    UpsertMessage,
    UpsertRecord,
)

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_MAX_BYTES = 1_048_576  # one message, and one SendMessageBatch's bodies together (SQS, since 2025)
BATCH_ENTRIES = 10
type Message = UpsertMessage | DeleteMessage | DeleteByFilterMessage | PurgeTenantMessage | QueryMessage


# ------------------------------------------------------------------ builders (each returns a validated model)


def upsert(tenant: str, records: Iterable[UpsertRecord | Mapping[str, Any]]) -> UpsertMessage:
    """Write records: each ``{"id", "version", "values"?, "sparse_values"?, "metadata"?}`` or an UpsertRecord."""
    return UpsertMessage.model_validate(
        {"schema_version": 1, "op": "upsert", "tenant": tenant, "records": [_plain(r) for r in records]}
    )


def delete(tenant: str, records: Iterable[tuple[str, int] | DeleteRecord]) -> DeleteMessage:
    """Delete records by id: ``(id, version)`` pairs; the version orders the delete against upserts of the id."""
    plain = [r.model_dump() if isinstance(r, DeleteRecord) else {"id": r[0], "version": r[1]} for r in records]
    return DeleteMessage.model_validate({"schema_version": 1, "op": "delete", "tenant": tenant, "records": plain})


def delete_by_filter(tenant: str, filter_: Mapping[str, Any], *, confirm: str | None = None) -> DeleteByFilterMessage:
    """Every record of the tenant matching ``filter_``. A filter that matches every record needs ``confirm=tenant``."""
    body: dict[str, Any] = {"schema_version": 1, "op": "delete_by_filter", "tenant": tenant, "filter": dict(filter_)}
    if confirm is not None:
        body["confirm"] = confirm
    return DeleteByFilterMessage.model_validate(body)


def purge_tenant(tenant: str) -> PurgeTenantMessage:
    """Every record of the tenant; ``confirm`` repeats the tenant, as the contract requires."""
    return PurgeTenantMessage.model_validate(
        {"schema_version": 1, "op": "purge_tenant", "tenant": tenant, "confirm": tenant}
    )


def query(
    tenant: str,
    *,
    reply_to: str,
    vector: Sequence[float] | None = None,
    id: str | None = None,
    top_k: int = 10,
    filter: Mapping[str, Any] | None = None,
    include_metadata: bool = False,
    include_values: bool = False,
    correlation_id: str | None = None,
) -> QueryMessage:
    """A query answered on ``reply_to``; ``correlation_id`` defaults to a new UUID, to match the reply."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "op": "query",
        "tenant": tenant,
        "reply_to": reply_to,
        "top_k": top_k,
        "include_metadata": include_metadata,
        "include_values": include_values,
        "correlation_id": correlation_id or str(uuid.uuid4()),
    }
    if vector is not None:
        body["vector"] = [float(x) for x in vector]
    if id is not None:
        body["id"] = id
    if filter is not None:
        body["filter"] = dict(filter)
    return QueryMessage.model_validate(body)


def _plain(record: UpsertRecord | Mapping[str, Any]) -> dict[str, Any]:
    return record.model_dump(exclude_none=True) if isinstance(record, UpsertRecord) else dict(record)


def body_of(message: Message) -> str:
    return message.model_dump_json(exclude_none=True)


class VersionClock:
    """Versions from the clock, in microseconds, never repeating or going back within this object.

    The caveat: across processes or hosts, clocks disagree, so two producers of the same id can
    order their writes wrongly by up to the skew between them. When one system owns an id's
    changes, prefer its own version (a row version, a sequence, a commit timestamp).
    """

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._now_ns() // 1000)
            return self._last


# ------------------------------------------------------------------ publishing


@dataclass(frozen=True, slots=True)
class FailedEntry:
    body: str
    code: str  # SQS's error code, "too_large", or the exception's name
    reason: str


@dataclass(slots=True)
class PublishResult:
    sent: int = 0  # messages SQS accepted
    requests: int = 0  # SendMessageBatch calls made
    retried: int = 0  # entries sent again after SQS refused them (not for good)
    split: int = 0  # upserts split because one message could not hold them
    failed: list[FailedEntry] = field(default_factory=list)


class Publisher:
    """Sends messages to one queue in as few SendMessageBatch calls as SQS allows."""

    def __init__(
        self,
        queue_url: str,
        *,
        sqs: SQSClient,
        max_attempts: int = 5,
        base_delay: float = 0.2,
        max_bytes: int = SQS_MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_bytes = max_bytes
        self._sleep = sleep

    def publish(self, messages: Iterable[Message]) -> PublishResult:
        result = PublishResult()
        bodies: list[str] = []
        for message in messages:
            bodies.extend(self._bodies(message, result))
        for batch in self._batches(bodies):
            self._send(batch, result)
        return result

    def publish_bodies(self, bodies: Iterable[str]) -> PublishResult:
        """Bodies as they are (already serialised, or redriven from a DLQ): batched and retried, never split."""
        result = PublishResult()
        sendable: list[str] = []
        for body in bodies:
            size = len(body.encode())
            if size > self._max_bytes:
                result.failed.append(FailedEntry(body, "too_large", f"{size:,} bytes; SQS takes {self._max_bytes:,}"))
            else:
                sendable.append(body)
        for batch in self._batches(sendable):
            self._send(batch, result)
        return result

    def _bodies(self, message: Message, result: PublishResult) -> list[str]:
        """The message as one body, or an upsert split into as many as it takes to fit."""
        body = body_of(message)
        if len(body.encode()) <= self._max_bytes:
            return [body]
        if not isinstance(message, UpsertMessage) or len(message.records) == 1:
            result.failed.append(
                FailedEntry(body, "too_large", f"{len(body.encode()):,} bytes; SQS takes {self._max_bytes:,}")
            )
            return []
        result.split += 1
        half = len(message.records) // 2
        parts = (message.records[:half], message.records[half:])
        return [
            body for part in parts for body in self._bodies(message.model_copy(update={"records": list(part)}), result)
        ]

    def _batches(self, bodies: list[str]) -> Iterable[list[str]]:
        batch: list[str] = []
        size = 0
        for body in bodies:
            length = len(body.encode())
            if batch and (len(batch) == BATCH_ENTRIES or size + length > self._max_bytes):
                yield batch
                batch, size = [], 0
            batch.append(body)
            size += length
        if batch:
            yield batch

    def _send(self, batch: list[str], result: PublishResult) -> None:
        pending = dict(enumerate(batch))
        for attempt in range(1, self._max_attempts + 1):
            entries: Any = [{"Id": str(i), "MessageBody": body} for i, body in pending.items()]
            result.requests += 1
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as error:  # throttled, network: the whole batch again
                failures = {i: (type(error).__name__, str(error), False) for i in pending}
            else:
                result.sent += len(response.get("Successful", []))
                failures = {
                    int(f["Id"]): (f.get("Code", "Failed"), f.get("Message", ""), bool(f.get("SenderFault")))
                    for f in response.get("Failed", [])
                }
            for i, (code, reason, sender_fault) in list(failures.items()):
                if sender_fault or attempt == self._max_attempts:  # the message itself is wrong, or out of tries
                    result.failed.append(FailedEntry(pending[i], code, reason))
                    failures.pop(i)
            pending = {i: pending[i] for i in failures}
            if not pending:
                return
            result.retried += len(pending)
            self._sleep(self._base_delay * 2 ** (attempt - 1))
