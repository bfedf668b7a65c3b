"""Send while validating: a Pinecone request goes out as soon as it is full, while later messages are still read.

Without this, a batch's requests start only once its last message is validated and encoded, and
Pinecone's time and the validation's add up. :class:`EarlyWrites` watches the valid messages as
they come (in batch order) and collects, per namespace, the writes of the batch's first segment
(before any filter operation of that namespace) whose record has not been seen earlier in the
batch. When those fill a request (1,000 records or 2 MB of upserts, measured as :mod:`~vector_relay.ingest.planning`
measures, or 1,000 deleted ids), the request is sent at once on :class:`BackgroundSending`'s
thread, admitted by the version guard for exactly the writes it carries; the rest waits for the
batch's plan as before.

**The batch-wide rule is kept** ("highest version wins inside the batch", planning.py), although a
request cannot know the messages not yet read:

* a record already collected and seen again before its request is sent is taken back: the plan
  decides it, as it decides every record seen twice;
* a record already **sent** and then seen again is decided by the plan too: when the later write
  wins (its version is higher or equal), the plan sends it in a stage after every early request of
  the namespace has landed (a record written twice, in order), and the record counts as landed only
  when that later write has (:class:`~vector_relay.ingest.runner.EarlyStage`); when the early write
  stays the winner, the later message depends on it as on any winning request (it is retried if
  that request failed or its message was rejected).

The early requests are the first stage's: the plan's stages after it (filter operations and what
follows them) wait for them as for the rest of the stage (:meth:`~vector_relay.ingest.runner.PlanRunner.run_namespace`).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import assert_never

from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, PurgeTenantMessage, UpsertMessage
from vector_relay.errors import TransientError
from vector_relay.ingest.planning import (
    MAX_IDS_PER_DELETE,
    MAX_RECORDS_PER_REQUEST,
    MAX_UPSERT_REQUEST_BYTES,
    Coalesced,
    PlannableWrite,
    PlannedRequest,
    Winner,
    WritePlan,
    one_request,
)
from vector_relay.ingest.runner import (
    Admission,
    EarlyStage,
    EarlyTask,
    PlanRunner,
    WriteOutcome,
    ended_failed,
)
from vector_relay.pinecone.wire import EncodedRecord, EncodedUpsert, encode_upsert, request_overhead

type Key = tuple[str, str]
type Admit = Callable[[PlannedRequest, Mapping[Key, Winner]], Awaitable[Admission]]


@dataclass(slots=True)
class _Collected:
    """One namespace's first-segment writes not sent yet, each kind in batch order."""

    upserts: dict[str, Winner] = field(default_factory=dict)
    deletes: dict[str, Winner] = field(default_factory=dict)
    upsert_bytes: int = 0  # the request's own overhead included, once there is an upsert

    def take_back(self, record_id: str) -> None:
        winner = self.upserts.pop(record_id, None)
        if winner is not None and winner.record is not None:
            self.upsert_bytes -= winner.record.size
        self.deletes.pop(record_id, None)


@dataclass(frozen=True, slots=True)
class Settled:
    """What the plan must know of the early requests: records to leave out, records written again, dependents."""

    sent: frozenset[Key]  # sent early and still the batch's winner: not planned again
    rewritten: dict[str, set[Key]]  # by namespace: sent early, then won by a later write the plan sends
    dependents: dict[str, set[Key]]  # message id -> the early-sent records whose winning writes it depends on


class EarlyWrites:
    """Collects a batch's first-segment writes as the messages are validated; sends each request once it is full."""

    def __init__(self, send: Callable[[PlannedRequest, dict[Key, Winner]], bool]) -> None:
        self._send = send
        self._collected: dict[str, _Collected] = {}
        self._closed: set[str] = set()  # namespaces past their first filter operation
        self._seen: set[Key] = set()
        self.sent: dict[Key, Winner] = {}
        self._order = 0

    def add(self, message_id: str, namespace: str, message: PlannableWrite) -> None:
        """A valid message, in batch order (its upsert records encoded already)."""
        items: list[tuple[str, int, EncodedRecord | None]]
        match message:
            case DeleteByFilterMessage() | PurgeTenantMessage():
                self._closed.add(namespace)  # what is collected stays for the plan, which orders it
                self._collected.pop(namespace, None)
                return
            case UpsertMessage() | EncodedUpsert():
                encoded = encode_upsert(message)
                assert isinstance(encoded, EncodedUpsert)
                items = [(record.id, record.version, record) for record in encoded.records]
            case DeleteMessage():
                items = [(record.id, record.version, None) for record in message.records]
            case _:
                assert_never(message)
        latest: dict[str, tuple[int, EncodedRecord | None]] = {}
        for record_id, version, record in items:  # one write per id and message, by planning's rule
            current = latest.get(record_id)
            if current is None or version >= current[0]:
                latest[record_id] = (version, record)
        collected = None if namespace in self._closed else self._collected.setdefault(namespace, _Collected())
        for record_id, (version, record) in latest.items():
            key = (namespace, record_id)
            if key in self._seen:  # written twice in the batch: the plan decides
                if collected is not None:
                    collected.take_back(record_id)
                continue
            self._seen.add(key)
            if collected is not None:
                self._order += 1
                self._collect(collected, Winner(namespace, 0, self._order, version, message_id, record, record_id))

    def settle(self, batch: Coalesced) -> Settled:
        """Once the whole batch is coalesced: what the plan leaves out, sends again, and who depends on what."""
        kept: set[Key] = set()
        rewritten: dict[str, set[Key]] = {}
        dependents: dict[str, set[Key]] = {}
        for key, early in self.sent.items():
            winner = batch.winners[key]
            if winner.same_write(early):
                kept.add(key)
                for message_id in winner.superseded - {winner.message_id}:
                    dependents.setdefault(message_id, set()).add(key)
            else:
                rewritten.setdefault(key[0], set()).add(key)
        return Settled(frozenset(kept), rewritten, dependents)

    def _collect(self, collected: _Collected, winner: Winner) -> None:
        namespace = winner.namespace
        if winner.record is None:
            collected.deletes[winner.record_id] = winner
            if len(collected.deletes) >= MAX_IDS_PER_DELETE:
                self._flush(namespace, collected.deletes)
            return
        size = winner.record.size
        if not collected.upserts:
            collected.upsert_bytes = request_overhead(namespace, winner.record.transport)
        elif collected.upsert_bytes + size > MAX_UPSERT_REQUEST_BYTES:
            self._flush(namespace, collected.upserts)  # full: this record starts the next request
            collected.upsert_bytes = request_overhead(namespace, winner.record.transport)
        collected.upserts[winner.record_id] = winner
        collected.upsert_bytes += size
        if len(collected.upserts) >= MAX_RECORDS_PER_REQUEST:
            self._flush(namespace, collected.upserts)

    def _flush(self, namespace: str, writes: dict[str, Winner]) -> None:
        winners = list(writes.values())
        writes.clear()
        request = one_request(namespace, winners)
        carried = {(namespace, winner.record_id): winner for winner in winners}
        if self._send(request, carried):  # else (no thread to send on) the plan sends them
            self.sent |= carried


