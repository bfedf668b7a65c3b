"""The version guard: no write with an older version ever lands after a newer one, across batches and workers.

Pinecone has no conditional write, so the guard lives in DynamoDB (the ``WriteVersionTable``,
keyed by namespace and record id). For each record a batch is about to write, the worker first
**claims** it with a conditional update that succeeds only when

* no version is recorded yet, or
* the recorded version is lower than or equal to the write's, **and** no other worker holds an
  unexpired lease on the record.

The claim records the write's version and operation (a delete leaves a tombstone) and a lease
that ends when the claiming invocation must have ended (its deadline plus a margin). Only the
lease holder writes the record to Pinecone; after the write (successful or not) the worker
releases the lease. A write whose version is lower than the recorded one is **stale**: it is
acknowledged and dropped. A write that meets another worker's lease is **busy**: it is retried by
SQS, by which time the other write has landed (or its lease has expired). Why this is correct,
and what it costs, is in docs/ordering.md.

Claims and releases go in ``TransactWriteItems`` calls of up to 100 records, several at once; a
transaction cancelled by one record's condition is retried without that record.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(child=True)

MAX_TRANSACTION_ITEMS = 100
MAX_ROUNDS = 4  # a transaction is retried without its failed items this many times
CONCURRENT_TRANSACTIONS = 8

_CLAIM_CONDITION = (
    "attribute_not_exists(#version) OR (#version <= :version AND "
    "(attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner))"
)


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


class GuardUnavailableError(TransientError):
    """DynamoDB could not be asked; the writes it guards are retried by SQS."""


class VersionGuard:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self.owner = owner or uuid.uuid4().hex

    def claim(self, writes: Sequence[GuardedWrite], *, lease_seconds: float) -> dict[tuple[str, str], Verdict]:
        """Claim every write; return each one's verdict. Raises :class:`GuardUnavailableError` if DynamoDB fails."""
        now = self._clock()
        values_common = {
            ":now": {"N": str(int(now * 1000))},
            ":owner": {"S": self.owner},
            ":until": {"N": str(int((now + lease_seconds) * 1000))},
            ":expires": {"N": str(int(now + self._ttl_seconds))},
        }

        def item(write: GuardedWrite) -> dict[str, Any]:
            return {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(write),
                    "UpdateExpression": (
                        "SET #version = :version, operation = :operation, lease_owner = :owner, "
                        "lease_until = :until, expires_at = :expires"
                    ),
                    "ConditionExpression": _CLAIM_CONDITION,
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ExpressionAttributeValues": values_common
                    | {":version": {"N": str(write.version)}, ":operation": {"S": write.operation}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }

        verdicts: dict[tuple[str, str], Verdict] = {}
        for chunk_verdicts in self._in_transactions(writes, item):
            verdicts.update(chunk_verdicts)
        return verdicts

    def release(self, writes: Sequence[GuardedWrite]) -> None:
        """End this worker's leases on ``writes`` (best effort: an unreleased lease simply expires)."""

        def item(write: GuardedWrite) -> dict[str, Any]:
            return {
                "Update": {
                    "TableName": self._table,
                    "Key": _key(write),
                    "UpdateExpression": "REMOVE lease_owner, lease_until",
                    "ConditionExpression": "lease_owner = :owner",
                    "ExpressionAttributeValues": {":owner": {"S": self.owner}},
                }
            }

        try:
            for _ in self._in_transactions(writes, item):
                pass
        except GuardUnavailableError:
            logger.warning("could not release version-guard leases; they expire on their own", exc_info=True)

    def _in_transactions(
        self, writes: Sequence[GuardedWrite], item: Callable[[GuardedWrite], dict[str, Any]]
    ) -> list[dict[tuple[str, str], Verdict]]:
        chunks = [writes[i : i + MAX_TRANSACTION_ITEMS] for i in range(0, len(writes), MAX_TRANSACTION_ITEMS)]
        if not chunks:
            return []
        if len(chunks) == 1:
            return [self._transact(chunks[0], item)]
        with ThreadPoolExecutor(max_workers=min(CONCURRENT_TRANSACTIONS, len(chunks))) as pool:
            return list(pool.map(lambda chunk: self._transact(chunk, item), chunks))

    def _transact(
        self, writes: Sequence[GuardedWrite], item: Callable[[GuardedWrite], dict[str, Any]]
    ) -> dict[tuple[str, str], Verdict]:
        """One transaction per round; records whose condition failed are decided and left out of the next round."""
        verdicts: dict[tuple[str, str], Verdict] = {}
        pending = list(writes)
        for _ in range(MAX_ROUNDS):
            if not pending:
                break
            try:
                items: list[Any] = [item(w) for w in pending]
                self._dynamodb.transact_write_items(TransactItems=items)
            except ClientError as error:
                reasons: list[Any] | None = error.response.get("CancellationReasons")
                if error.response["Error"]["Code"] != "TransactionCanceledException" or not reasons:
                    raise GuardUnavailableError(f"version guard table unavailable: {error}") from error
                pending = self._decide(pending, reasons, verdicts)
                continue
            except BotoCoreError as error:
                raise GuardUnavailableError(f"version guard table unreachable: {error}") from error
            verdicts.update((w.key, Verdict.CLAIMED) for w in pending)
            pending = []
        verdicts.update((w.key, Verdict.BUSY) for w in pending)  # still contended after every round
        return verdicts

    @staticmethod
    def _decide(
        pending: list[GuardedWrite], reasons: list[Any], verdicts: dict[tuple[str, str], Verdict]
    ) -> list[GuardedWrite]:
        retry: list[GuardedWrite] = []
        for write, reason in zip(pending, reasons, strict=True):
            code = reason.get("Code")
            if code == "ConditionalCheckFailed":
                old = reason.get("Item") or {}
                recorded = int(old.get("version", {}).get("N", "-1"))
                verdicts[write.key] = Verdict.STALE if recorded > write.version else Verdict.BUSY
            elif code in (None, "None"):
                retry.append(write)  # cancelled only because another record failed
            else:
                retry.append(write)  # TransactionConflict and friends: try again next round
        return retry


def _key(write: GuardedWrite) -> dict[str, Any]:
    return {"namespace": {"S": write.namespace}, "record_id": {"S": write.record_id}}
