"""Read-your-writes: a query with ``min_lsn`` is asked again until the index has reached it, or time runs out.

Pinecone numbers every write of a namespace with a log sequence number (LSN) and says with each query
how far the namespace's index has got (``x-pinecone-max-indexed-lsn``, :attr:`QueryResult.indexed_lsn`);
a query reflects a write when that is at or past the write's LSN (docs.pinecone.io, "Check data
freshness"). A query that carries ``min_lsn`` is asked again while its answer is behind it, after a
jittered back-off (:class:`Pacing`: 50 ms doubling to 1 s), as long as the invocation's deadline
leaves :data:`~vector_relay.deadline.MIN_REQUEST_SECONDS` for another attempt after the wait. It is
then answered with its last matches and whether they are fresh: never a stale answer that says
nothing. Its ``read_units`` are those of every attempt: each was a query Pinecone billed. Over gRPC
Pinecone's SDK reads no LSN (``indexed_lsn`` None): nothing to wait for, so the first answer goes
back at once as not fresh.

Each attempt holds one of the batch's Pinecone slots only while it runs, never while it waits: a
waiting query does not hold back the other queries of its batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aws_lambda_powertools import Logger

from vector_relay.deadline import MIN_REQUEST_SECONDS, Deadline
from vector_relay.errors import FailureKind
from vector_relay.pinecone.data_plane import QueryResult
from vector_relay.pinecone.errors import PineconeRequestError

logger = Logger(child=True)

FIRST_DELAY_SECONDS = 0.05
MAX_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Pacing:
    """How long to wait before asking again: the ``retry``-th wait (0, 1, ...) is drawn between half and
    all of ``first * 2**retry``, capped at ``cap``. ``sleep`` and ``rng`` are injected by tests."""

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)  # back-off jitter, not a secret
    clock: Callable[[], float] = time.time  # when an answer came (epoch seconds): the freshness metric's end
    first: float = FIRST_DELAY_SECONDS
    cap: float = MAX_DELAY_SECONDS

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(retry, 32))
        return self.rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class Answer:
    """A query's last result, and whether it reached the query's ``min_lsn`` (None: the query set none)."""

    result: QueryResult
    fresh: bool | None = None
    at: float = 0.0  # when the last attempt's answer came (epoch seconds; 0: not recorded)


def reached(indexed_lsn: int | None, min_lsn: int) -> bool:
    """Whether an answer read at ``indexed_lsn`` reflects every write up to ``min_lsn`` (None: unknown, so not)."""
    return indexed_lsn is not None and indexed_lsn >= min_lsn


async def query_until_fresh(
    attempt: Callable[[], Awaitable[QueryResult | PineconeRequestError]],
    min_lsn: int | None,
    deadline: Deadline,
    slots: asyncio.Semaphore,
    pacing: Pacing,
) -> Answer | PineconeRequestError:
    """Ask once (``attempt``: one query to Pinecone), and again while the answer is behind ``min_lsn``.

    The first attempt's failure is the query's (the caller answers or retries it as before); a later
    attempt's failure ends the waiting with the answer already in hand, not fresh. The answer's
    ``read_units`` add up every attempt's.
    """
    first = await _in_slot(attempt, deadline, slots)
    if isinstance(first, PineconeRequestError):
        return first
    if min_lsn is None:
        return Answer(first, at=pacing.clock())
    result, retry, read_units = first, 0, first.read_units
    while result.indexed_lsn is not None and not reached(result.indexed_lsn, min_lsn):
        wait = pacing.delay(retry)
        if deadline.left() - wait < MIN_REQUEST_SECONDS:
            break  # no room for another attempt after the wait: answer with what the index shows now
        await pacing.sleep(wait)
        retry += 1
        again = await _in_slot(attempt, deadline, slots)
        if isinstance(again, PineconeRequestError):
            logger.info(
                "a query asked again for freshness failed; answered with the last result",
                extra={"kind": again.kind.value, "retries": retry},
            )
            break
        result = again
        if again.read_units is not None:
            read_units = (read_units or 0) + again.read_units
    fresh = reached(result.indexed_lsn, min_lsn)
    return Answer(dataclasses.replace(result, read_units=read_units), fresh=fresh, at=pacing.clock())


async def _in_slot(
    attempt: Callable[[], Awaitable[QueryResult | PineconeRequestError]], deadline: Deadline, slots: asyncio.Semaphore
) -> QueryResult | PineconeRequestError:
    async with slots:
        if deadline.left() < MIN_REQUEST_SECONDS:
            return PineconeRequestError(FailureKind.DEADLINE, "the invocation's deadline is too close to start")
        return await attempt()
