"""The version guard: no write with an older version ever lands after a newer one, across batches and workers.

Pinecone has no conditional write, so the guard lives in DynamoDB (the ``WriteVersionTable``,
keyed by namespace and record id). Before a worker writes records of a namespace, it **claims**
them, in groups of up to :data:`~vector_relay.ingest.claim_session.MAX_GROUP`:

0. it writes the claims **blind** (``TransactWriteItems``, 100 per request, no read, no lock),
   each on condition :data:`BLIND_CONDITION`: the record is new, or records no higher version
   under a lease that ended before the worker's clock now. A record nobody holds is claimed in
   this one round trip; the puts refused go on to steps 1-4;
1. it takes the namespace's **claim lock** (one conditional ``PutItem`` on a reserved item that
   expires after :data:`LOCK_SECONDS` unless renewed, so a dead worker cannot hold it for long);
2. reads the records' items (``BatchGetItem``, 100 per request, strongly consistent);
3. decides each record's verdict and writes the claims (``TransactWriteItems``, 100 per request),
   each conditional on its item being exactly as read (compare-and-set: a claim DynamoDB applies
   late or twice is refused, so no guard write lowers a recorded version or replaces a newer
   lease, whatever DynamoDB's timing), only while at least :data:`LOCK_WRITE_MARGIN_SECONDS` of
   the lock remain (renewing it on condition that it is still its own);
4. drops the lock (one conditional ``DeleteItem``) once no more work for the namespace is queued.

A record is **claimed** when no version is recorded, or the recorded version is lower than or
equal to the write's and no other invocation's lease on it is still live. A claim records the
write's version and operation (a delete leaves a tombstone) and a **lease**: the claiming
invocation's token and a time by which that invocation must have ended. A duplicate (the same
version and operation as recorded, under another invocation's live lease) **joins** the lease:
its token is added and the lease lasts until the later of the two ends. A write whose version is
lower than the recorded one is **stale**: acknowledged and dropped. A write that meets another
invocation's live lease, or a claim lock held by another worker for more than
:data:`LOCK_WAIT_SECONDS`, is **busy**: it is retried by SQS, when that hold ends
(:class:`~vector_relay.errors.BusyWriteError` says when; the ingest worker sets the message's visibility to it).

Once the batch has run, the worker **releases** what landed with one ``PutItem``: a marker item
named by its token, listing the claimed records that did not land (if any). A lease is live until
it expires or until every token on it has a marker saying its write of the record landed.

:class:`~vector_relay.ingest.claim_session.ClaimSession` runs the claims in the background while
the batch is still being validated; :mod:`vector_relay.ingest.guard_records` holds the record
states, leases, verdicts and the claim lock. docs/ordering.md says why the scheme is correct and
what it costs. Kept at ~470 lines: :class:`VersionGuard` is one protocol over one table (lock, read,
decide, write, renew, release) whose steps share its request counter, clock and claim lock, and
the ingest role's IAM test reads its DynamoDB calls from this file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vector_relay import tracing
from vector_relay.aws_clients import GUARD_PROFILE, fits
from vector_relay.errors import GuardUnavailableError
from vector_relay.ingest.claim_session import ClaimSession
from vector_relay.ingest.guard_records import (
    LOCK_RECORD_ID,
    LOCK_SECONDS,
    LOCK_WAIT_SECONDS,
    LOCK_WRITE_MARGIN_SECONDS,
    MARKER_NAMESPACE,
    ClaimLock,
    GuardedWrite,
    Lease,
    RecordState,
    SentClaim,
    Verdict,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

BATCH_GET_LIMIT = 100  # DynamoDB's limits per BatchGetItem and TransactWriteItems request
TRANSACT_LIMIT = 100
MARKER_MAX_BYTES = 300_000  # under DynamoDB's 400 KB item limit; a bigger marker is not written
MARKER_KEEP_SECONDS = 3600  # how long a marker outlives the leases it releases (TTL)
_MAX_UNPROCESSED_ROUNDS = 8


class VersionGuard:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        ttl_seconds: int,
        concurrency: int = 4,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl_seconds = ttl_seconds
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._counted = 0
        self._count_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._releasing: list[Future[None]] = []  # release markers sent, their answers not yet read

    @property
    def requests(self) -> int:
        """DynamoDB requests made so far (for metrics and benchmarks)."""
        with self._count_lock:
            return self._counted

    def close(self) -> None:
        """Stop the claim threads (when the worker's dependencies are rebuilt)."""
        with self._count_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def now(self) -> float:
        return self._clock()

    def lease(self, seconds: float) -> Lease:
        """A new lease for one invocation, ending ``seconds`` from now."""
        return Lease(uuid.uuid4().hex, int((self._clock() + seconds) * 1000))

    def session(
        self, lease: Lease, *, stop: Callable[[], bool] = lambda: False, spans: tracing.SpanLog = tracing.NO_SPANS
    ) -> ClaimSession:
        """Start claiming for one invocation; see :class:`ClaimSession` (``spans`` times each claim group)."""
        with self._count_lock:
            if self._pool is None:  # kept while the container is warm, like the clients
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="version-guard")
        return ClaimSession(self, self._pool, lease, stop, spans, pumped=self.pollable)

    def claim(self, writes: Sequence[GuardedWrite], lease: Lease) -> dict[tuple[str, str], Verdict]:
        """Claim every write (record ids distinct per namespace) and return each one's verdict.

        Raises :class:`GuardUnavailableError` if DynamoDB fails for any namespace.
        """
        by_namespace: dict[str, list[GuardedWrite]] = {}
        for write in writes:
            by_namespace.setdefault(write.namespace, []).append(write)
        session = self.session(lease)
        try:
            futures = [session.submit(namespace, group) for namespace, group in by_namespace.items()]
        finally:
            session.close()
        verdicts: dict[tuple[str, str], Verdict] = {}
        for future in futures:
            verdicts |= future.result()
        return verdicts

    def release(
        self,
        lease: Lease,
        claimed: Iterable[GuardedWrite],
        landed: Collection[tuple[str, str]],
        *,
        wait: bool = True,
    ) -> None:
        """Say which of ``lease``'s claimed writes landed, so the next versions of those records need not wait.

        A claimed write that did not land (failed, or cancelled at the deadline: it may still reach
        Pinecone moments later) keeps its lease until it expires. Best effort: a lease that is not
        released just expires.

        ``wait=False`` (the ingest handler's): the marker is written to its connection before this
        returns, and its answer is read by a claim thread (:meth:`_answered_in_background`), so the
        batch does not wait a round trip for a write whose failure it would ignore anyway.
        """
        pending: dict[str, set[str]] = {}
        any_landed = False
        for write in claimed:
            if write.key in landed:
                any_landed = True
            else:
                pending.setdefault(write.namespace, set()).add(write.record_id)
        if not any_landed:
            return
        item: dict[str, Any] = {
            "namespace": {"S": MARKER_NAMESPACE},
            "record_id": {"S": lease.token},
            "expires_at": {"N": str(lease.until_ms // 1000 + MARKER_KEEP_SECONDS)},
        }
        if pending:
            item["pending"] = {"M": {ns: {"SS": sorted(ids)} for ns, ids in pending.items()}}
            if sum(len(ns) + sum(len(i) + 3 for i in ids) for ns, ids in pending.items()) > MARKER_MAX_BYTES:
                return
        if not fits(GUARD_PROFILE):  # too late in the invocation: the leases expire on their own
            return
        with contextlib.suppress(ClientError, BotoCoreError):  # not even sent: the leases expire on their own
            answer = self._send("PutItem", self._dynamodb.put_item, TableName=self._table, Item=item)
            if wait:
                _ignoring_failure(answer)
            else:
                self._answered_in_background(answer)

    def _send(self, operation: str, method: Callable[..., Any], **request: Any) -> Callable[[], Any]:
        """Send ``operation`` now where the client can (:class:`~vector_relay.ingest.dynamodb_json.JsonDynamoDB`:
        written to a kept-alive connection); the function that returns its answer. A plain botocore client
        (``method``, the same call) sends when that function is called."""
        with self._count_lock:
            self._counted += 1
        send = getattr(self._dynamodb, "send", None)
        if send is None:
            return functools.partial(method, **request)
        answer: Callable[[], Any] = send(operation, request)
        return answer

    def _send_encoded(self, operation: str, body: bytes) -> Callable[[], Any]:
        """Send ``operation`` with its JSON ``body`` as made by the guard (only where :attr:`_encodes`)."""
        with self._count_lock:
            self._counted += 1
        answer: Callable[[], Any] = self._dynamodb.send(operation, body)  # type: ignore[attr-defined]
        return answer

    @property
    def _encodes(self) -> bool:
        """Whether the client takes a request's JSON bytes (:meth:`JsonDynamoDB.send`) as well as its dictionary."""
        return getattr(self._dynamodb, "send", None) is not None

    def _answered_in_background(self, answer: Callable[[], Any]) -> None:
        """Have a claim thread read ``answer`` (errors ignored: best effort); the next read of release markers
        by this guard waits for it first (:meth:`_markers`), so this container's next claim of a record it has
        just released finds the marker. On Lambda, an answer not read before the environment is frozen is read
        when it thaws: AWS resumes such background work if it reuses the environment."""
        with self._count_lock:
            pool = self._pool
            self._releasing = [future for future in self._releasing if not future.done()]
            if pool is not None:
                with contextlib.suppress(RuntimeError):  # the guard is closing: read here
                    self._releasing.append(pool.submit(_ignoring_failure, answer))
                    return
        _ignoring_failure(answer)

    def hold_unchanged(self, namespace: str, expected: Mapping[str, RecordState], lease: Lease) -> set[str]:
        """Take ``lease`` on the records of ``namespace`` whose state is still exactly ``expected``; return their ids.

        For a write that only applies again what the guard already records (the reconciler deleting
        a record that came back after its recorded delete). It is made as a claim is: under the
        namespace's claim lock, after a strongly consistent read. A record whose state differs from
        ``expected`` (claimed since, even with the same version) or whose lease is live is left
        out. The others keep their version, operation and ``expires_at`` and get ``lease``: no
        worker can claim them until :meth:`release` says the write landed or the lease ends.
        Empty when the claim lock stays taken for :data:`LOCK_WAIT_SECONDS`.
        """
        if not expected:
            return set()
        lock = self._lock(namespace)
        if lock is None:
            return set()
        try:
            items = self._read([{"namespace": {"S": namespace}, "record_id": {"S": rid}} for rid in expected])
            found = {item["record_id"]["S"]: item for item in items}
            now_ms = int(self._clock() * 1000)
            states = {rid: RecordState.from_item(item) for rid, item in found.items() if rid in expected}
            live_tokens = {t for state in states.values() if state.until_ms >= now_ms for t in state.tokens}
            markers = self._markers(live_tokens)
            puts: list[tuple[tuple[str, str], dict[str, Any], dict[str, Any] | None]] = []
            for record_id, state in states.items():
                if state != expected[record_id]:
                    continue
                released = all(_landed(markers.get(token), namespace, record_id) for token in state.tokens)
                if state.until_ms >= now_ms and not released:
                    continue
                held = RecordState(state.version, state.operation, lease.until_ms, (lease.token,))
                item = _claim_item(namespace, record_id, held, found[record_id].get("expires_at", {}))
                if not item["expires_at"]:
                    del item["expires_at"]
                puts.append(((namespace, record_id), item, found[record_id]))
            written = self._write(puts, lock, lambda: False)
        finally:  # a hold write that timed out may still be applied: only if the record is still as read
            self._unlock(lock)
        return {record_id for _, record_id in written}

    # ------------------------------------------------------------------ internals

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        with self._count_lock:
            self._counted += 1
        return method(**kwargs)

    def _lock(self, namespace: str, stop: Callable[[], bool] = lambda: False) -> ClaimLock | None:
        """Take the namespace's claim lock, or None after :data:`LOCK_WAIT_SECONDS` of trying (or at ``stop()``)."""
        token = uuid.uuid4().hex
        give_up = self._clock() + LOCK_WAIT_SECONDS
        delay = 0.01
        while True:
            now = self._clock()
            until = now + LOCK_SECONDS
            try:
                self._call(
                    self._dynamodb.put_item,
                    TableName=self._table,
                    Item={
                        "namespace": {"S": namespace},
                        "record_id": {"S": LOCK_RECORD_ID},
                        "lock_token": {"S": token},
                        "lock_until": {"N": str(int(until * 1000))},
                        "expires_at": {"N": str(int(until) + MARKER_KEEP_SECONDS)},
                    },
                    ConditionExpression="attribute_not_exists(lock_until) OR lock_until < :now",
                    ExpressionAttributeValues={":now": {"N": str(int(now * 1000))}},
                )
                return ClaimLock(namespace, token, until)
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            if self._clock() + delay > give_up or stop():
                return None
            self._sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not cryptography
            delay = min(delay * 2, 0.2)

    def _renew(self, lock: ClaimLock) -> bool:
        """Extend ``lock`` if it is still ours. Nobody else can have held it meanwhile: taking it changes the token."""
        now = self._clock()
        try:
            self._call(
                self._dynamodb.update_item,
                TableName=self._table,
                Key={"namespace": {"S": lock.namespace}, "record_id": {"S": LOCK_RECORD_ID}},
                UpdateExpression="SET lock_until = :until",
                ConditionExpression="lock_token = :token",
                ExpressionAttributeValues={
                    ":token": {"S": lock.token},
                    ":until": {"N": str(int((now + LOCK_SECONDS) * 1000))},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            lock.lost = True
            return False
        lock.until = now + LOCK_SECONDS
        return True

    def _unlock(self, lock: ClaimLock) -> None:
        if lock.lost:
            return
        # expired and taken over, or unreachable: it expires on its own
        with contextlib.suppress(ClientError, BotoCoreError):
            self._call(
                self._dynamodb.delete_item,
                TableName=self._table,
                Key={"namespace": {"S": lock.namespace}, "record_id": {"S": LOCK_RECORD_ID}},
                ConditionExpression="lock_token = :token",
                ExpressionAttributeValues={":token": {"S": lock.token}},
            )

    def _claim_locked(
        self,
        namespace: str,
        writes: Sequence[GuardedWrite],
        lease: Lease,
        lock: ClaimLock,
        stop: Callable[[], bool] = lambda: False,
        held_until: dict[tuple[str, str], float] | None = None,
    ) -> dict[tuple[str, str], Verdict]:
        """Read the records, decide, write the claims; ``lock`` is held. Record ids in ``writes`` are distinct."""
        items = self._read([{"namespace": {"S": namespace}, "record_id": {"S": w.record_id}} for w in writes])
        found = {item["record_id"]["S"]: item for item in items}
        recorded = {record_id: RecordState.from_item(item) for record_id, item in found.items()}
        now_ms = int(self._clock() * 1000)
        live_tokens = {token for state in recorded.values() if state.until_ms >= now_ms for token in state.tokens}
        markers = self._markers(live_tokens - {lease.token})
        expires = {"N": str(now_ms // 1000 + self._ttl_seconds)}
        verdicts: dict[tuple[str, str], Verdict] = {}
        puts: list[tuple[tuple[str, str], dict[str, Any], dict[str, Any] | None]] = []
        for write in writes:
            new = RecordState(write.version, write.operation, lease.until_ms, (lease.token,))
            state = recorded.get(write.record_id)
            if state is not None and state.version > write.version:
                verdicts[write.key] = Verdict.STALE
                continue
            if state is not None and state.until_ms >= now_ms:
                held = [t for t in state.tokens if t != lease.token and not _landed(markers.get(t), *write.key)]
                if held and (state.version, state.operation) != (write.version, write.operation):
                    verdicts[write.key] = Verdict.BUSY
                    if held_until is not None:
                        held_until[write.key] = state.until_ms / 1000
                    continue
                if held:  # a duplicate: both write the same thing, and a newer version waits for both
                    new = RecordState(
                        write.version, write.operation, max(state.until_ms, lease.until_ms), (*held, lease.token)
                    )
            puts.append((write.key, _claim_item(namespace, write.record_id, new, expires), found.get(write.record_id)))
        written = self._write(puts, lock, stop)
        for key, _, _ in puts:
            verdicts[key] = Verdict.CLAIMED if key in written else Verdict.BUSY
        return verdicts

    def _claim_blind(
        self,
        namespace: str,
        writes: Sequence[GuardedWrite],
        lease: Lease,
        stop: Callable[[], bool],
        sent: Callable[[], None] = lambda: None,
        first: SentClaim | None = None,
    ) -> tuple[set[tuple[str, str]], list[GuardedWrite]]:
        """Claim ``writes`` without reading them first and without the claim lock; the keys claimed, and the rest.

        Each put is conditional on what DynamoDB finds when it applies it (:data:`BLIND_CONDITION`): no
        item, or one recording no higher version under a lease that ended before this worker's clock
        now. So a put applied late or twice is refused by any claim written since (whose lease ends
        after that time) and by any higher version, as a compare-and-set of what was read would be
        (tools/guard_model.py, protocol ``blind``). A record that is held, stale, of the per-record
        guard, or claimed again by this invocation is refused here, and the rest of its transaction
        is sent again without it; the refused ones (and any not sent once ``stop()``) are returned
        for :meth:`_claim_locked` to read and decide under the lock. ``sent`` is called once the first
        request is written (before its answer is read). ``first``: the first request, already sent by
        :meth:`_send_blind` for the first :data:`TRANSACT_LIMIT` of ``writes`` (its answer read here).
        """
        now_ms = first.now_ms if first is not None else int(self._clock() * 1000)
        claimed: set[tuple[str, str]] = set()
        refused: list[GuardedWrite] = []
        for start in range(0, len(writes), TRANSACT_LIMIT):
            chunk = list(writes[start : start + TRANSACT_LIMIT])
            while chunk and (first is not None or not stop()):
                try:
                    if first is not None:
                        answer, first = first.answer, None
                    else:
                        answer = self._send_blind(namespace, chunk, lease, now_ms).answer
                    sent()
                    answer()
                except ClientError as error:
                    if error.response["Error"]["Code"] != "TransactionCanceledException":
                        raise
                    reasons = error.response.get("CancellationReasons", [])
                    # refused, in conflict with another transaction on the item, or throttled: read and decided
                    out = {i for i, reason in enumerate(reasons) if reason.get("Code") not in (None, "None")}
                    if not out:  # no reason given: every put is left for the read
                        out = set(range(len(chunk)))
                    refused += (write for i, write in enumerate(chunk) if i in out)
                    chunk = [write for i, write in enumerate(chunk) if i not in out]
                    continue
                claimed.update(write.key for write in chunk)
                chunk = []
            refused += chunk  # not sent (stop): busy unless the read path finds time
        return claimed, refused

    def _send_blind(
        self, namespace: str, writes: Sequence[GuardedWrite], lease: Lease, now_ms: int | None = None
    ) -> SentClaim:
        """Send one blind claim request for the first :data:`TRANSACT_LIMIT` of ``writes``; its answer is read
        by :meth:`_claim_blind` (``first``), which goes on from there."""
        writes = writes[:TRANSACT_LIMIT]
        if now_ms is None:
            now_ms = int(self._clock() * 1000)
        if self._encodes:  # the JSON client: the request's bytes made here, without a dictionary per put
            body = _blind_claims_json(self._table, namespace, writes, lease, now_ms, now_ms // 1000 + self._ttl_seconds)
            return SentClaim(now_ms, self._send_encoded("TransactWriteItems", body), len(writes))
        expires = {"N": str(now_ms // 1000 + self._ttl_seconds)}
        values = {":now": {"N": str(now_ms)}}
        answer = self._send(
            "TransactWriteItems",
            self._dynamodb.transact_write_items,
            TransactItems=[
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": _claim_item(
                            namespace,
                            write.record_id,
                            RecordState(write.version, write.operation, lease.until_ms, (lease.token,)),
                            expires,
                        ),
                        "ConditionExpression": BLIND_CONDITION,
                        "ExpressionAttributeNames": _BLIND_NAMES,
                        "ExpressionAttributeValues": {**values, ":v": {"N": str(write.version)}},
                    }
                }
                for write in writes
            ],
        )
        return SentClaim(now_ms, answer, len(writes))

    @property
    def pollable(self) -> bool:
        """Whether the requests of :meth:`_send_blind` are written at once and their answers can be awaited
        without a thread (``answer.ready()``): the JSON client over kept-alive connections."""
        return bool(getattr(self._dynamodb, "pollable", False))

    def _read(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: Mapping[str, Any] = {
                self._table: {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True}
            }
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                response = self._call(self._dynamodb.batch_get_item, RequestItems=request)
                items.extend(response["Responses"].get(self._table, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self._sleep(0.05)
            else:
                raise GuardUnavailableError("version guard table kept keys unprocessed (throttled)")
        return items

    def _markers(self, tokens: Collection[str]) -> dict[str, dict[str, Any]]:
        if not tokens:
            return {}
        with self._count_lock:
            releasing = list(self._releasing)
        wait(releasing)  # this guard's own markers answered first (each bounded by the client's read timeout)
        keys = [{"namespace": {"S": MARKER_NAMESPACE}, "record_id": {"S": token}} for token in sorted(tokens)]
        return {item["record_id"]["S"]: item for item in self._read(keys)}

    def _write(
        self,
        puts: list[tuple[tuple[str, str], dict[str, Any], dict[str, Any] | None]],
        lock: ClaimLock,
        stop: Callable[[], bool],
    ) -> set[tuple[str, str]]:
        """Write the claims while the lock is safely ours and there is time; return the keys written.

        Each put is conditional on the item being exactly as it was read (compare-and-set): a write
        that DynamoDB applies late, or twice, finds the item changed and is refused, so no claim can
        lower a recorded version or replace a lease written after its read, whatever DynamoDB's
        timing. Up to :data:`TRANSACT_LIMIT` puts per ``TransactWriteItems``; a put refused for a
        changed item is left out (its record is busy: retried later) and the rest are sent again.
        """
        written: set[tuple[str, str]] = set()
        for start in range(0, len(puts), TRANSACT_LIMIT):
            chunk = puts[start : start + TRANSACT_LIMIT]
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                if not chunk:
                    break
                if lock.lost or stop():
                    return written  # the rest are busy: retried by SQS
                if self._clock() > lock.until - LOCK_WRITE_MARGIN_SECONDS and not self._renew(lock):
                    return written  # the lock could expire under a slow request and was lost: the rest are busy
                try:
                    self._call(
                        self._dynamodb.transact_write_items,
                        TransactItems=[
                            {"Put": {"TableName": self._table, "Item": item, **_unchanged_since(previous)}}
                            for _, item, previous in chunk
                        ],
                    )
                except ClientError as error:
                    if error.response["Error"]["Code"] != "TransactionCanceledException":
                        raise
                    reasons = error.response.get("CancellationReasons", [])
                    changed = {i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"}
                    chunk = [put for i, put in enumerate(chunk) if i not in changed]
                    if not changed:  # a conflict with another transaction, or throttling: try again shortly
                        self._sleep(0.05)
                    continue
                written.update(key for key, _, _ in chunk)
                break
            else:
                raise GuardUnavailableError("version guard claims kept being cancelled (throttled or in conflict)")
        return written


# The blind claim's condition: no item, or no higher version (v) under a lease (u, epoch ms) ended before :now.
BLIND_CONDITION = "attribute_not_exists(record_id) OR (#v <= :v AND #u < :now)"
_BLIND_NAMES = {"#v": "v", "#u": "u"}
_BLIND_NAMES_JSON = json.dumps(_BLIND_NAMES, separators=(",", ":"))


def _claim_item(namespace: str, record_id: str, state: RecordState, expires: dict[str, str]) -> dict[str, Any]:
    """A record's item: its state in one string, and its version and lease end again as numbers for the blind
    claim's condition (DynamoDB compares numbers only as numbers)."""
    return {
        "namespace": {"S": namespace},
        "record_id": {"S": record_id},
        "state": {"S": state.format()},
        "v": {"N": str(state.version)},
        "u": {"N": str(state.until_ms)},
        "expires_at": expires,
    }


def _blind_claims_json(
    table: str, namespace: str, writes: Sequence[GuardedWrite], lease: Lease, now_ms: int, expires_at: int
) -> bytes:
    """The blind claims' ``TransactWriteItems`` request as JSON: what ``orjson.dumps`` gives for the request the
    botocore path builds (``_claim_item``, :data:`BLIND_CONDITION`), made from one template per request. A dictionary
    per put, encoded by orjson, took 2.8 us a record on an idle core (about 6 on the handler's thread between two
    messages); this takes 0.8 (tests/unit/test_version_guard_encoding.py holds the two equal)."""
    head = f'{{"Put":{{"TableName":{_json(table)},"Item":{{"namespace":{{"S":{_json(namespace)}}},"record_id":{{"S":'
    lease_part = f" {lease.until_ms} {lease.token}"
    tail = (
        f',"expires_at":{{"N":"{expires_at}"}}}},"ConditionExpression":{_json(BLIND_CONDITION)},'
        f'"ExpressionAttributeNames":{_BLIND_NAMES_JSON},"ExpressionAttributeValues":{{":now":{{"N":"{now_ms}"}},'
    )
    puts = ",".join(
        f'{head}{_json(write.record_id)}}},"state":{{"S":{_json(f"{write.version} {write.operation}{lease_part}")}}},'
        f'"v":{{"N":"{write.version}"}},"u":{{"N":"{lease.until_ms}"}}{tail}":v":{{"N":"{write.version}"}}}}}}}}'
        for write in writes
    )
    return f'{{"TransactItems":[{puts}]}}'.encode()


# ``text`` as a JSON string, quotes included (non-ASCII escaped: the same value orjson's UTF-8 would carry); the
# C function itself, not a wrapper: it is called twice a record
_json = encode_basestring_ascii


def _unchanged_since(previous: dict[str, Any] | None) -> dict[str, Any]:
    """The condition that the item is still exactly as read: absent, or with the same state string."""
    if previous is None:
        return {"ConditionExpression": "attribute_not_exists(record_id)"}
    if "state" in previous:
        return {
            "ConditionExpression": "#state = :read",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":read": previous["state"]},
        }
    # an item of the per-record guard (before 2026-11): still in that form, with the version read
    return {
        "ConditionExpression": "attribute_not_exists(#state) AND #version = :version",
        "ExpressionAttributeNames": {"#state": "state", "#version": "version"},
        "ExpressionAttributeValues": {":version": previous["version"]},
    }


def _ignoring_failure(answer: Callable[[], Any]) -> None:
    with contextlib.suppress(ClientError, BotoCoreError):  # the leases expire on their own
        answer()


def _landed(marker: dict[str, Any] | None, namespace: str, record_id: str) -> bool:
    """Whether the invocation that wrote ``marker`` reported its write of the record as landed."""
    if marker is None:
        return False
    pending = marker.get("pending", {}).get("M", {}).get(namespace, {}).get("SS", [])
    return record_id not in pending
