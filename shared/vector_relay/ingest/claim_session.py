"""The claim session: one invocation's claims, made in the background while its batch is being read.

:class:`ClaimSession` queues each validated message's writes per namespace and has the
:class:`~vector_relay.ingest.version_guard.VersionGuard` claim them in groups: first each with a
conditional put and no read (a record nobody holds is claimed in one round trip), then the records
that refuses by reading and deciding under the namespace's claim lock, taken when such work arrives
and dropped once none is left.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

from vector_relay import tracing
from vector_relay.errors import GuardUnavailableError
from vector_relay.ingest.guard_records import LOCK_SECONDS, ClaimLock, GuardedWrite, Lease, Verdict

MAX_GROUP = 100  # records claimed together: one read, four writes
GROUPS_IN_FLIGHT = 2  # groups of one namespace claimed at once (their records are distinct)
SEALED_GROUPS_IN_FLIGHT = 4  # once the batch is read, the handler waits for the last groups: they go at once
SEAL_WAIT_SECONDS = 0.005  # the most the seal waits for them to be sent (one switch interval; threads may be busy)


class _Claimer(Protocol):
    """What a session needs of its :class:`~vector_relay.ingest.version_guard.VersionGuard`: its lock, claim, clock."""

    def now(self) -> float: ...
    def _lock(self, namespace: str, stop: Callable[[], bool] = ...) -> ClaimLock | None: ...
    def _unlock(self, lock: ClaimLock) -> None: ...
    def _claim_blind(
        self,
        namespace: str,
        writes: Sequence[GuardedWrite],
        lease: Lease,
        stop: Callable[[], bool],
        sent: Callable[[], None] = ...,
    ) -> tuple[set[tuple[str, str]], list[GuardedWrite]]: ...
    def _claim_locked(
        self,
        namespace: str,
        writes: Sequence[GuardedWrite],
        lease: Lease,
        lock: ClaimLock,
        stop: Callable[[], bool] = ...,
        held_until: dict[tuple[str, str], float] | None = None,
    ) -> dict[tuple[str, str], Verdict]: ...


type _Submission = tuple[list[GuardedWrite], Future[dict[tuple[str, str], Verdict]]]


@dataclass(slots=True)
class _NamespaceClaims:
    namespace: str
    queue: deque[_Submission] = field(default_factory=deque)
    workers: int = 0  # drains running for this namespace
    claiming: set[str] = field(default_factory=set)  # record ids being claimed right now
    lock: ClaimLock | None = None
    locking: threading.Lock = field(default_factory=threading.Lock)
    gave_up: bool = False  # the lock stayed taken: every later claim of this invocation is busy
    tail_ids: set[str] = field(default_factory=set)  # the record ids of the last queued submission (queue[-1])
    starting: int = 0  # drains started that have not taken a group yet
    unsent: int = 0  # groups taken whose first request is not written yet


class ClaimSession:
    """One invocation's claims, made in the background while the batch is still being read.

    :meth:`submit` hands over a message's writes as soon as it is validated and returns a future
    of their verdicts. Each namespace's submissions are claimed in order, in groups of up to
    :data:`MAX_GROUP` records, :data:`GROUPS_IN_FLIGHT` groups at a time (a record being claimed
    holds back later submissions with the same record); the claim lock is taken when a group has
    records to read (those its blind claims did not get) and dropped once no work is left. The
    pool runs ``guard.concurrency`` groups at once over all namespaces. A record may be claimed
    again in the same session with a higher version (or the same version and another operation):
    the session's own lease does not stand in its way.
    """

    def __init__(
        self,
        guard: _Claimer,
        pool: ThreadPoolExecutor,
        lease: Lease,
        stop: Callable[[], bool],
        spans: tracing.SpanLog = tracing.NO_SPANS,
    ) -> None:
        self._guard = guard
        self._pool = pool
        self.lease = lease
        self._stop = stop
        self._spans = spans  # one "guard claim" span per group, timed on the pool's threads
        self._mutex = threading.Lock()
        self._progress = threading.Condition(self._mutex)  # a drain took its group, or sent its first request
        self._namespaces: dict[str, _NamespaceClaims] = {}
        self._tasks: list[Future[None]] = []
        self._sealed = False
        self.held_until: dict[tuple[str, str], float] = {}  # busy records: when the hold on them ends

    def submit(self, namespace: str, writes: Sequence[GuardedWrite]) -> Future[dict[tuple[str, str], Verdict]]:
        """Claim ``writes`` (distinct record ids of ``namespace``); the future holds each one's verdict.

        Writes that join a submission still waiting share its future, which then holds both's verdicts.

        The future raises :class:`GuardUnavailableError` if DynamoDB could not be asked.
        """
        with self._mutex:
            if self._sealed:
                raise RuntimeError("claim session already closed")
            state = self._namespaces.setdefault(namespace, _NamespaceClaims(namespace))
            ids = {write.record_id for write in writes}
            if state.queue and _joins(state.queue[-1][0], state.tail_ids, writes, ids):
                # Not taken yet: it is claimed with the one before it, under that one's future (one future and
                # one verdict hand-over per run of small messages instead of one per message).
                waiting, shared = state.queue[-1]
                waiting.extend(writes)
                state.tail_ids |= ids
                return shared
            future: Future[dict[tuple[str, str], Verdict]] = Future()  # made only here: each one holds a lock
            state.queue.append((list(writes), future))
            previous_tail, state.tail_ids = state.tail_ids, ids  # taking from the front never changes the tail
            try:
                self._start(state)
            except RuntimeError as error:  # the guard was closed (dependencies rebuilt): retried by SQS
                if state.workers == 0:
                    state.queue.pop()
                    state.tail_ids = previous_tail
                    future.set_exception(GuardUnavailableError(f"version guard closed: {error}"))
        return future

    def seal(self) -> None:
        """No more submissions. What is still queued gets its drains now (up to :data:`SEALED_GROUPS_IN_FLIGHT`
        groups of a namespace in flight), and the calling thread waits until they have sent their first request
        (at most :data:`SEAL_WAIT_SECONDS`): waiting lets go of the interpreter's lock, so the last groups leave
        at once instead of when the handler next waits, and their answers come back while it plans."""
        with self._mutex:
            self._sealed = True
            for state in self._namespaces.values():
                with contextlib.suppress(RuntimeError):  # the guard was closed: the drains running finish the rest
                    for _ in range(_queued_groups(state)):  # a drain for each group still queued, within the limit
                        self._start(state, SEALED_GROUPS_IN_FLIGHT)
            self._progress.wait_for(
                lambda: all(not state.starting and not state.unsent for state in self._namespaces.values()),
                timeout=SEAL_WAIT_SECONDS,
            )

    def close(self) -> None:
        """Seal, wait until every claim is made and every claim lock dropped."""
        self.seal()
        while True:
            with self._mutex:
                pending = [task for task in self._tasks if not task.done()]
            if not pending:
                return
            wait(pending)

    def _start(self, state: _NamespaceClaims, limit: int = GROUPS_IN_FLIGHT) -> None:  # with the mutex held
        if state.queue and state.workers < limit:
            self._tasks.append(self._pool.submit(self._drain, state))  # raises if the guard was closed
            state.workers += 1
            state.starting += 1

    def _drain(self, state: _NamespaceClaims) -> None:
        """Claim what has queued up for ``state``'s namespace; the last drain out drops the claim lock."""
        first = True
        while True:
            with self._mutex:
                group = self._take(state)
                if first:
                    state.starting -= 1
                    first = False
                    self._progress.notify_all()
                if not group:
                    state.workers -= 1
                    lock = None
                    if not state.queue and not state.claiming:  # nothing left to claim: let others in
                        lock, state.lock = state.lock, None
                    break
                ids = {write.record_id for submitted, _ in group for write in submitted}
                state.claiming |= ids
                state.unsent += 1
                with contextlib.suppress(RuntimeError):  # the guard is closing: this drain goes on alone
                    self._start(state)  # the next group can be claimed alongside, if there is one
            sent = _Once(functools.partial(self._sent, state))
            try:
                with self._spans.span("guard claim") as span:
                    span.note(namespace=state.namespace, records=len(ids))
                    decided = self._claim(state, group, span, sent)
                _settle(group, decided)  # after the span: a request waiting for these starts after it ended
            finally:
                sent()  # not sent at all (stopped, or failed before): no longer waited for either
                with self._mutex:
                    state.claiming -= ids
        if lock is not None:
            self._guard._unlock(lock)

    def _sent(self, state: _NamespaceClaims) -> None:
        with self._mutex:
            state.unsent -= 1
            self._progress.notify_all()

    @staticmethod
    def _take(state: _NamespaceClaims) -> list[_Submission]:
        """The next submissions to claim together, in order: up to :data:`MAX_GROUP` writes, no record twice.

        A submission with a record that is being claimed right now waits, and so does everything after it.
        """
        group: list[_Submission] = []
        seen: set[str] = set()
        while state.queue:
            ids = {write.record_id for write in state.queue[0][0]}
            if not state.claiming.isdisjoint(ids) or not seen.isdisjoint(ids):
                break
            if group and len(seen) + len(ids) > MAX_GROUP:
                break
            group.append(state.queue.popleft())
            seen |= ids
        return group

    def _claim(
        self,
        state: _NamespaceClaims,
        group: list[_Submission],
        span: tracing.Span,
        sent: Callable[[], None] = lambda: None,
    ) -> dict[tuple[str, str], Verdict] | GuardUnavailableError:
        """Claim ``group``'s writes: their verdicts (a record not decided is busy), or why the guard could not.

        First without reading (``_claim_blind``); what that refuses is read and decided under the claim lock.
        """
        writes = [write for submitted, _ in group for write in submitted]
        to_read = writes
        lock = None
        try:
            verdicts: dict[tuple[str, str], Verdict] = {}
            if not self._stop():
                claimed, to_read = self._guard._claim_blind(state.namespace, writes, self.lease, self._stop, sent)
                verdicts = dict.fromkeys(claimed, Verdict.CLAIMED)
            if to_read and not self._stop():
                with state.locking:
                    if (state.lock is None or state.lock.lost) and not state.gave_up:
                        state.lock = self._guard._lock(state.namespace, self._stop)
                        state.gave_up = state.lock is None  # held by another worker for long: try again later
                    lock = state.lock
                if lock is not None and not lock.lost:
                    held: dict[tuple[str, str], float] = {}
                    verdicts |= self._guard._claim_locked(state.namespace, to_read, self.lease, lock, self._stop, held)
                    with self._mutex:
                        self.held_until |= held
                elif state.gave_up:  # another worker's lock: it ends within LOCK_SECONDS
                    span.note(lock="held by another worker")
                    with self._mutex:
                        self.held_until |= dict.fromkeys(
                            (write.key for write in to_read), self._guard.now() + LOCK_SECONDS
                        )
        except Exception as error:
            # A claim write may have timed out here yet still be applied later: harmless, since it is
            # applied only if its condition still holds (VersionGuard._claim_blind, _write), so the lock is dropped
            # as usual and the next worker need not wait for it to expire.
            failure = GuardUnavailableError(f"version guard could not claim: {error!r}")
            failure.__cause__ = error
            span.failed(type(error).__name__)
            return failure
        if span.recording:  # counted only for a trace
            span.note(**_verdict_counts(verdicts, writes))
        return verdicts


