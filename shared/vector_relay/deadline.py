"""One clock for an invocation's time: when it must return, and when its Pinecone work must end.

The batch processor (:mod:`vector_relay.sqs.processor`) reads Lambda's time left once and sets
both: AWS calls end before the invocation must return, less :data:`FINISH_SECONDS` for Powertools
to build the response (:func:`invocation_deadline`, read by every AWS client factory through
:func:`aws_time_left`); Pinecone work ends ``DEADLINE_MARGIN_MS`` before that (a :class:`Deadline`
handed to the service). Both are points on the monotonic clock (tests freeze it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# The least time a Pinecone request is started with: less than this left, it is not sent.
MIN_REQUEST_SECONDS = 1.0


class Deadline:
    """A point in time (monotonic) by which all Pinecone work must be finished."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = clock() + seconds

    def left(self) -> float:
        return self._at - self._clock()


# Kept back from the Lambda's time for Powertools to build the response and flush the metrics.
FINISH_SECONDS = 0.5

# When the current invocation must return, and the clock that says so (tests freeze it).
_invocation_ends: ContextVar[tuple[float, Callable[[], float]] | None] = ContextVar("invocation_ends", default=None)


@contextmanager
def invocation_deadline(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """AWS calls made inside (and in tasks and ``to_thread`` calls started inside) end within ``seconds``."""
    token = _invocation_ends.set((clock() + seconds, clock))
    try:
        yield
    finally:
        _invocation_ends.reset(token)


def aws_time_left() -> float | None:
    """Seconds until the current invocation must return; None outside an invocation."""
    current = _invocation_ends.get()
    if current is None:
        return None
    ends, clock = current
    return ends - clock()