class BackgroundSending:
    """A batch's Pinecone requests on the service's event loop, in a thread, from the first request sent early.

    The loop (``asyncio.Runner``, kept across warm invocations) runs in this thread from the first
    :meth:`send` until :meth:`finish` has run the rest of the plan, so requests sent early are in
    flight while the handler's thread goes on validating. Everything runs in the invocation's
    context (its AWS time box).
    """

    def __init__(self, loop: asyncio.Runner, runner: PlanRunner, admit: Admit | None) -> None:
        self._loop = loop
        self._runner = runner
        self._admit = admit
        self._context = contextvars.copy_context()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._running: asyncio.AbstractEventLoop | None = None
        self._plan: asyncio.Future[_Final] | None = None
        self._tasks: dict[str, list[EarlyTask]] = {}
        self._task_of: dict[Key, EarlyTask] = {}
        self._result: WriteOutcome | None = None
        self._error: BaseException | None = None
        self._finished = False

    @property
    def started(self) -> bool:
        return self._thread is not None

    def send(self, request: PlannedRequest, carried: dict[Key, Winner]) -> bool:
        """Send ``request`` now (called from the handler's thread); False when there is no loop to send it on."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="ingest-send", daemon=True)
            self._thread.start()
            self._ready.wait()
        if self._running is None:  # the loop failed to start (finish raises its error): nothing was sent
            return False
        self._running.call_soon_threadsafe(self._start, request, carried)
        return True

    def finish(self, plan: WritePlan, rewritten: dict[str, set[Key]]) -> WriteOutcome:
        """Run ``plan`` after (or beside) the early requests; the batch's outcome once nothing is left running."""
        assert self._thread is not None, "nothing was sent early"
        self._finished = True
        if self._running is not None and self._plan is not None:
            self._running.call_soon_threadsafe(_resolve, self._plan, (plan, rewritten))
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def close(self) -> None:
        """Let the thread end if :meth:`finish` was never called (the batch failed while being read)."""
        if self._thread is not None and not self._finished:
            self.finish(WritePlan(), {})

    def failed(self, key: Key) -> bool:
        """Whether the early request carrying ``key`` failed (after :meth:`finish`)."""
        task = self._task_of.get(key)
        return task is not None and ended_failed(task)

    def _main(self) -> None:
        try:
            self._result = self._loop.run(self._drive(), context=self._context)
        except BaseException as error:  # handed to the handler's thread by finish()
            self._error = error
        finally:
            self._ready.set()

    async def _drive(self) -> WriteOutcome:
        self._running = asyncio.get_running_loop()
        self._plan = self._running.create_future()
        self._ready.set()
        plan, rewritten = await self._plan
        early = {
            namespace: EarlyStage(list(tasks), rewritten.get(namespace, set()))
            for namespace, tasks in self._tasks.items()
        }
        return await self._runner.run(plan, early)

    def _start(self, request: PlannedRequest, carried: dict[Key, Winner]) -> None:
        admit = self._admit
        guard = None if admit is None else (lambda planned: admit(planned, carried))
        task = self._runner.start_early(request, guard)
        self._tasks.setdefault(request.namespace, []).append(task)
        self._task_of.update(dict.fromkeys(carried, task))


type _Final = tuple[WritePlan, dict[str, set[Key]]]


def _resolve(future: asyncio.Future[_Final], value: _Final) -> None:
    if not future.done():
        future.set_result(value)


def depend_on_early(outcome: WriteOutcome, settled: Settled, batch: Coalesced, sending: BackgroundSending) -> None:
    """Fail the messages whose writes an early request's winner superseded, when any such winner did not land."""
    for message_id, keys in settled.dependents.items():
        for key in sorted(keys):
            winner = batch.winners[key]
            if winner.message_id in outcome.poison:
                error = TransientError("a write this message was superseded by was rejected; redelivery applies it")
            elif sending.failed(key):
                error = TransientError("a write this message was superseded by failed; redelivery applies it")
            else:
                continue
            if message_id not in outcome.poison:
                outcome.failures.setdefault(message_id, error)
            break
