"""An explicit-state model checker of the version guard's protocol (issue 32, item 3).

    .venv/bin/python -m tools.guard_model --protocol new            # seconds: no violation (exit 0)
    .venv/bin/python -m tools.guard_model --protocol old            # the shortest counterexample (exit 1)
    .venv/bin/python -m tools.guard_model --protocol old --index-only  # ... to a wrong index (I2 alone)
    .venv/bin/python -m tools.guard_model --protocol new --no-lock  # no claim lock at all: still none
    .venv/bin/python -m tools.guard_model --protocol new --deep     # minutes, by hand: larger bounds
    .venv/bin/python -m tools.guard_model --protocol blind          # the proposed claim without a read first

It builds every state a small, finite model of the protocol can reach, breadth first and each
state once, checks the invariants on every transition and at every quiescent state, and prints a
shortest path to the first violation as numbered steps. docs/ordering.md says what the protocol
is and why it is correct; this checks that argument over every interleaving of small
configurations. It is not a proof for any size.

**Protocols.** ``new`` is today's: each claim is a compare-and-set, applied only if the record's
item is still exactly as the worker read it (``_unchanged_since`` in
``shared/vector_relay/ingest/version_guard.py``). ``old`` is the unconditional claim it replaced
on 2026-12-07 (``BatchWriteItem``: ``git show 3e0224f~1:shared/vector_relay/ingest/version_guard.py``),
whose safety rested on the claim lock and on DynamoDB applying a claim before the lock can expire.
Nothing in the model bounds when DynamoDB applies a write, so the old protocol fails; the new one
must not, with the claim lock or without it (``lock=False``, ``--no-lock``: no lock at all, which
is stronger than a lock whose exclusion breaks). tests/unit/test_guard_model.py also shows the old
protocol safe when DynamoDB applies every claim at once (:data:`NO_DYNAMODB_DELAY`) but not
without the lock, and the new one broken without its stale check, its lease check, or a lease
that covers the clock skew (the mutations in :class:`Config`): the checker can fail.

``blind`` is a proposal (issue 32's guard cost, not built yet): each invocation first writes its
claim without reading and without the lock, on a condition DynamoDB checks when it applies the
write: the item is absent, or records no higher version under a lease that ended before the
sender's clock at sending (the ``:now`` of the request, which a late write carries unchanged). A
refused blind claim falls back to ``new``'s path (lock, read, compare-and-set). It saves the read
(and the lock) for records nobody else holds, the common case. The stale and lease mutations
break its condition too.

**Transitions**, and the real step each stands for (files under ``shared/vector_relay/ingest/``):

* *receive*: SQS delivers a message (one versioned upsert or delete of one record) to an idle
  worker: any message not yet acknowledged, in any order, also one that another worker still
  handles (a duplicate delivery, a fault). The invocation gets a fresh token and its lease: until
  its clock + ``lease_ticks`` (``VersionGuard.lease``, version_guard.py).
* *blind claim* (``blind`` only, before anything else): a conditional put as above, applied,
  refused (the invocation goes on to the lock and the read), applied with a copy held, or held.
* *lock*: the namespace's claim lock (``VersionGuard._lock``): taken when absent or expired by the
  worker's clock, for ``lock_ticks``. A worker that finds it held waits (giving up, busy, leaves
  the state as it found it but for one delivery: nothing it could not do without the message).
* *read*: the record's item and the landed markers, strongly consistent, and the verdict
  (``VersionGuard._claim_locked``): stale (a higher version recorded: acknowledged), busy (another
  invocation's live, unreleased lease on another version or operation: back to the queue), a
  duplicate joining the lease, or a claim.
* *write claim* (``VersionGuard._write``): after renewing the lock when less than
  ``lock_margin`` of it is left (``_renew``), or giving up when it is no longer this worker's: new,
  a ``TransactWriteItems`` put on condition that the item is as read; old, an unconditional put.
  DynamoDB applies it now (a refused condition: busy), or now and a copy later (*twice*), or holds
  it (*late*: applied at any later step or never; the worker times out, its message goes back,
  its lock is left to expire). A held conditional write checks its condition when applied.
* *send* (``runner.py``): Pinecone applies the write and it landed; or the request times out and
  Pinecone holds the write (the message goes back, the lease is kept); or it is applied after an
  attempt that Pinecone still holds (an uncertain landing: acknowledged, no landed marker).
* *release*: the landed marker of the invocation's token (``VersionGuard.release``), or it is lost.
* *acknowledge*: the message is deleted from the queue.
* *crash*, at every step from the lock on (without the lock, from the read on): its message goes
  back to the queue, its claim lock is left to expire, whatever it sent stays in flight. (Before
  that, a crash leaves the state as the worker found it but for one delivery.)
* the environment: DynamoDB applies a claim it holds; Pinecone applies a write it holds; the
  clock ticks.

**Time.** A global clock of integer ticks; each worker's clock is the global one plus a fixed
skew in [-``skew_bound``, ``skew_bound``]. Leases and locks end at a time of their writer's clock
and each reader judges them by its own. The one timing assumption left is the lease's: a write
sent under a lease is applied by Pinecone, if ever, before the fastest clock (global +
``skew_bound``) passes the lease's end (``WRITE_VERSION_LEASE_SLACK_SECONDS`` covers the skew).
A tick drops a held Pinecone write whose time is over (never applied), and the clock does not
tick past that time while an invocation that may still send is running: that is Lambda's timeout
(the invocation may crash before it, which is what a killed one does). ``lease_ticks`` must exceed
2 x ``skew_bound``. Only comparisons of times matter, so states store times relative to the clock
and every time all clocks have passed as one value: time needs no bound.

**Invariants.** (I1) On every transition, no record's recorded version decreases (absent to any
version is fine). (I2) At every quiescent state (every message acknowledged, no invocation
running, Pinecone holding no write), the index holds each record's highest-versioned write: that
version after an upsert, nothing after a delete. Claims DynamoDB still holds at a quiescent state
can change only the guard's items, not the index: the exploration goes on from there, and I1
checks their application. A configuration that never reaches a quiescent state checks nothing:
the result counts them.

**Bounds.** Faults (a duplicate delivery, a crash, a claim applied late or twice, a Pinecone write
held, a lost landed marker) are limited per run by ``fault_budget``, each possible at every step;
deliveries are not limited (a run's state space is finite anyway). The default bound, for ``make
test``: one record written twice (v1 upsert, v2 delete), two workers whose clocks are two ticks
apart, the claim lock, one fault per run: about a second. ``--deep`` runs a suite, one larger
dimension at a time (:data:`DEEP`: two records, three versions, a duplicated message, three
workers, a longer lease with two faults, three faults): a few minutes, and about a kilobyte of
memory per state (a gigabyte for the largest, a million states).

**Abstracted away.** A message carries one write of one record and an invocation handles one
message (batches, ``planning.coalesce``, claim groups and the claim session's concurrency are
steps inside one worker). One namespace, so one claim lock. The item and the landed markers are
read in one step (markers are only ever added, so reading them later tells only more). The lock's
own writes (take, renew, drop) are applied at once: the new protocol does not rely on the lock.
A late landed marker is a worker that releases later, which the interleavings cover. A message
back in the queue may be received again at once (SQS waits for the visibility timeout: the model
allows more). Busy messages requeued on their last delivery, the guard's TTL (first_sent_at), the
DLQ and the reconciler are not modelled. Tokens are renamed in order of first appearance; landed
markers of tokens on no live lease and held claims whose condition can no longer hold are
dropped; idle workers with the same skew and identical messages are interchangeable.

Kept in one file of ~900 lines (a tenth of them this docstring): one model, whose transitions,
canonical form and traces are read together.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

UPSERT = "upsert"
DELETE = "delete"
GONE = -1  # the token of a claim lock whose invocation has ended
ENDED = -1  # less the skew bound: the relative time of every lease or lock all clocks have passed

# Where an invocation is: the step it takes next.
BLIND = "blind"  # received (protocol "blind"): writes its claim without reading first, without the lock
START = "start"  # received: takes the claim lock next
LOCKED = "locked"  # reads the record and decides next
DECIDED = "decided"  # writes its claim next
CLAIMED = "claimed"  # sends its write to Pinecone next
SENT = "sent"  # writes its landed marker next
RELEASED = "released"  # acknowledges its message next
MAY_SEND = frozenset({BLIND, START, LOCKED, DECIDED, CLAIMED})  # a Pinecone write may still be sent

_CRASH_POINT = {
    LOCKED: "holding the claim lock, before reading the record",
    DECIDED: "after reading, before writing its claim",
    CLAIMED: "after its claim was applied, before sending to Pinecone",
    SENT: "after Pinecone applied its write, before the landed marker",
    RELEASED: "after its landed marker, before acknowledging",
}


class Write(NamedTuple):
    """What one message asks for: a version of one record, upserted or deleted."""

    record: str
    version: int
    operation: str


class Claim(NamedTuple):
    """A record's item in the guard's table: version, operation and lease (its end, its tokens)."""

    version: int
    operation: str
    until: int
    tokens: tuple[int, ...]  # sorted


class Message(NamedTuple):
    visible: bool  # in the queue, not being handled
    acked: bool
    deliveries_left: int  # -1: no bound


class Invocation(NamedTuple):
    message: int
    token: int
    until: int  # its lease's end, by its own clock
    phase: str
    read: Claim | None  # the item as read: the condition of a compare-and-set claim
    claim: Claim | None  # the item it writes


class GuardWrite(NamedTuple):
    """A claim DynamoDB holds: applied at some later step, or never."""

    record: int
    expected: Claim | None
    new: Claim
    conditional: bool
    # A blind claim's condition: the item absent, or no higher version under a lease ended before this time of
    # its sender's clock (its ``:now``); None for a compare-and-set or unconditional claim.
    before: int | None = None


class IndexWrite(NamedTuple):
    """A write Pinecone holds (its request timed out): applied at some later step, or never."""

    record: int
    version: int
    operation: str
    deadline: int  # the last tick at which it may still be applied (the lease's timing assumption)


class Lock(NamedTuple):
    token: int
    until: int  # by the holder's clock


class State(NamedTuple):
    clock: int
    messages: tuple[Message, ...]
    workers: tuple[Invocation | None, ...]
    guard: tuple[Claim | None, ...]  # per record
    landed: frozenset[int]  # tokens with a landed marker
    lock: Lock | None
    guard_writes: tuple[GuardWrite, ...]  # a multiset, sorted
    index_writes: tuple[IndexWrite, ...]  # a multiset, sorted
    indexed: tuple[int | None, ...]  # per record: the version the index holds, None when absent
    minted: int  # the next fresh token
    faults_left: int  # -1: no bound


@dataclass(frozen=True, slots=True)
class Faults:
    """Which faults the environment may inject (each one at every step where it can happen)."""

    crash: bool = True
    duplicate_delivery: bool = True  # a message delivered again while a worker still handles it
    claim_late: bool = True  # DynamoDB applies a claim after its client timed out, or never
    claim_twice: bool = True  # DynamoDB applies a claim now and a copy of it later
    pinecone_late: bool = True  # Pinecone applies a timed-out write later (within its lease), or never
    marker_lost: bool = True


NO_DYNAMODB_DELAY = Faults(claim_late=False, claim_twice=False)  # the timing bound the old protocol relied on


@dataclass(frozen=True, slots=True)
class Config:
    protocol: Literal["old", "new", "blind"] = "new"
    writes: tuple[Write, ...] = (Write("a", 1, UPSERT), Write("a", 2, DELETE))  # one message each
    skews: tuple[int, ...] = (-1, 1)  # one per worker
    skew_bound: int = 1
    lease_ticks: int = 3
    lock: bool = True
    lock_ticks: int = 2
    lock_margin: int = 1  # the lock is renewed before a claim when less than this is left of it
    deliveries: int | None = None  # per message (None: no bound)
    fault_budget: int | None = 1  # faults per run (None: no bound)
    faults: Faults = field(default_factory=Faults)
    check_recorded: bool = True  # I1; off: look only for a wrong index (I2)
    # Mutations, to show that the checker can fail:
    stale_check: bool = True  # a write older than the recorded version is dropped
    lease_check: bool = True  # another invocation's live lease on another write makes a write busy
    lease_covers_skew: bool = True  # off: Pinecone may apply a write until the sender's clock passes its lease

    def __post_init__(self) -> None:
        if any(abs(skew) > self.skew_bound for skew in self.skews):
            raise ValueError(f"skews {self.skews} outside [-{self.skew_bound}, {self.skew_bound}]")
        if self.lease_ticks <= 2 * self.skew_bound:
            raise ValueError("lease_ticks must exceed twice the skew bound, or no invocation has time to run")
        for record in self.records:
            writes = {(w.version, w.operation) for w in self.writes if w.record == record}
            if len({version for version, _ in writes}) != len(writes):
                raise ValueError(f"record {record}: a version with two operations (docs/contract.md)")

    @property
    def records(self) -> tuple[str, ...]:
        return tuple(sorted({write.record for write in self.writes}))

    def summary(self) -> str:
        budget = "no bound" if self.fault_budget is None else f"at most {self.fault_budget}"
        return (
            f"messages {', '.join(f'm{n} {_write_text(w)}' for n, w in enumerate(self.writes))}; "
            f"{len(self.skews)} workers, clock skews {', '.join(map(str, self.skews))} (bound {self.skew_bound}); "
            f"lease {self.lease_ticks} ticks; "
            + (
                f"claim lock {self.lock_ticks} ticks (renewed with less than {self.lock_margin} left); "
                if self.lock
                else ""
            )
            + f"faults per run: {budget}"
        )


DEFAULT = Config()
DEEP: tuple[tuple[str, Config], ...] = (
    ("two records", Config(writes=(Write("a", 1, UPSERT), Write("a", 2, DELETE), Write("b", 1, UPSERT)))),
    ("three versions", Config(writes=(Write("a", 1, UPSERT), Write("a", 2, DELETE), Write("a", 3, UPSERT)))),
    ("a duplicated message", Config(writes=(Write("a", 1, UPSERT), Write("a", 2, DELETE), Write("a", 2, DELETE)))),
    ("three workers", Config(skews=(-1, 0, 1))),
    ("a longer lease", Config(lease_ticks=4, fault_budget=2)),
    ("three faults", Config(fault_budget=3)),
)


@dataclass(frozen=True, slots=True)
class Result:
    states: int  # distinct states reached
    transitions: int
    quiescent: int  # distinct quiescent states reached
    depth: int  # the longest of the shortest paths to the states explored
    invariant: str | None = None  # "I1" or "I2" when one is violated
    violation: str | None = None  # what went wrong
    trace: tuple[str, ...] = ()  # the steps from the initial state to the violation
    complete: bool = True  # False when ``limit`` stopped the exploration


def initial_state(config: Config) -> State:
    records = len(config.records)
    deliveries = -1 if config.deliveries is None else config.deliveries
    return State(
        clock=0,
        messages=(Message(True, False, deliveries),) * len(config.writes),
        workers=(None,) * len(config.skews),
        guard=(None,) * records,
        landed=frozenset(),
        lock=None,
        guard_writes=(),
        index_writes=(),
        indexed=(None,) * records,
        minted=0,
        faults_left=-1 if config.fault_budget is None else config.fault_budget,
    )


def explore(config: Config, *, limit: int | None = None) -> Result:
    """Every reachable state, breadth first; stops at the first violation, with a shortest trace to it.

    ``limit``: stop after that many states (the result is then not ``complete``).
    """
    initial = initial_state(config)
    ids: dict[State, int] = {initial: 0}
    states = [initial]
    parents = [-1]
    depths = [0]
    queue = deque([0])
    transitions = quiescent = 0
    while queue:
        if limit is not None and len(states) >= limit:
            return Result(len(states), transitions, quiescent, depths[-1], complete=False)
        at = queue.popleft()
        state = states[at]
        for _, raw in successors(config, state):
            transitions += 1
            successor = canonical(config, raw)
            if config.check_recorded and _lowered(state, successor) is not None:
                path = [*_path(states, parents, at), successor]
                return _found(config, Result(len(states), transitions, quiescent, depths[at] + 1), "I1", path)
            if ids.setdefault(successor, len(states)) != len(states):
                continue  # seen before
            states.append(successor)
            parents.append(at)
            depths.append(depths[at] + 1)
            queue.append(len(states) - 1)
            if is_quiescent(successor):
                quiescent += 1
                if _wrong_outcome(config, successor) is not None:
                    path = _path(states, parents, len(states) - 1)
                    return _found(config, Result(len(states), transitions, quiescent, depths[-1]), "I2", path)
    return Result(len(states), transitions, quiescent, depths[-1])


def is_quiescent(state: State) -> bool:
    return (
        all(message.acked for message in state.messages)
        and all(worker is None for worker in state.workers)
        and not state.index_writes
    )


def _lowered(before: State, after: State) -> int | None:
    """The record whose recorded version went down between ``before`` and ``after`` (I1), if any."""
    for record, (old, new) in enumerate(zip(before.guard, after.guard, strict=True)):
        if old is not None and (new is None or new.version < old.version):
            return record
    return None


def _wrong_outcome(config: Config, state: State) -> str | None:
    """What breaks I2 in quiescent ``state``, if anything."""
    for record, name in enumerate(config.records):
        highest = max((w for w in config.writes if w.record == name), key=lambda w: w.version)
        expected = highest.version if highest.operation == UPSERT else None
        if state.indexed[record] != expected:
            return (
                f"I2: every message is acknowledged and the index holds {_index_text(name, state.indexed[record])}, "
                f"but the highest write of {name} is v{highest.version} {highest.operation}"
            )
    return None


def _path(states: list[State], parents: list[int], at: int) -> list[State]:
    path: list[State] = []
    while at >= 0:
        path.append(states[at])
        at = parents[at]
    return path[::-1]


def _found(config: Config, counts: Result, invariant: str, path: list[State]) -> Result:
    """``counts`` with the violation at the end of ``path`` described, step by step."""
    steps: list[str] = []
    view = _View({}, 0, 0, ENDED - config.skew_bound)
    violation = ""
    for before, target in itertools.pairwise(path):
        text, after = next(step for step in successors(config, before, view) if canonical(config, step[1]) == target)
        steps.append(f"[clock {view.elapsed}] {text}")
        lowered = _lowered(before, after)
        if invariant == "I1" and lowered is not None:
            violation = (
                f"I1: the recorded version of {config.records[lowered]} went down, from "
                f"{_claim_text(before.guard[lowered], view)} to {_claim_text(after.guard[lowered], view)}"
            )
        view = view.after(config, before, after)
    if invariant == "I2":
        violation = _wrong_outcome(config, path[-1]) or ""
    return dataclasses.replace(counts, invariant=invariant, violation=violation, trace=tuple(steps))


@dataclass(frozen=True, slots=True)
class _View:
    """How a trace shows a state's tokens and times: as minted (t0, t1, ...) and on the global clock.

    States store tokens renamed and times relative to their clock (see :func:`canonical`).
    """

    names: dict[int, int]  # a token of the state described -> the number it was minted with
    minted: int  # tokens minted so far
    elapsed: int  # the global clock of the state described
    ended: int  # the relative time that stands for any time every clock has passed

    def token(self, token: int) -> str:
        return f"t{self.names.get(token, self.minted)}"  # one not named yet is being minted

    def time(self, time: int) -> str:
        return "long ago" if time == self.ended else str(time + self.elapsed)

    def after(self, config: Config, before: State, after: State) -> _View:
        """The view of ``canonical(after)``, ``after`` being a successor of ``before`` (this view's state)."""
        _, renamed = _canonical(config, after)
        minted = self.minted + (after.minted > before.minted)
        names = {new: self.names.get(old, self.minted) for old, new in renamed.items()}
        return _View(names, minted, self.elapsed + after.clock, self.ended)


# ---------------------------------------------------------------------------------------- transitions


def successors(config: Config, state: State, view: _View | None = None) -> list[tuple[str, State]]:
    """Every transition from ``state``: what happens, and the state after it (not canonical).

    The text is written only with a ``view`` (for traces): it would cost more than the rest.
    """
    out: list[tuple[str, State]] = []
    _receive(config, state, out, view)
    for worker, invocation in enumerate(state.workers):
        if invocation is not None:
            _invocation_steps(config, state, worker, invocation, out, view)
    _environment(config, state, out, view)
    return out


def _receive(config: Config, state: State, out: list[tuple[str, State]], view: _View | None) -> None:
    skews_seen: set[int] = set()
    for worker, invocation in enumerate(state.workers):
        skew = config.skews[worker]
        if invocation is not None or skew in skews_seen:  # idle workers with one skew are interchangeable
            continue
        skews_seen.add(skew)
        seen: set[tuple[Write, Message]] = set()
        for number, message in enumerate(state.messages):
            if message.acked or message.deliveries_left == 0:
                continue
            if not message.visible and not _may(config.faults.duplicate_delivery, state):
                continue
            write = config.writes[number]
            if (write, message) in seen:  # identical messages are interchangeable
                continue
            seen.add((write, message))
            token = state.minted
            now = state.clock + skew
            until = now + config.lease_ticks
            started = Invocation(number, token, until, _first_phase(config), None, None)
            taken = Message(False, False, max(message.deliveries_left - 1, -1))
            after = (state if message.visible else _spend(state))._replace(
                workers=_put(state.workers, worker, started),
                messages=_put(state.messages, number, taken),
                minted=token + 1,
            )
            text = ""
            if view:
                again = "" if message.visible else ", which another worker still handles (a duplicate delivery)"
                text = (
                    f"w{worker} receives m{number} ({_write_text(write)}){again}: invocation {view.token(token)}, "
                    f"lease until {view.time(until)} (w{worker}'s clock reads {view.time(now)})"
                )
            out.append((text, after))


def _invocation_steps(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    # Before it took the lock (or read, without one) a worker has changed nothing: crashing then
    # leaves the state it found, less one delivery, which can do nothing the state it found could not.
    if _may(config.faults.crash, state) and invocation.phase not in (_first_phase(config), _read_phase(config)):
        text = ""
        if view:
            text = f"w{worker} crashes {_CRASH_POINT[invocation.phase]}: m{invocation.message} back to the queue"
            if state.lock is not None and state.lock.token == invocation.token:
                text += ", its claim lock left to expire"
        out.append((text, _end(_spend(state), worker, invocation, acknowledge=False, unlock=False)))
    if invocation.phase == BLIND:
        _blind_claim(config, state, worker, invocation, out, view)
    elif invocation.phase == START:
        _take_lock(config, state, worker, invocation, out, view)
    elif invocation.phase == LOCKED:
        _read_and_decide(config, state, worker, invocation, out, view)
    elif invocation.phase == DECIDED:
        _write_claim(config, state, worker, invocation, out, view)
    elif invocation.phase == CLAIMED:
        _send(config, state, worker, invocation, out, view)
    elif invocation.phase == SENT:
        _release(config, state, worker, invocation, out, view)
    else:  # RELEASED
        text = f"w{worker} acknowledges m{invocation.message}" if view else ""
        out.append((text, _end(state, worker, invocation, acknowledge=True, unlock=False)))


def _first_phase(config: Config) -> str:
    return BLIND if config.protocol == "blind" else _read_phase(config)


def _read_phase(config: Config) -> str:
    """Where an invocation starts the read-then-compare-and-set path (after a refused blind claim, or at once)."""
    return START if config.lock else LOCKED


def _blind_claim(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    """Claim without reading and without the lock, on condition: the item absent, or holding no higher version
    under a lease ended by the worker's clock. Refused: the read-then-compare-and-set path decides."""
    write = config.writes[invocation.message]
    record = config.records.index(write.record)
    now = state.clock + config.skews[worker]
    claim = Claim(write.version, write.operation, invocation.until, (invocation.token,))
    pending = GuardWrite(record, None, claim, True, now)
    how = ""
    if view:
        how = (
            f"w{worker} writes its claim of {write.record}, {_claim_text(claim, view)}, without reading, if it is "
            f"absent or holds no higher version under a lease ended by {view.time(now)}"
        )
    applied = _applied(config, state.guard[record], pending)
    if applied is None:
        text = f"{how}: refused; w{worker} will read the record" if view else ""
        out.append((text, _step(state, worker, invocation._replace(phase=_read_phase(config)))))
    else:
        claimed = _step(
            state._replace(guard=_put(state.guard, record, applied)), worker, invocation._replace(phase=CLAIMED)
        )
        out.append((f"{how}: applied" if view else "", claimed))
        twice = f"{how}: applied, and DynamoDB holds a copy to apply later" if view else ""
        _applied_twice(config, state, claimed, pending, twice, out)
    _held(config, state, worker, invocation, pending, how, "", out, view)


def _applied_twice(
    config: Config, state: State, claimed: State, pending: GuardWrite, text: str, out: list[tuple[str, State]]
) -> None:
    """The fault: DynamoDB applied the claim (``claimed``) and holds a copy of it to apply later."""
    if _may(config.faults.claim_twice, state):
        out.append((text, _spend(claimed)._replace(guard_writes=_sorted_writes((*claimed.guard_writes, pending)))))


def _held(
    config: Config,
    state: State,
    worker: int,
    invocation: Invocation,
    pending: GuardWrite,
    how: str,
    lock_note: str,
    out: list[tuple[str, State]],
    view: _View | None,
) -> None:
    """The fault: DynamoDB holds the claim (to apply later, or never); the worker times out, its message goes back."""
    if not _may(config.faults.claim_late, state):
        return
    text = ""
    if view:
        text = (
            f"{how}: DynamoDB holds it (to apply later, or never); w{worker} times out: "
            f"m{invocation.message} back to the queue{lock_note}"
        )
    gave_up = _end(_spend(state), worker, invocation, acknowledge=False, unlock=False)
    out.append((text, gave_up._replace(guard_writes=_sorted_writes((*gave_up.guard_writes, pending)))))


def _take_lock(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    now = state.clock + config.skews[worker]
    lock = state.lock
    if lock is not None and lock.until >= now:
        return  # held: the worker waits (or gives up: see the docstring)
    until = now + config.lock_ticks
    text = ""
    if view:
        text = f"w{worker} takes the claim lock until {view.time(until)}"
        if lock is not None:
            text += f" (the one until {view.time(lock.until)} has expired by w{worker}'s clock, {view.time(now)})"
    after = _step(state, worker, invocation._replace(phase=LOCKED))
    out.append((text, after._replace(lock=Lock(invocation.token, until))))


def _read_and_decide(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    write = config.writes[invocation.message]
    record = config.records.index(write.record)
    recorded = state.guard[record]
    now = state.clock + config.skews[worker]
    read = f"w{worker} reads {write.record}: {_claim_text(recorded, view)}" if view else ""
    if config.stale_check and recorded is not None and recorded.version > write.version:
        text = f"{read}; stale: acknowledges m{invocation.message}" if view else ""
        out.append((text, _end(state, worker, invocation, acknowledge=True, unlock=True)))
        return
    new = Claim(write.version, write.operation, invocation.until, (invocation.token,))
    if recorded is not None and recorded.until >= now:
        held = tuple(t for t in recorded.tokens if t != invocation.token and t not in state.landed)
        same = (recorded.version, recorded.operation) == (write.version, write.operation)
        if held and not same and config.lease_check:
            text = ""
            if view:
                text = (
                    f"{read}; busy (a live lease by w{worker}'s clock, {view.time(now)}): "
                    f"m{invocation.message} back to the queue"
                )
            out.append((text, _end(state, worker, invocation, acknowledge=False, unlock=True)))
            return
        if held and same:  # a duplicate joins the lease
            tokens = tuple(sorted((*held, invocation.token)))
            new = Claim(write.version, write.operation, max(recorded.until, invocation.until), tokens)
    expected = recorded if config.protocol != "old" else None
    text = f"{read}; decides to claim it: {_claim_text(new, view)}" if view else ""
    out.append((text, _step(state, worker, invocation._replace(phase=DECIDED, read=expected, claim=new))))


def _write_claim(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    claim = _present(invocation.claim)
    write = config.writes[invocation.message]
    record = config.records.index(write.record)
    renewed = ""
    if config.lock:
        now = state.clock + config.skews[worker]
        lock = state.lock
        if lock is None or lock.token != invocation.token:
            text = ""
            if view:
                text = f"w{worker} finds its claim lock taken over: busy, m{invocation.message} back to the queue"
            out.append((text, _end(state, worker, invocation, acknowledge=False, unlock=False)))
            return
        if now > lock.until - config.lock_margin:
            state = state._replace(lock=Lock(invocation.token, now + config.lock_ticks))
            renewed = f" (having renewed its claim lock until {view.time(now + config.lock_ticks)})" if view else ""
    conditional = config.protocol != "old"
    pending = GuardWrite(record, invocation.read, claim, conditional)
    how = ""
    if view:
        condition = f"if it is still {_claim_text(invocation.read, view)}" if conditional else "unconditionally"
        how = f"w{worker} writes its claim of {write.record}{renewed} {condition}"
    applied = _applied(config, state.guard[record], pending)
    if applied is None:
        text = f"{how}: refused, the item changed: busy, m{invocation.message} back to the queue" if view else ""
        out.append((text, _end(state, worker, invocation, acknowledge=False, unlock=True)))
    else:
        sending = invocation._replace(phase=CLAIMED, read=None, claim=None)
        claimed = _step(state._replace(guard=_put(state.guard, record, applied)), worker, sending)
        claimed = _unlocked(claimed, invocation.token)
        out.append((f"{how}: applied; w{worker} drops the claim lock" if view else "", claimed))
        twice = f"{how}: applied, and DynamoDB holds a copy to apply later; w{worker} drops the lock" if view else ""
        _applied_twice(config, state, claimed, pending, twice, out)
    _held(config, state, worker, invocation, pending, how, ", the claim lock left to expire", out, view)


def _send(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    write = config.writes[invocation.message]
    record = config.records.index(write.record)
    applied = state._replace(indexed=_put(state.indexed, record, write.version if write.operation == UPSERT else None))
    sends = f"w{worker} sends {_write_text(write)} to Pinecone" if view else ""
    out.append((f"{sends}: applied (landed)" if view else "", _step(applied, worker, invocation._replace(phase=SENT))))
    if not _may(config.faults.pinecone_late, state):
        return
    deadline = _deadline(config, invocation.until, config.skews[worker])
    held = IndexWrite(record, write.version, write.operation, deadline)
    text = ""
    if view:
        text = (
            f"{sends}: the request times out and Pinecone holds the write (to apply by clock {view.time(deadline)}, "
            f"or never); m{invocation.message} back to the queue, the lease kept"
        )
    failed = _end(_spend(state), worker, invocation, acknowledge=False, unlock=False)
    out.append((text, failed._replace(index_writes=_sorted_writes((*failed.index_writes, held)))))
    text = ""
    if view:
        text = (
            f"{sends}: applied, but Pinecone still holds an earlier attempt (to apply by clock "
            f"{view.time(deadline)}, or never): not landed"
        )
    doubted = _step(_spend(applied), worker, invocation._replace(phase=RELEASED))
    out.append((text, doubted._replace(index_writes=_sorted_writes((*doubted.index_writes, held)))))


def _release(
    config: Config, state: State, worker: int, invocation: Invocation, out: list[tuple[str, State]], view: _View | None
) -> None:
    released = _step(state, worker, invocation._replace(phase=RELEASED))
    text = f"w{worker} writes the landed marker of {view.token(invocation.token)}" if view else ""
    out.append((text, released._replace(landed=state.landed | {invocation.token})))
    if _may(config.faults.marker_lost, state):
        out.append((f"w{worker}'s landed marker is lost" if view else "", _spend(released)))


def _environment(config: Config, state: State, out: list[tuple[str, State]], view: _View | None) -> None:
    for position, pending in enumerate(state.guard_writes):
        if position and state.guard_writes[position - 1] == pending:
            continue
        rest = state.guard_writes[:position] + state.guard_writes[position + 1 :]
        recorded = state.guard[pending.record]
        applied = _applied(config, recorded, pending)
        text = ""
        if view:
            name = config.records[pending.record]
            if applied is None:
                text = f"DynamoDB refuses the held claim of {name}: the item is {_claim_text(recorded, view)}"
            else:
                text = (
                    f"DynamoDB applies the held claim of {name}, {_claim_text(applied, view)}, "
                    f"over {_claim_text(recorded, view)}"
                )
        guard = state.guard if applied is None else _put(state.guard, pending.record, applied)
        out.append((text, state._replace(guard_writes=rest, guard=guard)))
    for position, held in enumerate(state.index_writes):
        if position and state.index_writes[position - 1] == held:
            continue
        others = state.index_writes[:position] + state.index_writes[position + 1 :]
        value = held.version if held.operation == UPSERT else None
        text = ""
        if view:
            text = f"Pinecone applies the held write {_write_text(_held_write(config, held))}"
        out.append((text, state._replace(index_writes=others, indexed=_put(state.indexed, held.record, value))))
    tick = state.clock + 1
    if all(
        invocation is None
        or invocation.phase not in MAY_SEND
        or _deadline(config, invocation.until, config.skews[worker]) >= tick
        for worker, invocation in enumerate(state.workers)
    ):  # Lambda's timeout: an invocation that may still send to Pinecone has ended (or crashed) by its lease's end
        kept = tuple(held for held in state.index_writes if held.deadline >= tick)
        text = ""
        if view:
            text = f"the clock ticks to {view.time(tick)}"
            for held in state.index_writes:
                if held.deadline < tick:
                    text += f"; Pinecone never applies the held write {_write_text(_held_write(config, held))}"
        out.append((text, state._replace(clock=tick, index_writes=kept)))


def _deadline(config: Config, until: int, skew: int) -> int:
    """The last tick at which a write under a lease ending at ``until`` (by a clock ``skew`` ahead) may land.

    The lease's timing assumption: before the fastest clock passes the lease's end. The mutation
    ``lease_covers_skew=False`` lets it land until the sender's own clock passes it.
    """
    return until - (config.skew_bound if config.lease_covers_skew else skew)


# ---------------------------------------------------------------------------------------- helpers


def _may(enabled: bool, state: State) -> bool:
    """Whether the environment may inject a fault of a kind ``enabled`` by the configuration, now."""
    return enabled and state.faults_left != 0


def _spend(state: State) -> State:
    return state if state.faults_left < 0 else state._replace(faults_left=state.faults_left - 1)


def _applied(config: Config, recorded: Claim | None, pending: GuardWrite) -> Claim | None:
    """The item after DynamoDB applies ``pending``, or None when its condition refuses it."""
    if pending.before is not None:  # blind: absent, or no higher version under a lease ended by pending.before
        if recorded is None:
            return pending.new
        if config.stale_check and recorded.version > pending.new.version:
            return None
        ended = ENDED - config.skew_bound
        # Two times every clock has passed are one value in a canonical state, whatever their order was: the
        # claim may be applied (not applying it is the fault "never applied", which the model has anyway).
        if config.lease_check and not (recorded.until < pending.before or recorded.until == pending.before == ended):
            return None
        return pending.new
    if pending.conditional and recorded != pending.expected:
        return None
    return pending.new


def _step(state: State, worker: int, invocation: Invocation) -> State:
    return state._replace(workers=_put(state.workers, worker, invocation))


def _end(state: State, worker: int, invocation: Invocation, *, acknowledge: bool, unlock: bool) -> State:
    """The invocation ends: its message acknowledged, or back in the queue (unless a duplicate acknowledged it)."""
    message = state.messages[invocation.message]
    acked = acknowledge or message.acked
    after = state._replace(
        workers=_put(state.workers, worker, None),
        messages=_put(state.messages, invocation.message, Message(not acked, acked, message.deliveries_left)),
    )
    return _unlocked(after, invocation.token) if unlock else after


def _unlocked(state: State, token: int) -> State:
    """The claim lock dropped if ``token`` holds it (a conditional ``DeleteItem``)."""
    if state.lock is not None and state.lock.token == token:
        return state._replace(lock=None)
    return state


def _put[T](items: tuple[T, ...], position: int, value: T) -> tuple[T, ...]:
    return (*items[:position], value, *items[position + 1 :])


def _sorted_writes[W: (GuardWrite, IndexWrite)](writes: tuple[W, ...]) -> tuple[W, ...]:
    return tuple(sorted(writes, key=repr)) if len(writes) > 1 else writes


def canonical(config: Config, state: State) -> State:
    return _canonical(config, state)[0]


def _canonical(config: Config, state: State) -> tuple[State, dict[int, int]]:
    """The one state that stands for every state behaving exactly like ``state``, and the tokens' new names.

    * Time is relative: every time is shifted so that the clock reads 0 (the protocol only
      compares times), and a time every clock has passed (before -``skew_bound``) becomes one
      value, :data:`ENDED` less the skew bound. So time needs no bound.
    * Tokens only identify invocations: they are renamed 0, 1, ... in order of first appearance.
      A landed marker matters only for a token on a live lease or of a running invocation, a lock
      holder's token only while its invocation runs, a running invocation's lease end only until
      it has sent its write.
    * A held compare-and-set claim whose expected item has changed is refused whenever it is
      applied (an item never takes a value twice: each claim carries a fresh token): dropped.
    """
    shift = state.clock
    earliest = -config.skew_bound  # times before this every clock has passed
    ended = ENDED - config.skew_bound
    names: dict[int, int] = {}
    live: set[int] = set()
    running: set[int] = set()

    def see(claim: Claim | None) -> None:
        if claim is not None:
            for token in claim.tokens:
                if token not in names:
                    names[token] = len(names)
            if claim.until - shift >= earliest:
                live.update(claim.tokens)

    for invocation in state.workers:
        if invocation is not None:
            if invocation.token not in names:
                names[invocation.token] = len(names)
            running.add(invocation.token)
            see(invocation.read)
            see(invocation.claim)
    for claim in state.guard:
        see(claim)
    guard_writes = state.guard_writes
    if guard_writes:
        guard_writes = tuple(pending for pending in guard_writes if not _refused_for_good(config, state, pending))
        for pending in guard_writes:
            see(pending.expected)
            see(pending.new)
    same_names = all(old == new for old, new in names.items())

    def renamed(claim: Claim | None) -> Claim | None:
        if claim is None:
            return None
        until = claim.until - shift
        if until < earliest:
            until = ended
        if not same_names:
            return Claim(claim.version, claim.operation, until, tuple(sorted(names[t] for t in claim.tokens)))
        return claim if until == claim.until else Claim(claim.version, claim.operation, until, claim.tokens)

    workers = tuple(
        None
        if invocation is None
        else Invocation(
            invocation.message,
            names[invocation.token],
            invocation.until - shift if invocation.phase in MAY_SEND else 0,
            invocation.phase,
            renamed(invocation.read),
            renamed(invocation.claim),
        )
        for invocation in state.workers
    )
    lock = state.lock
    if lock is not None:
        token = names[lock.token] if lock.token in running else GONE
        until = lock.until - shift if lock.until - shift >= earliest else ended
        lock = None if token == GONE and until == ended else Lock(token, until)
    if guard_writes:

        def moved(time: int | None) -> int | None:
            return None if time is None else (time - shift if time - shift >= earliest else ended)

        renamed_writes = (
            GuardWrite(w.record, renamed(w.expected), _present(renamed(w.new)), w.conditional, moved(w.before))
            for w in guard_writes
        )
        guard_writes = _sorted_writes(tuple(renamed_writes))
    index_writes = state.index_writes
    if shift and index_writes:
        index_writes = tuple(held._replace(deadline=held.deadline - shift) for held in index_writes)
    landed = state.landed
    if landed:
        landed = frozenset(names[token] for token in landed if token in live or token in running)
    return State(
        0,
        state.messages,
        workers,
        tuple(renamed(claim) for claim in state.guard),
        landed,
        lock,
        guard_writes,
        index_writes,
        state.indexed,
        len(names),
        state.faults_left,
    ), names


def _refused_for_good(config: Config, state: State, pending: GuardWrite) -> bool:
    """A held claim whose condition can never hold again: a compare-and-set whose item changed (an item never
    takes a value twice: each claim carries a fresh token), or a blind claim of a version below the recorded
    one (recorded versions never go down)."""
    recorded = state.guard[pending.record]
    if pending.before is not None:
        return config.stale_check and recorded is not None and recorded.version > pending.new.version
    return pending.conditional and recorded != pending.expected


def _present(claim: Claim | None) -> Claim:
    if claim is None:  # a transition of the model taken in a state it does not apply to: a bug here
        raise RuntimeError("the model wrote a claim it had not decided")
    return claim


def _held_write(config: Config, held: IndexWrite) -> Write:
    return Write(config.records[held.record], held.version, held.operation)


def _write_text(write: Write) -> str:
    return f"{write.record} v{write.version} {write.operation}"


def _claim_text(claim: Claim | None, view: _View) -> str:
    if claim is None:
        return "absent"
    tokens = "+".join(view.token(token) for token in sorted(claim.tokens, key=lambda t: view.names.get(t, view.minted)))
    return f"v{claim.version} {claim.operation} (lease until {view.time(claim.until)} for {tokens})"


def _index_text(record: str, value: int | None) -> str:
    return f"{record} v{value}" if value is not None else f"no {record}"


# ---------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.guard_model", description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--protocol",
        choices=("old", "new", "blind"),
        default="new",
        help="old: the unconditional claim; blind: a conditional claim without reading first, then new's path",
    )
    parser.add_argument("--deep", action="store_true", help="a suite of larger bounds (minutes)")
    parser.add_argument("--lock", action=argparse.BooleanOptionalAction, default=True, help="model the claim lock")
    parser.add_argument("--faults", type=int, help="faults per run (default: each configuration's)")
    parser.add_argument("--index-only", action="store_true", help="check only I2 (the index), not I1 (the guard)")
    args = parser.parse_args(argv)
    suite = DEEP if args.deep else (("default", DEFAULT),)
    violated = False
    for name, base in suite:
        config = dataclasses.replace(
            base,
            protocol=args.protocol,
            lock=args.lock,
            check_recorded=not args.index_only,
            fault_budget=base.fault_budget if args.faults is None else args.faults,
        )
        print(f"{name}: protocol {config.protocol}; {config.summary()}")
        started = time.perf_counter()
        result = explore(config)
        print(
            f"  {result.states:,} states, {result.transitions:,} transitions, {result.quiescent:,} quiescent, "
            f"depth {result.depth}, {time.perf_counter() - started:.1f} s"
        )
        if result.violation is None:
            print("  no violation" + ("" if result.quiescent else ", but no quiescent state was reached"))
            violated |= not result.quiescent
            continue
        violated = True
        print(f"  violation after {len(result.trace)} steps: {result.violation}")
        for number, step in enumerate(result.trace, start=1):
            print(f"  {number:3}. {step}")
    return 1 if violated else 0


if __name__ == "__main__":
    sys.exit(main())
