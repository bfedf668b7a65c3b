"""The project's one failure taxonomy. Every failure a worker meets is one of three families.

* :class:`PoisonMessageError`: the message can never succeed as sent. It goes to the dead-letter
  queue on first receive, with every reason, and is acknowledged.
* :class:`TransientError`: it may succeed later (throttling, 5xx, timeouts, connection trouble).
  The message is reported as a batch item failure and SQS redelivers it. Its kinds below say why
  (:class:`DeadlineError`, :class:`OutOfTimeError`, :class:`IndexNotFoundError`,
  :class:`GuardUnavailableError`); :class:`WaitingError` and its kinds (:class:`BusyWriteError`,
  :class:`HeldBehindError`) did not fail at all: they wait for another worker's hold to end.
* :class:`AuthError`: Pinecone refused the API key (401/403). Treated as transient after one
  refresh of the key, never as poison.

:class:`FailureKind` is how one Pinecone call failed, as :func:`vector_relay.pinecone.errors.classify`
reads Pinecone's HTTP status; the ingest runner turns each kind into one of the families above
(REJECTED into poison once the request is split down to the message at fault).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

# Longest `error_detail` a dead-letter message carries. SQS counts attributes toward the message
# size limit, and an operator reads the detail by eye: the first problems are the useful ones.
MAX_DETAIL_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a message: a stable machine code, where, and a sentence for people."""

    code: str
    location: str
    message: str

    def describe(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class VectorRelayError(Exception):
    """Base class of the project's own errors."""


class PoisonMessageError(VectorRelayError):
    """A message that must not be retried. ``problems`` lists every reason found, in order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("a poison message needs at least one problem")
        super().__init__(self.detail)

    @property
    def error_code(self) -> str:
        """The code of the first problem: the one an operator filters the DLQ by."""
        return self.problems[0].code

    @property
    def error_codes(self) -> tuple[str, ...]:
        """Every distinct code, in order of first appearance."""
        return tuple(dict.fromkeys(p.code for p in self.problems))

    @property
    def detail(self) -> str:
        """Every reason, one per line, cut to :data:`MAX_DETAIL_CHARS` with a count of what was cut."""
        lines = [f"[{p.code}] {p.describe()}" for p in self.problems]
        return join_within(lines, MAX_DETAIL_CHARS)


class TransientError(VectorRelayError):
    """A failure that may succeed on redelivery."""


class AuthError(TransientError):
    """Pinecone refused the API key (HTTP 401/403)."""


class WaitingError(TransientError):
    """The message did not fail: it waits for another worker's hold on a record to end, directly or
    behind an earlier write of its namespace. ``retry_at`` (epoch seconds) is when, if known.

    Waiting is never a failure: on its last delivery such a message is sent again (requeued), not
    dead-lettered as ``retries_exhausted``.
    """

    def __init__(self, message: str, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class BusyWriteError(WaitingError):
    """Another invocation holds the record; ``retry_at`` (epoch seconds) is when its hold ends, if known."""


class HeldBehindError(WaitingError):
    """Kept in order behind an earlier write of its namespace that waits for another worker's hold.

    The message itself did not fail; it is retried (or requeued on its last delivery) with the write
    it waits for, never after it. ``retry_at`` is filled in when the batch is settled."""


class DeadlineError(TransientError):
    """The invocation ran out of time before this message's request could run."""


class OutOfTimeError(TransientError):
    """Too little of the invocation is left for even the briefest AWS call; it was not made."""


class IndexNotFoundError(TransientError):
    """The index host answered 404 for the index itself (wrong host, deleted index): a deployment problem."""


class GuardUnavailableError(TransientError):
    """DynamoDB could not be asked; the writes it guards are retried by SQS."""


class ConfigurationError(VectorRelayError):
    """The function's configuration is missing or inconsistent. Raised at first use, with the variable's name."""


class FailureKind(enum.Enum):
    """How a Pinecone call failed (:func:`vector_relay.pinecone.errors.classify` says which status is which)."""

    REJECTED = "rejected"
    AUTH = "auth"
    TRANSIENT = "transient"
    DEADLINE = "deadline"
    INDEX_NOT_FOUND = "index_not_found"  # 404 from the data plane, not about a namespace: wrong host, deleted index


def join_within(lines: list[str], limit: int) -> str:
    """Join ``lines`` with newlines; past ``limit`` characters keep whole lines and say how many were cut."""
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 + len(f"... and {len(lines) - index} more") > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join([*kept, f"... and {len(lines) - len(kept)} more"])[:limit]
