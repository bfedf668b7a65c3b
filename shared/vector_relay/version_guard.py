"""The version guard: no write with an older version ever lands after a newer one, across batches and workers.

Pinecone has no conditional write, so the guard lives in DynamoDB (the ``WriteVersionTable``,
keyed by namespace and record id). Before a batch writes a namespace's records, the worker
**claims** them, all at once:

1. it takes the namespace's **claim lock** (one conditional ``PutItem`` on a reserved item that
   expires after :data:`LOCK_SECONDS`, so a dead worker cannot hold it for long);
2. reads the records' items (``BatchGetItem``, 100 per request, strongly consistent);
3. decides each record's verdict and writes the claims (``BatchWriteItem``, 25 per request);
4. drops the lock (one conditional ``DeleteItem``).

A record is **claimed** when no version is recorded, or the recorded version is lower than or
equal to the write's and no other worker's lease on it is still live. A claim records the
write's version and operation (a delete leaves a tombstone) and a **lease**: the claiming
invocation's token and a time by which that invocation must have ended. A duplicate (the same
version and operation as recorded, under another worker's live lease) **joins** the lease: its
token is added and the lease lasts until the later of the two ends. A write whose version is lower
than the recorded one is **stale**: acknowledged and dropped. A write that meets another
worker's live lease is **busy**: SQS redelivers it after the queue's visibility timeout, which is
longer than any lease.

Once the batch has run, the worker **releases** what landed with one ``PutItem``: a marker item
named by its token, listing the claimed records that did not land (if any). A lease is live until
it expires or until every token on it has a marker saying its write of the record landed.

Per namespace and batch that is 2 + ceil(n/100) + ceil(n/25) requests, plus one per invocation;
docs/ordering.md says why the scheme is correct and what it costs.
"""

from __future__ import annotations

import contextlib
import enum
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Record ids and namespaces are ASCII (the contract and the tenant registry say so), so keys that
# start with a non-ASCII character can never be a record's.
LOCK_RECORD_ID = "§claim-lock"
MARKER_NAMESPACE = "§landed"

LOCK_SECONDS = 30.0  # how long a claim lock lives if its holder dies
LOCK_WRITE_MARGIN_SECONDS = 15.0  # no claim is written with less than this left on the lock
LOCK_WAIT_SECONDS = 2.0  # how long a worker waits for another's claim lock before calling its records busy
BATCH_GET_LIMIT = 100  # DynamoDB's limits per BatchGetItem / BatchWriteItem request
BATCH_WRITE_LIMIT = 25
MARKER_MAX_BYTES = 300_000  # under DynamoDB's 400 KB item limit; a bigger marker is not written
MARKER_KEEP_SECONDS = 3600  # how long a marker outlives the leases it releases (TTL)
GROUPS_IN_FLIGHT = 2  # groups of one namespace claimed at once
_MAX_UNPROCESSED_ROUNDS = 8


class Verdict(enum.Enum):
    CLAIMED = "claimed"
    STALE = "stale"  # a newer version is recorded: drop this write
    BUSY = "busy"  # another worker holds the record: retry later


@dataclass(frozen=True, slots=True)
class GuardedWrite:
    namespace: str
    record_id: str
    version: int
    operation: str  # "upsert" or "delete"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.record_id)


@dataclass(frozen=True, slots=True)
class Lease:
    """One invocation's claim on the records it writes: its token and when it ends at the latest (epoch ms)."""

    token: str
    until_ms: int


