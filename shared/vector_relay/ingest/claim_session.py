"""The claim session: one invocation's claims, made in the background while its batch is being read.

:class:`ClaimSession` queues each validated message's writes per namespace and has the
:class:`~vector_relay.ingest.version_guard.VersionGuard` claim them in groups: first each with a
conditional put and no read (a record nobody holds is claimed in one round trip), then the records
that refuses by reading and deciding under the namespace's claim lock, taken when such work arrives
and dropped once none is left.

Where the guard's client writes requests itself (:class:`~vector_relay.ingest.dynamodb_json.JsonDynamoDB`
over kept-alive connections), the session is *pumped*: the handler's thread sends each group's first
request and reads its answer between two messages, once it has come. A claim thread that needed the
interpreter's lock while the handler validated waited up to Python's 5 ms switch interval for it, at
each send and each answer; pumped, none does. Groups with a refused record (more round trips: the
rest sent again, the refused ones read under the lock) go on in a claim thread from the answer read,
and from the seal on claim threads read the answers still to come while the batch is planned.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from vector_relay import tracing
from vector_relay.errors import GuardUnavailableError
from vector_relay.ingest.guard_records import LOCK_SECONDS, ClaimLock, GuardedWrite, Lease, SentClaim, Verdict

MAX_GROUP = 100  # records claimed together: one read, four writes
GROUPS_IN_FLIGHT = 2  # groups of one namespace claimed at once (their records are distinct)
SEALED_GROUPS_IN_FLIGHT = 4  # once the batch is read, the handler waits for the last groups: they go at once
SEAL_WAIT_SECONDS = 0.005  # the most the seal waits for them to be sent (one switch interval; threads may be busy)
# Pumped, a group leaves between two messages only once this many records wait (the rest go at the seal): where
# answers come back at once, each message would otherwise be a request of its own (2026-12-07, a stand-in answering
# at once: 1,010 requests per 1,000 one-record messages, 0.78x the unguarded throughput instead of 0.89x).
PUMPED_MIN_RECORDS = 25


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
        first: SentClaim | None = ...,
    ) -> tuple[set[tuple[str, str]], list[GuardedWrite]]: ...
    def _send_blind(
        self, namespace: str, writes: Sequence[GuardedWrite], lease: Lease, now_ms: int | None = ...
    ) -> SentClaim: ...
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
class _Flight:
    """A claim group whose first request the handler's thread sent between two messages; its answer is read
    there too, between later messages, once it has come (or by a claim thread, once the batch is sealed)."""

    group: list[_Submission]
    ids: set[str]
    sent: SentClaim
    timing: AbstractContextManager[tracing.Span]
    span: tracing.Span


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
    flights: list[_Flight] = field(default_factory=list)  # sent by the handler's thread, answers not read yet
    queued: int = 0  # writes in the queue


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
        *,
        pumped: bool = False,
    ) -> None:
        self._guard = guard
        # Pumped: the submitting thread sends each group's first request and reads its answer itself, between two
        # submissions (pump), so no claim thread needs the interpreter's lock while the handler validates.
        self._pumped = pumped
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
            state = self._namespaces.get(namespace)
            if state is None:  # made once per namespace (setdefault would make its lock, deque and sets per message)
                state = self._namespaces[namespace] = _NamespaceClaims(namespace)
            ids = {write.record_id for write in writes}
            if state.queue and _joins(state.queue[-1][0], state.tail_ids, writes, ids):
                # Not taken yet: it is claimed with the one before it, under that one's future (one future and
                # one verdict hand-over per run of small messages instead of one per message).
                waiting, shared = state.queue[-1]
                waiting.extend(writes)
                state.queued += len(writes)
                state.tail_ids |= ids
                future = shared
            else:
                future = Future()  # made only here: each one holds a lock
                state.queue.append((list(writes), future))
                state.queued += len(writes)
                previous_tail, state.tail_ids = state.tail_ids, ids  # taking from the front never changes the tail
                if not self._pumped:
                    try:
                        self._start(state)
                    except RuntimeError as error:  # the guard was closed (dependencies rebuilt): retried by SQS
                        if state.workers == 0:
                            state.queue.pop()
                            state.queued -= len(writes)
                            state.tail_ids = previous_tail
                            future.set_exception(GuardUnavailableError(f"version guard closed: {error}"))
        if self._pumped:
            self._pump(state, GROUPS_IN_FLIGHT, PUMPED_MIN_RECORDS)
        return future

    def _pump(self, state: _NamespaceClaims, limit: int, least: int) -> None:
        """On the submitting thread: read the answers that have come, then send queued groups while fewer than
        ``limit`` of the namespace are in flight and at least ``least`` writes wait. A group whose claims all went
        through is settled here; one with records refused (or a failure) goes on in a claim thread, from its
        answer, as a drain would. Until ``least`` writes wait, nothing is read either: a ``select`` per group in
        flight for every message was a tenth of the guard's CPU on the handler's thread, and a request waiting
        for these verdicts (one filled up early) waits at most until the next group leaves, or the seal."""
        if state.queued < least:
            return
        for flight in [flight for flight in state.flights if _ready(flight.sent)]:
            state.flights.remove(flight)
            writes = _writes(flight.group)
            sent = flight.sent
            try:
                answer = sent.answer()
            except Exception as error:  # refused in part, or failed: decided on a claim thread
                self._hand_over(state, flight, SentClaim(sent.now_ms, functools.partial(_raise, error), sent.writes))
                continue
            if sent.writes < len(writes):  # one message of more records than a transaction takes: the rest there
                self._hand_over(state, flight, SentClaim(sent.now_ms, functools.partial(_given, answer), sent.writes))
                continue
            self._landed(state, flight, dict.fromkeys((write.key for write in writes), Verdict.CLAIMED))
        while len(state.flights) + state.workers < limit and state.queued >= least and not self._stop():
            with self._mutex:
                group = self._take(state)
                if not group:
                    return
                ids = _ids(group)
                state.claiming |= ids
            timing = self._spans.span("guard claim")
            span = timing.__enter__()
            span.note(namespace=state.namespace, records=len(ids))
            try:
                sent = self._guard._send_blind(state.namespace, _writes(group), self.lease)
            except Exception as error:  # not sent: the group fails as a drain's would
                sent = SentClaim(int(self._guard.now() * 1000), functools.partial(_raise, error), 0)
                self._hand_over(state, _Flight(group, ids, sent, timing, span), sent)
                continue
            state.flights.append(_Flight(group, ids, sent, timing, span))

    def _landed(self, state: _NamespaceClaims, flight: _Flight, verdicts: dict[tuple[str, str], Verdict]) -> None:
        """A pumped group decided on the submitting thread: its span ends, its submissions get their verdicts."""
        if flight.span.recording:
            flight.span.note(**_verdict_counts(verdicts, _writes(flight.group)))
        flight.timing.__exit__(None, None, None)
        _settle(flight.group, verdicts)
        with self._mutex:
            state.claiming -= flight.ids

    def _hand_over(self, state: _NamespaceClaims, flight: _Flight, first: SentClaim) -> None:
        """Have a claim thread go on with ``flight`` from ``first`` (its answer); here if the guard was closed."""
        with self._mutex:
            state.workers += 1
            try:
                self._tasks.append(self._pool.submit(self._drain, state, (flight, first)))
                return
            except RuntimeError:  # the guard was closed (dependencies rebuilt): finished on this thread
                pass
        self._drain(state, (flight, first))

    def seal(self) -> None:
        """No more submissions. What is still queued gets its drains now (up to :data:`SEALED_GROUPS_IN_FLIGHT`
        groups of a namespace in flight), and the calling thread waits until they have sent their first request
        (at most :data:`SEAL_WAIT_SECONDS`): waiting lets go of the interpreter's lock, so the last groups leave
        at once instead of when the handler next waits, and their answers come back while it plans.

        Pumped, the submitting thread sends the groups still queued itself (up to the same limit), and claim
        threads read the answers of every group in flight from then on."""
        with self._mutex:
            sealed, self._sealed = self._sealed, True
        if self._pumped and not sealed:
            for state in list(self._namespaces.values()):
                self._pump(state, SEALED_GROUPS_IN_FLIGHT, 0)  # every answer come is read, whatever waits
                flights, state.flights = state.flights, []
                for flight in flights:
                    self._hand_over(state, flight, flight.sent)
        with self._mutex:
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
                break
            wait(pending)
        with self._mutex:  # pumped, the last group may have been settled on the submitting thread, not by a drain
            locks = [state.lock for state in self._namespaces.values() if state.lock is not None]
            for state in self._namespaces.values():
                state.lock = None
        for lock in locks:
            self._guard._unlock(lock)

    def _start(self, state: _NamespaceClaims, limit: int = GROUPS_IN_FLIGHT) -> None:  # with the mutex held
        if state.queue and state.workers < limit:
            self._tasks.append(self._pool.submit(self._drain, state))  # raises if the guard was closed
            state.workers += 1
            state.starting += 1

    def _drain(self, state: _NamespaceClaims, flight: tuple[_Flight, SentClaim] | None = None) -> None:
        """Claim what has queued up for ``state``'s namespace; the last drain out drops the claim lock.

        ``flight``: first finish a group the submitting thread sent (pumped), from its answer. Pumped, a drain
        takes more groups only once the session is sealed (until then the submitting thread sends them)."""
        first = flight is None
        if flight is not None:
            carried, answer = flight
            try:
                decided = self._claim(state, carried.group, carried.span, first=answer)
                carried.timing.__exit__(None, None, None)
                _settle(carried.group, decided)
            finally:
                with self._mutex:
                    state.claiming -= carried.ids
        while True:
            with self._mutex:
                group = self._take(state) if not self._pumped or self._sealed else []
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
                ids = _ids(group)
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
        state.queued -= sum(len(writes) for writes, _ in group)
        return group

    def _claim(
        self,
        state: _NamespaceClaims,
        group: list[_Submission],
        span: tracing.Span,
        sent: Callable[[], None] = lambda: None,
        first: SentClaim | None = None,
    ) -> dict[tuple[str, str], Verdict] | GuardUnavailableError:
        """Claim ``group``'s writes: their verdicts (a record not decided is busy), or why the guard could not.

        First without reading (``_claim_blind``); what that refuses is read and decided under the claim lock.
        """
        writes = _writes(group)
        to_read = writes
        lock = None
        try:
            verdicts: dict[tuple[str, str], Verdict] = {}
            if first is not None or not self._stop():  # a request sent already: its answer is read whatever happens
                claimed, to_read = self._guard._claim_blind(
                    state.namespace, writes, self.lease, self._stop, sent, first=first
                )
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


def _writes(group: list[_Submission]) -> list[GuardedWrite]:
    return [write for submitted, _ in group for write in submitted]


def _ids(group: list[_Submission]) -> set[str]:
    return {write.record_id for submitted, _ in group for write in submitted}


def _ready(sent: SentClaim) -> bool:
    """Whether a pumped request's answer has come (one that cannot say is read by a claim thread at the seal)."""
    ready: Callable[[], bool] | None = getattr(sent.answer, "ready", None)
    return ready is not None and ready()


def _raise(error: BaseException) -> NoReturn:
    raise error


def _given[T](answer: T) -> T:
    return answer


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
    return -(-state.queued // MAX_GROUP)


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
