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

Replies to queries: :func:`read_reply` reads one reply body as the contract does and follows a
large reply's pointer into S3 (``result_location``), so the reply it returns always carries its
matches; :func:`wait_for_reply` waits on a reply queue for one correlation id, leaving every other
reply there for whoever waits for it.

Kept as one module at ~365 lines: it is the client SDK's one import (``from vector_relay.producer
import ...``, docs/producer.md), and a split would move names that upstream services import.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from vector_relay.contract.messages import (
    DeleteByFilterMessage,
    DeleteMessage,
    DeleteRecord,
    PurgeTenantMessage,
    QueryMessage,
    UpsertMessage,
    UpsertRecord,
)
from vector_relay.contract.replies import QueryReply, QueryReplyError, QueryReplyOk
from vector_relay.sqs.limits import SQS_MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES, SQS_MAX_RECEIVE_MESSAGES, send_batches

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

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


def _size(body: str) -> int:
    """What SQS counts of a body: its UTF-8 bytes."""
    return len(body.encode())


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
        max_bytes: int = SQS_MAX_MESSAGE_BYTES,  # one message, and one batch call's together
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
        for batch in send_batches(bodies, _size, max_bytes=self._max_bytes):
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
        for batch in send_batches(sendable, _size, max_bytes=self._max_bytes):
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


# ------------------------------------------------------------------ replies to queries

_REPLY: TypeAdapter[QueryReplyOk | QueryReplyError] = TypeAdapter(QueryReply)
REPLY_HOLD_SECONDS = 30  # how long a reply read by wait_for_reply stays hidden if the waiter dies
REPLY_POLL_SECONDS = 2  # one long poll; others' replies are made visible again at least this often


def read_reply(body: str | bytes, *, s3: S3Client | None = None) -> QueryReplyOk | QueryReplyError:
    """One reply body, checked against the contract; a large reply's pointer (``result_location``) is followed.

    The relay stores a reply that would not fit in one SQS message in S3 and sends a pointer
    instead (docs/contract.md, "Replies"); with ``s3`` given, the stored reply is read, so an ok
    reply returned here always has its ``matches``. Raises pydantic's ``ValidationError`` for a
    body that is no reply, ``ValueError`` for a pointer without ``s3``, and what S3 raises.
    """
    reply = _REPLY.validate_json(body)
    if not isinstance(reply, QueryReplyOk) or reply.result_location is None:
        return reply
    location = reply.result_location
    if s3 is None:
        raise ValueError(
            f"the reply is stored in S3 (s3://{location.bucket}/{location.key}): pass an S3 client (s3=) to read it"
        )
    stored = _REPLY.validate_json(s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())
    if not isinstance(stored, QueryReplyOk) or stored.matches is None:
        raise ValueError(f"s3://{location.bucket}/{location.key} holds no matches")
    return stored


def correlation_id_of(body: str) -> str | None:
    """The ``correlation_id`` a reply body names (None when it names none or is not a JSON object)."""
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    value = raw.get("correlation_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def wait_for_reply(
    sqs: SQSClient,
    reply_queue_url: str,
    correlation_id: str,
    *,
    timeout: float = 30.0,
    s3: S3Client | None = None,
    poll_seconds: int = REPLY_POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> QueryReplyOk | QueryReplyError | None:
    """The reply to the query ``correlation_id`` on ``reply_queue_url``, or None after ``timeout`` seconds.

    The reply is deleted once read (through S3 when it was stored there: :func:`read_reply`).
    Replies to other queries are not consumed: each stays hidden only while this scan looks past
    it (at most about ``poll_seconds`` after the queue has nothing more to show, or
    :data:`REPLY_HOLD_SECONDS` if the waiter dies) and is then made visible again
    (``ChangeMessageVisibility`` 0). Each look still counts as a receive of that reply: a reply
    queue with a redrive policy should allow for it in its ``maxReceiveCount``. For one answer at
    a time (scripts, ``vector-relay query``); a service with many queries in flight consumes its
    reply queue and matches replies by ``correlation_id``.
    """
    deadline = clock() + timeout
    held: dict[str, str] = {}  # others' replies this scan holds: message id -> receipt handle
    try:
        while (left := deadline - clock()) > 0:
            messages = sqs.receive_message(
                QueueUrl=reply_queue_url,
                MaxNumberOfMessages=SQS_MAX_RECEIVE_MESSAGES,
                WaitTimeSeconds=max(0, min(poll_seconds, int(left))),
                VisibilityTimeout=REPLY_HOLD_SECONDS,
            ).get("Messages", [])
            if not messages:  # nothing more to look past: let the others' replies go
                _release(sqs, reply_queue_url, held)
                continue
            ours = [m for m in messages if correlation_id_of(m["Body"]) == correlation_id]
            held.update({m["MessageId"]: m["ReceiptHandle"] for m in messages if m not in ours})
            if ours:
                try:
                    reply = read_reply(ours[0]["Body"], s3=s3)
                except Exception:  # not readable here: it stays for another try, or another reader
                    held.update({m["MessageId"]: m["ReceiptHandle"] for m in ours})
                    raise
                for message in ours:  # with a second copy, if the query was answered twice
                    sqs.delete_message(QueueUrl=reply_queue_url, ReceiptHandle=message["ReceiptHandle"])
                return reply
        return None
    finally:
        _release(sqs, reply_queue_url, held)


def _release(sqs: SQSClient, queue_url: str, held: dict[str, str]) -> None:
    """Make held messages visible again now; each entry is cleared whether SQS took it or not (it times out)."""
    handles = list(held.values())
    held.clear()
    for chunk in itertools.batched(handles, SQS_MAX_BATCH_ENTRIES, strict=False):
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0} for i, handle in enumerate(chunk)
        ]
        with contextlib.suppress(Exception):  # best effort: REPLY_HOLD_SECONDS brings them back anyway
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