class GuardUnavailableError(TransientError):
    """DynamoDB could not be asked; the writes it guards are retried by SQS."""


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

    @property
    def requests(self) -> int:
        """DynamoDB requests made so far (for metrics and benchmarks)."""
        with self._count_lock:
            return self._counted

    def lease(self, seconds: float) -> Lease:
        """A new lease for one invocation, ending ``seconds`` from now."""
        return Lease(uuid.uuid4().hex, int((self._clock() + seconds) * 1000))

    def claim(self, writes: Sequence[GuardedWrite], lease: Lease) -> dict[tuple[str, str], Verdict]:
        """Claim every write (any namespaces; ``concurrency`` namespaces at a time); return each one's verdict.

        Raises :class:`GuardUnavailableError` if DynamoDB fails for any namespace.
        """
        by_namespace: dict[str, list[GuardedWrite]] = {}
        for write in writes:
            by_namespace.setdefault(write.namespace, []).append(write)
        verdicts: dict[tuple[str, str], Verdict] = {}
        if self.concurrency == 1 or len(by_namespace) <= 1:
            for namespace, group in by_namespace.items():
                verdicts |= self.claim_namespace(namespace, group, lease)
            return verdicts
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(by_namespace))) as pool:
            for result in pool.map(lambda item: self.claim_namespace(item[0], item[1], lease), by_namespace.items()):
                verdicts |= result
        return verdicts

    def claim_namespace(
        self, namespace: str, writes: Sequence[GuardedWrite], lease: Lease
    ) -> dict[tuple[str, str], Verdict]:
        """Claim the writes of one namespace under its claim lock. Raises :class:`GuardUnavailableError`."""
        verdicts: dict[tuple[str, str], Verdict] = {}
        self.claim_in_groups(namespace, [writes], lease, lambda _, group: verdicts.update(group))
        return verdicts

    def claim_in_groups(
        self,
        namespace: str,
        groups: Sequence[Sequence[GuardedWrite]],
        lease: Lease,
        deliver: Callable[[int, dict[tuple[str, str], Verdict]], None],
        *,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Claim one namespace's writes group by group under one claim lock, handing over each group's verdicts.

        The caller can start writing a group (one Pinecone request) while the next is claimed.
        Once ``stop()`` says so (the invocation is out of time), the groups left are not claimed:
        their writes are busy. Raises :class:`GuardUnavailableError` if DynamoDB fails; the groups
        delivered before stay claimed.
        """
        if not any(groups):
            for index in range(len(groups)):
                deliver(index, {})
            return
        try:
            lock = self._lock(namespace)
            if lock is None:  # another worker has held the lock for a long time: try again later
                for index, group in enumerate(groups):
                    deliver(index, {write.key: Verdict.BUSY for write in group})
                return
            try:

                def claim_group(index: int, group: Sequence[GuardedWrite]) -> None:
                    if stop():
                        deliver(index, {write.key: Verdict.BUSY for write in group})
                    else:
                        deliver(index, self._claim_locked(namespace, group, lease, lock) if group else {})

                # Groups hold distinct records, so two can be claimed at once under the one lock.
                with ThreadPoolExecutor(max_workers=GROUPS_IN_FLIGHT) as pool:
                    for claimed in [pool.submit(claim_group, index, group) for index, group in enumerate(groups)]:
                        claimed.result()
            finally:
                self._unlock(namespace, lock)
        except (ClientError, BotoCoreError) as error:
            raise GuardUnavailableError(f"version guard table unavailable: {error}") from error

    def release(self, lease: Lease, claimed: Iterable[GuardedWrite], landed: Collection[tuple[str, str]]) -> None:
        """Say which of ``lease``'s claimed writes landed, so the next versions of those records need not wait.

        A claimed write that did not land (failed, or cancelled at the deadline: it may still reach
        Pinecone moments later) keeps its lease until it expires. Best effort: a lease that is not
        released just expires.
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
        with contextlib.suppress(ClientError, BotoCoreError):  # the leases expire on their own
            self._call(self._dynamodb.put_item, TableName=self._table, Item=item)

    # ------------------------------------------------------------------ internals

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        with self._count_lock:
            self._counted += 1
        return method(**kwargs)

    def _lock(self, namespace: str) -> tuple[str, float] | None:
        """Take the namespace's claim lock: (token, expiry) or None after :data:`LOCK_WAIT_SECONDS` of trying."""
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
                return token, until
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            if self._clock() + delay > give_up:
                return None
            self._sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not cryptography
            delay = min(delay * 2, 0.2)

    def _unlock(self, namespace: str, lock: tuple[str, float]) -> None:
        # expired and taken over, or unreachable: it expires on its own
        with contextlib.suppress(ClientError, BotoCoreError):
            self._call(
                self._dynamodb.delete_item,
                TableName=self._table,
                Key={"namespace": {"S": namespace}, "record_id": {"S": LOCK_RECORD_ID}},
                ConditionExpression="lock_token = :token",
                ExpressionAttributeValues={":token": {"S": lock[0]}},
            )

    def _claim_locked(
        self, namespace: str, writes: Sequence[GuardedWrite], lease: Lease, lock: tuple[str, float]
    ) -> dict[tuple[str, str], Verdict]:
        items = self._read([{"namespace": {"S": namespace}, "record_id": {"S": w.record_id}} for w in writes])
        recorded = {item["record_id"]["S"]: item for item in items}
        now_ms = int(self._clock() * 1000)
        leases = {record_id: _parse_lease(item) for record_id, item in recorded.items()}
        live_tokens = {token for until_ms, tokens in leases.values() if until_ms >= now_ms for token in tokens}
        markers = self._markers(live_tokens)
        expires = {"N": str(now_ms // 1000 + self._ttl_seconds)}
        verdicts: dict[tuple[str, str], Verdict] = {}
        puts: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for write in writes:
            claim: dict[str, Any] = {
                "namespace": {"S": namespace},
                "record_id": {"S": write.record_id},
                "version": {"N": str(write.version)},
                "operation": {"S": write.operation},
                "lease": {"S": f"{lease.until_ms} {lease.token}"},
                "expires_at": expires,
            }
            item = recorded.get(write.record_id)
            if item is None:
                puts.append((write.key, claim))
                continue
            version = int(item["version"]["N"])
            if version > write.version:
                verdicts[write.key] = Verdict.STALE
                continue
            until_ms, tokens = leases[write.record_id]
            live = until_ms >= now_ms and not all(_landed(markers.get(t), namespace, write.record_id) for t in tokens)
            if not live:
                puts.append((write.key, claim))
            elif version == write.version and item.get("operation", {}).get("S") == write.operation:
                # a duplicate: both write the same thing, and a newer version waits for both
                joined = " ".join(sorted({*tokens, lease.token}))
                claim["lease"] = {"S": f"{max(until_ms, lease.until_ms)} {joined}"}
                puts.append((write.key, claim))
            else:
                verdicts[write.key] = Verdict.BUSY
        written = self._write(puts, lock)
        for key, _ in puts:
            verdicts[key] = Verdict.CLAIMED if key in written else Verdict.BUSY
        return verdicts

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
        keys = [{"namespace": {"S": MARKER_NAMESPACE}, "record_id": {"S": token}} for token in sorted(tokens)]
        return {item["record_id"]["S"]: item for item in self._read(keys)}

    def _write(
        self, puts: list[tuple[tuple[str, str], dict[str, Any]]], lock: tuple[str, float]
    ) -> set[tuple[str, str]]:
        """Write the claims while the lock is safely ours; return the keys written."""
        written: set[tuple[str, str]] = set()
        for start in range(0, len(puts), BATCH_WRITE_LIMIT):
            chunk = puts[start : start + BATCH_WRITE_LIMIT]
            pending = {(item["record_id"]["S"]): key for key, item in chunk}
            requests = [{"PutRequest": {"Item": item}} for _, item in chunk]
            for _ in range(_MAX_UNPROCESSED_ROUNDS):
                if self._clock() > lock[1] - LOCK_WRITE_MARGIN_SECONDS:
                    return written  # the lock could expire under a slow request: the rest are busy
                response = self._call(self._dynamodb.batch_write_item, RequestItems={self._table: requests})
                requests = (response.get("UnprocessedItems") or {}).get(self._table, [])
                left = {request["PutRequest"]["Item"]["record_id"]["S"] for request in requests}
                written.update(key for record_id, key in pending.items() if record_id not in left)
                if not requests:
                    break
                self._sleep(0.05)
        return written


def _parse_lease(item: Mapping[str, Any]) -> tuple[int, list[str]]:
    """A record's lease: ``"<until epoch ms> <token> [<token> ...]"`` (one attribute keeps the item small)."""
    until, *tokens = item.get("lease", {}).get("S", "0").split(" ")
    return int(until), tokens


def _landed(marker: dict[str, Any] | None, namespace: str, record_id: str) -> bool:
    """Whether the invocation that wrote ``marker`` reported its write of the record as landed."""
    if marker is None:
        return False
    pending = marker.get("pending", {}).get("M", {}).get(namespace, {}).get("SS", [])
    return record_id not in pending