class _Once:
    """Calls ``action`` the first time it is called, and never again."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()


def _queued_groups(state: _NamespaceClaims) -> int:
    """How many groups the submissions queued make at least."""
    return -(-sum(len(writes) for writes, _ in state.queue) // MAX_GROUP)


def _joins(waiting: list[GuardedWrite], waiting_ids: set[str], writes: Sequence[GuardedWrite], ids: set[str]) -> bool:
    """Whether ``writes`` (record ``ids``) may join the last submission still waiting (``waiting_ids``): room in
    one group, no record in both (a record's second write must be claimed after its first, never with it)."""
    return len(waiting) + len(writes) <= MAX_GROUP and waiting_ids.isdisjoint(ids)


def _settle(group: list[_Submission], decided: dict[tuple[str, str], Verdict] | GuardUnavailableError) -> None:
    """Give each submission of ``group`` its records' verdicts (busy where none was decided), or the failure."""
    for submitted, future in group:
        if isinstance(decided, GuardUnavailableError):
            future.set_exception(decided)
        else:
            future.set_result({write.key: decided.get(write.key, Verdict.BUSY) for write in submitted})


def _verdict_counts(verdicts: dict[tuple[str, str], Verdict], writes: Sequence[GuardedWrite]) -> dict[str, int]:
    """How many of a group's records were claimed, stale or busy (for its span)."""
    counts = dict.fromkeys((verdict.value for verdict in Verdict), 0)
    for write in writes:
        counts[verdicts.get(write.key, Verdict.BUSY).value] += 1
    return counts
