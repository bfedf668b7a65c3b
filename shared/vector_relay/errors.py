"""The project's error families. Every failure a worker meets is one of these three.

* :class:`PoisonMessageError`: the message can never succeed as sent. It goes to the dead-letter
  queue on first receive, with every reason, and is acknowledged.
* :class:`TransientError`: it may succeed later (throttling, 5xx, timeouts, connection trouble).
  The message is reported as a batch item failure and SQS redelivers it.
* :class:`AuthError`: Pinecone refused the API key (401/403). Treated as transient after one
  refresh of the key, never as poison.
"""

from __future__ import annotations

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


class ConfigurationError(VectorRelayError):
    """The function's configuration is missing or inconsistent. Raised at first use, with the variable's name."""


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
