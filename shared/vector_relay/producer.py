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

Write receipts (docs/producer.md, "Waiting for a receipt"): ``PublishResult.message_ids`` names
each message sent; :class:`ReceiptReader` (or :func:`wait_for_receipts`) waits on the tenant's
receipt queue for their receipts in the same way, and ``query(..., after=receipts)`` asks for an
answer that reflects them (:func:`min_lsn_after`).

Kept as one module at ~560 lines: it is the client SDK's one import (``from vector_relay.producer
import ...``, docs/producer.md), and the receipt reader shares the reply reader's way of leaving
others' messages on a queue (``_release``). The receipt model is the contract's
(:mod:`vector_relay.contract.receipts`), shared with the ingest worker.
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
from vector_relay.contract.receipts import Receipt
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
    after: Iterable[Receipt] | None = None,
    min_lsn: int | None = None,
) -> QueryMessage:
    """A query answered on ``reply_to``; ``correlation_id`` defaults to a new UUID, to match the reply.

    ``after``: the receipts of writes the answer must reflect (read-your-writes). The query carries
    ``min_lsn``, the highest LSN of the tenant's ``applied`` receipts (:func:`min_lsn_after`, which
    raises ``ValueError`` for a receipt that cannot be waited for), and the reply says whether the
    index had reached it (``fresh``). Receipts with nothing applied ask for nothing. ``min_lsn`` may
    also be given as a number; with both, the higher is asked for.
    """
    after = list(after) if after is not None else None
    wanted = [lsn for lsn in (min_lsn, min_lsn_after(after, tenant) if after is not None else None) if lsn is not None]
    # when the newest of those writes was first sent: the worker measures how long they took to be visible
    sent_at = max((r.first_sent_at for r in after or () if r.fate == "applied"), default=None)
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
    if wanted:
        body["min_lsn"] = max(wanted)
        if sent_at is not None:
            body["writes_sent_at"] = sent_at
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


@dataclass(frozen=True, slots=True)
class SentMessage:
    index: int  # the message's position in what publish() (or publish_bodies()) was given
    message_id: str  # the id SQS gave it: its receipt names it (wait_for_receipts)


@dataclass(slots=True)
class PublishResult:
    sent: int = 0  # messages SQS accepted
    requests: int = 0  # SendMessageBatch calls made
    retried: int = 0  # entries sent again after SQS refused them (not for good)
    split: int = 0  # upserts split because one message could not hold them
    failed: list[FailedEntry] = field(default_factory=list)
    # Every message SQS accepted, in the order given (the parts of a split upsert one after another).
    published: list[SentMessage] = field(default_factory=list)

    @property
    def message_ids(self) -> list[str]:
        """The SQS message id of every message sent, in the order given: what to wait for receipts of."""
        return [sent.message_id for sent in self.published]

    def message_ids_of(self, index: int) -> list[str]:
        """The ids of the message given at ``index``: one, several for a split upsert, none if it failed."""
        return [sent.message_id for sent in self.published if sent.index == index]


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
        bodies: list[tuple[int, str]] = []
        for index, message in enumerate(messages):
            bodies.extend((index, body) for body in self._bodies(message, result))
        self._send_all(bodies, result)
        return result

    def publish_bodies(self, bodies: Iterable[str]) -> PublishResult:
        """Bodies as they are (already serialised, or redriven from a DLQ): batched and retried, never split."""
        result = PublishResult()
        sendable: list[tuple[int, str]] = []
        for index, body in enumerate(bodies):
            size = len(body.encode())
            if size > self._max_bytes:
                result.failed.append(FailedEntry(body, "too_large", f"{size:,} bytes; SQS takes {self._max_bytes:,}"))
            else:
                sendable.append((index, body))
        self._send_all(sendable, result)
        return result

    def _send_all(self, bodies: list[tuple[int, str]], result: PublishResult) -> None:
        sent: list[tuple[int, SentMessage]] = []  # (position among the bodies, the message SQS took)
        numbered = list(enumerate(bodies))
        for batch in send_batches(numbered, lambda entry: _size(entry[1][1]), max_bytes=self._max_bytes):
            self._send(batch, result, sent)
        result.published.extend(message for _, message in sorted(sent, key=lambda entry: entry[0]))

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

    def _send(
        self, batch: list[tuple[int, tuple[int, str]]], result: PublishResult, sent: list[tuple[int, SentMessage]]
    ) -> None:
        """One batch call's entries, retried: ``(position, (message index, body))`` each."""
        pending = {position: body for position, (_, body) in batch}
        indices = {position: index for position, (index, _) in batch}
        for attempt in range(1, self._max_attempts + 1):
            entries: Any = [{"Id": str(i), "MessageBody": body} for i, body in pending.items()]
            result.requests += 1
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as error:  # throttled, network: the whole batch again
                failures = {i: (type(error).__name__, str(error), False) for i in pending}
            else:
                accepted = response.get("Successful", [])
                result.sent += len(accepted)
                sent.extend((int(a["Id"]), SentMessage(indices[int(a["Id"])], a["MessageId"])) for a in accepted)
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


