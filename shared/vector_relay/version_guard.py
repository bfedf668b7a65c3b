"""The version guard: no write with an older version ever lands after a newer one, across batches and workers.

Pinecone has no conditional write, so the guard lives in DynamoDB (the ``WriteVersionTable``,
keyed by namespace and record id). For each record a batch is about to write, the worker first
**claims** it with one conditional ``UpdateItem`` that succeeds only when

* no version is recorded yet, or
* the recorded version is lower than or equal to the write's, **and** no other worker holds an
  unexpired lease on the record;

or, for a duplicate (the same version and operation as recorded, under another worker's lease),
by extending that lease to cover this invocation too: both write the same thing.

The claim records the write's version and operation (a delete leaves a tombstone) and a lease
that ends after the claiming invocation must have ended. Only the lease holder writes the record
to Pinecone; once the write has landed the lease is released, so the next version of the record
need not wait. A write whose version is lower than the recorded one is **stale**: it is
acknowledged and dropped. A write that meets another worker's lease is **busy**: SQS redelivers
it after the queue's visibility timeout, which is longer than any lease. docs/ordering.md says why
the scheme is correct and what it costs.

Claims and releases run concurrently (``concurrency`` at a time): one conditional write each.
"""

from __future__ import annotations

import contextlib
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_LEASE_FREE = "(attribute_not_exists(lease_until) OR lease_until < :now)"
_CLAIM_CONDITION = f"attribute_not_exists(#version) OR (#version <= :version AND {_LEASE_FREE})"
_CLAIM_UPDATE = (
    "SET #version = :version, operation = :operation, lease_owner = :owner, lease_until = :until, expires_at = :expires"
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
        concurrency: int = 16,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._concurrency = concurrency
        self._clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.last_claim_at = 0.0

    def claim(self, writes: Sequence[GuardedWrite], *, lease_seconds: float) -> dict[tuple[str, str], Verdict]:
        """Claim every write; return each one's verdict. Raises :class:`GuardUnavailableError` if DynamoDB fails."""
        now = self._clock()
        self.last_claim_at = now
        common = {
            ":now": {"N": str(int(now * 1000))},
            ":owner": {"S": self.owner},  # who claimed last, for people reading the table
            ":until": {"N": str(int((now + lease_seconds) * 1000))},
            ":expires": {"N": str(int(now + self._ttl_seconds))},
        }
        if self._concurrency == 1 or len(writes) <= 1:
            return dict(self._claim_one(write, common) for write in writes)
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(writes))) as pool:
            return dict(pool.map(lambda write: self._claim_one(write, common), writes))

    def release(self, writes: Sequence[GuardedWrite], *, lease_seconds: float, claimed_at: float) -> None:
        """End the leases of writes that have landed, so the next version need not wait for them to expire.

        Only a lease that is still exactly the one this worker took is removed: one that a duplicate
        delivery extended (joined) is left to expire. Best effort: a lease not released just expires.
        """
        until = {"N": str(int((claimed_at + lease_seconds) * 1000))}

        def release_one(write: GuardedWrite) -> None:
            # Extended by a duplicate, or DynamoDB unreachable: the lease expires on its own.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._dynamodb.update_item(
                    TableName=self._table,
                    Key={"namespace": {"S": write.namespace}, "record_id": {"S": write.record_id}},
                    UpdateExpression="REMOVE lease_until",
                    ConditionExpression="lease_owner = :owner AND lease_until = :until",
                    ExpressionAttributeValues={":owner": {"S": self.owner}, ":until": until},
                )

        if self._concurrency == 1 or len(writes) <= 1:
            for write in writes:
                release_one(write)
            return
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(writes))) as pool:
            list(pool.map(release_one, writes))

    def _claim_one(self, write: GuardedWrite, common: dict[str, Any]) -> tuple[tuple[str, str], Verdict]:
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"namespace": {"S": write.namespace}, "record_id": {"S": write.record_id}},
                UpdateExpression=_CLAIM_UPDATE,
                ConditionExpression=_CLAIM_CONDITION,
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues=common
                | {":version": {"N": str(write.version)}, ":operation": {"S": write.operation}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise GuardUnavailableError(f"version guard table unavailable: {error}") from error
            old: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            recorded = int(old.get("version", {}).get("N", "-1"))
            if recorded > write.version:
                return write.key, Verdict.STALE
            if recorded == write.version and old.get("operation", {}).get("S") == write.operation:
                return write.key, self._join(write, common)
            return write.key, Verdict.BUSY
        except BotoCoreError as error:
            raise GuardUnavailableError(f"version guard table unreachable: {error}") from error
        return write.key, Verdict.CLAIMED

    def _join(self, write: GuardedWrite, common: dict[str, Any]) -> Verdict:
        """Share another worker's lease on the same version and operation (a duplicate delivery).

        Both write the same thing, so neither may be overtaken by a newer version until both are
        done: the lease is extended to cover this invocation too, never shortened.
        """
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"namespace": {"S": write.namespace}, "record_id": {"S": write.record_id}},
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="#version = :version AND operation = :operation AND lease_until < :until",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={
                    ":version": {"N": str(write.version)},
                    ":operation": {"S": write.operation},
                    ":until": common[":until"],
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise GuardUnavailableError(f"version guard table unavailable: {error}") from error
            old: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            same = (
                int(old.get("version", {}).get("N", "-1")) == write.version
                and old.get("operation", {}).get("S") == write.operation
            )
            return Verdict.CLAIMED if same else Verdict.BUSY  # same: the lease already outlasts this one
        except BotoCoreError as error:
            raise GuardUnavailableError(f"version guard table unreachable: {error}") from error
        return Verdict.CLAIMED
