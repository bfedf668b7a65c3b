"""What the version guard records and hands out: record states, leases, verdicts, the claim lock.

The guard's table (:mod:`vector_relay.ingest.version_guard`) holds one item per (namespace, record
id) with a :class:`RecordState`, one claim-lock item per namespace (:data:`LOCK_RECORD_ID`) and the
landed markers (:data:`MARKER_NAMESPACE`). The reconciler reads the same items.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

# Record ids and namespaces are ASCII (the contract and the tenant registry say so), so keys that
# start with a non-ASCII character can never be a record's.
LOCK_RECORD_ID = "§claim-lock"
MARKER_NAMESPACE = "§landed"

LOCK_SECONDS = 8.0  # how long a claim lock lives unless renewed: a dead holder blocks its namespace this long
LOCK_WRITE_MARGIN_SECONDS = 4.0  # no claim is written with less left on the lock (twice the longest guard call)
LOCK_WAIT_SECONDS = 1.0  # how long a worker waits for another's claim lock before calling its records busy


class Verdict(enum.Enum):
    CLAIMED = "claimed"
    STALE = "stale"  # a newer version is recorded: drop this write
    BUSY = "busy"  # another worker holds the record: retry later


class GuardedWrite(NamedTuple):
    """One record's write as the guard sees it (a tuple: one is made per record of every message, and a frozen
    dataclass costs about three times as much to make)."""

    namespace: str
    record_id: str
    version: int
    operation: str  # "upsert" or "delete"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.record_id)


class SentClaim(NamedTuple):
    """A blind claim request on its way: the clock it was made with, and the function that reads its answer."""

    now_ms: int
    answer: Callable[[], Any]
    writes: int  # how many of the claim's writes it carries (at most one transaction's)


@dataclass(frozen=True, slots=True)
class Lease:
    """One invocation's claim on the records it writes: its token and when it ends at the latest (epoch ms)."""

    token: str
    until_ms: int


@dataclass(frozen=True, slots=True)
class RecordState:
    """What the guard records for one (namespace, id), kept in one string attribute ``state``.

    ``"<version> <operation> <lease end, epoch ms> <token> [<token> ...]"``: one attribute instead
    of four makes every claim cheaper to write and read (DynamoDB items are handled per attribute).
    """

    version: int
    operation: str
    until_ms: int
    tokens: tuple[str, ...]

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> RecordState:
        """A record item's state; items of the per-record guard (before 2026-11) have separate attributes."""
        if "state" in item:
            return cls.parse(item["state"]["S"])
        until_ms = int(item.get("lease_until", {}).get("N", "0"))
        # its leases carry no token, so they can only expire
        return cls(int(item["version"]["N"]), item["operation"]["S"], until_ms, ("per-record-guard",))

    @classmethod
    def parse(cls, text: str) -> RecordState:
        version, operation, until_ms, *tokens = text.split(" ")
        return cls(int(version), operation, int(until_ms), tuple(tokens))

    def format(self) -> str:
        return " ".join((str(self.version), self.operation, str(self.until_ms), *self.tokens))


@dataclass(slots=True)
class ClaimLock:
    namespace: str
    token: str
    until: float  # epoch seconds
    lost: bool = False