# ------------------------------------------------------------------ write receipts

RECEIPT_HOLD_SECONDS = 30  # how long a receipt looked past stays hidden if the reader dies
REMEMBERED_RECEIPTS = 100_000  # receipt ids a ReceiptReader remembers, to return each receipt once


@dataclass(frozen=True, slots=True)
class ReceiptWait:
    """What a wait for receipts found: every receipt of the wanted messages, once, and which had none.

    ``receipts`` are in the order the message ids were asked, each message's by ``at``: a message
    dead-lettered and then redriven has its ``dead_lettered`` receipt and then its ``applied`` one
    (when both arrived within the wait). ``missing`` names, in the order asked, the message ids that
    had no receipt when the wait ended.
    """

    receipts: list[Receipt]
    missing: list[str]

    @property
    def complete(self) -> bool:
        """Every message asked about has at least one receipt."""
        return not self.missing

    def of(self, message_id: str) -> list[Receipt]:
        """The receipts of one message, earliest first."""
        return [receipt for receipt in self.receipts if receipt.message_id == message_id]

    def latest(self, message_id: str) -> Receipt | None:
        """The message's receipt decided last (``at``), which says its fate now; None if it had none."""
        return max(self.of(message_id), key=lambda receipt: receipt.at, default=None)


class ReceiptReader:
    """Reads a tenant's receipt queue for the receipts of given messages, each receipt returned once.

    :meth:`wait` takes the wanted receipts off the queue (deleted once read) and leaves every other
    message there: each receipt of another message (another producer's, or one this reader has not
    asked about yet) and each body that is no receipt stays hidden only while the scan looks past
    it (at most about ``poll_seconds`` after the queue has nothing more to show, or
    :data:`RECEIPT_HOLD_SECONDS` if the reader dies), then is made visible again at once
    (``ChangeMessageVisibility`` 0), so another reader can take it. Each look counts as a receive:
    a receipt queue with a redrive policy should allow for it in its ``maxReceiveCount``.

    SQS may deliver a receipt twice: copies share a ``receipt_id``; the reader returns the first and
    deletes the others, across waits too (it remembers the last :data:`REMEMBERED_RECEIPTS` ids). A
    receipt taken off the queue by a wait that then failed (SQS raised) is kept and returned by the
    next wait for its message. For a producer waiting on its own writes; a service with many writes
    in flight consumes its receipt queue and matches receipts by ``message_id``.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        poll_seconds: int = REPLY_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue_url = queue_url
        self._sqs = sqs
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._taken: dict[str, Receipt] = {}  # receipt id -> receipt deleted from the queue, not returned yet
        self._returned: dict[str, None] = {}  # receipt ids returned, oldest first

    def wait(self, message_ids: Iterable[str], *, timeout: float = 60.0) -> ReceiptWait:
        """The receipts of ``message_ids`` (as ``Publisher.publish`` returns them: ``result.message_ids``).

        Returns once every message has a receipt, with every receipt of them read by then, or after
        ``timeout`` seconds with what arrived and the ids still ``missing``. A message dead-lettered
        now may be redriven and applied later: wait again for its id to see the ``applied`` receipt.
        Raises what SQS raises; the receipts this wait took are then returned by the next one.
        """
        wanted = list(dict.fromkeys(message_ids))
        wanted_set = set(wanted)
        deadline = self._clock() + timeout
        held: dict[str, str] = {}  # messages this scan looks past: message id -> receipt handle
        try:
            while not wanted_set <= {receipt.message_id for receipt in self._taken.values()}:
                left = deadline - self._clock()
                if left <= 0:
                    break
                messages = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=SQS_MAX_RECEIVE_MESSAGES,
                    WaitTimeSeconds=max(0, min(self._poll_seconds, int(left))),
                    VisibilityTimeout=RECEIPT_HOLD_SECONDS,
                ).get("Messages", [])
                if not messages:  # nothing more to look past: let the others go
                    _release(self._sqs, self.queue_url, held)
                    continue
                ours: list[tuple[str, str, Receipt]] = []  # (SQS message id, receipt handle, receipt)
                for message in messages:
                    receipt = _receipt_in(message["Body"])
                    if receipt is not None and receipt.message_id in wanted_set:
                        ours.append((message["MessageId"], message["ReceiptHandle"], receipt))
                    else:
                        held[message["MessageId"]] = message["ReceiptHandle"]
                self._take(ours, held)
        finally:
            _release(self._sqs, self.queue_url, held)
        order = {message_id: position for position, message_id in enumerate(wanted)}
        receipts = sorted(
            (receipt for receipt in self._taken.values() if receipt.message_id in wanted_set),
            key=lambda receipt: (order[receipt.message_id], receipt.at),
        )
        for receipt in receipts:
            del self._taken[receipt.receipt_id]
            self._returned[receipt.receipt_id] = None
        while len(self._returned) > REMEMBERED_RECEIPTS:
            del self._returned[next(iter(self._returned))]
        covered = {receipt.message_id for receipt in receipts}
        return ReceiptWait(receipts, [message_id for message_id in wanted if message_id not in covered])

    def _take(self, ours: list[tuple[str, str, Receipt]], held: dict[str, str]) -> None:
        """Delete the wanted receipts read; keep each the reader has not taken or returned before (a copy)."""
        for chunk in itertools.batched(ours, SQS_MAX_BATCH_ENTRIES, strict=False):
            entries: Any = [{"Id": str(i), "ReceiptHandle": handle} for i, (_, handle, _) in enumerate(chunk)]
            try:  # an entry SQS did not delete comes back later as a copy, and is deleted then
                self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception:  # still on the queue: visible again at once, for the next wait
                held.update({message_id: handle for message_id, handle, _ in chunk})
                raise
            for _, _, receipt in chunk:
                if receipt.receipt_id not in self._returned:
                    self._taken.setdefault(receipt.receipt_id, receipt)


def wait_for_receipts(
    sqs: SQSClient,
    queue_url: str,
    message_ids: Iterable[str],
    *,
    timeout: float = 60.0,
    poll_seconds: int = REPLY_POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> ReceiptWait:
    """The receipts of ``message_ids`` on the receipt queue ``queue_url``: :meth:`ReceiptReader.wait` once."""
    return ReceiptReader(sqs, queue_url, poll_seconds=poll_seconds, clock=clock).wait(message_ids, timeout=timeout)


def _receipt_in(body: str) -> Receipt | None:
    """The receipt a body holds; None for a body that is none (it is left on the queue for whoever reads it)."""
    try:
        return Receipt.model_validate_json(body)
    except ValueError:  # pydantic's ValidationError
        return None


def min_lsn_after(receipts: Iterable[Receipt], tenant: str) -> int | None:
    """The LSN a query of ``tenant`` must see to reflect the writes of ``receipts``: the highest ``lsn`` of the
    ``applied`` ones (None when none is applied: ``stale`` and ``dead_lettered`` receipts wrote nothing).

    Raises ``ValueError`` for an ``applied`` receipt without an LSN (the relay writes over gRPC, or
    Pinecone sent none: its freshness cannot be checked) and for a receipt of another tenant (LSNs
    count the writes of one namespace; another tenant's say nothing about this one's).
    """
    lsns: list[int] = []
    for receipt in receipts:
        if receipt.tenant != tenant:
            raise ValueError(
                f"receipt {receipt.receipt_id} (message {receipt.message_id}) belongs to tenant {receipt.tenant!r}: "
                f"a query of tenant {tenant!r} cannot wait for it (an LSN counts the writes of one namespace)"
            )
        if receipt.fate != "applied":
            continue
        if receipt.lsn is None:
            raise ValueError(
                f"receipt {receipt.receipt_id} (message {receipt.message_id}) was applied without an LSN (the relay "
                "writes over gRPC, or Pinecone gave none): whether a query reflects it cannot be checked"
            )
        lsns.append(receipt.lsn)
    return max(lsns, default=None)


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
