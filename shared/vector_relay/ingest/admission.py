"""Admission under the version guard: which part of each planned request this invocation may write.

Each valid message's records are handed to a claim session as soon as the message is validated
(:meth:`GuardedBatch.submit`), so DynamoDB works while the rest of the batch is still being read.
Each Pinecone request then waits only for the claims of its own records and carries the claimed
ones (:meth:`GuardedBatch.admit`, the runner's admission); stale records are dropped for good, busy
ones make the message wait (:meth:`GuardedBatch.settle`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from vector_relay import tracing
from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, PurgeTenantMessage, UpsertMessage
from vector_relay.deadline import MIN_REQUEST_SECONDS, Deadline
from vector_relay.errors import BusyWriteError
from vector_relay.ingest.guard_records import GuardedWrite, Verdict
from vector_relay.ingest.planning import Coalesced, PlannableWrite, PlannedRequest, Winner, narrow, request_keys
from vector_relay.ingest.runner import Admission
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.pinecone.wire import EncodedUpsert
from vector_relay.tenancy import TenantRegistry


class GuardedBatch:
    """A batch under the version guard.

    Each valid message's records are handed to a claim session as soon as the message is
    validated, so DynamoDB works while the rest of the batch is still being read. Each Pinecone
    request then waits only for the claims of its own records and carries the claimed ones.
    """

    def __init__(
        self,
        guard: VersionGuard,
        lease_seconds: float,
        deadline: Deadline,
        tenants: TenantRegistry,
        spans: tracing.SpanLog = tracing.NO_SPANS,
    ) -> None:
        self.guard = guard
        self.session = guard.session(
            guard.lease(lease_seconds),
            stop=lambda: deadline.left() < MIN_REQUEST_SECONDS,  # nothing claimed now could still be sent
            spans=spans,  # one span per claim group, for the batch's trace
        )
        self.coalesced = Coalesced()
        self._tenants = tenants
        # each write's claim, by the write itself (a GuardedWrite is the tuple namespace, id, version, operation)
        self._claims: dict[tuple[str, str, int, str], Future[dict[tuple[str, str], Verdict]]] = {}

    def submit(self, message: PlannableWrite) -> None:
        """Start claiming a validated message's records (the highest version of each id in it)."""
        operation: Literal["upsert", "delete"]
        match message:
            case UpsertMessage() | EncodedUpsert():
                operation = "upsert"
            case DeleteMessage():
                operation = "delete"
            case DeleteByFilterMessage() | PurgeTenantMessage():
                return  # filter operations are ordered by their place in the batch, not by the guard
            case _:
                assert_never(message)
        namespace = self._tenants.namespace_for(message.tenant)
        records = message.records
        if len(records) == 1:  # most messages of a stream of small updates: nothing to choose between
            writes = [GuardedWrite(namespace, records[0].id, records[0].version, operation)]
        else:
            latest: dict[str, GuardedWrite] = {}
            for item in records:
                current = latest.get(item.id)
                if current is None or item.version >= current.version:  # the rule of coalesce()
                    latest[item.id] = GuardedWrite(namespace, item.id, item.version, operation)
            writes = list(latest.values())
        future = self.session.submit(namespace, writes)
        self._claims.update(dict.fromkeys(writes, future))

    def _claim_of(
        self, key: tuple[str, str], winners: Mapping[tuple[str, str], Winner] | None = None
    ) -> Future[dict[tuple[str, str], Verdict]]:
        winner = (self.coalesced.winners if winners is None else winners)[key]
        return self._claims[(*key, winner.version, winner.operation)]

    async def admit(
        self, request: PlannedRequest, winners: Mapping[tuple[str, str], Winner] | None = None
    ) -> Admission:
        """The part of ``request`` this invocation may write; raises the guard's error if it could not be asked.

        Stale records are dropped for good; busy ones make the admission incomplete, so the stages
        after this one wait for their redelivery too. ``winners``: the writes ``request`` carries,
        for a request sent before the batch was coalesced (by default the batch's winners).
        """
        keys = request_keys(request)
        if not keys:
            return Admission(request)  # a filter operation
        of_key = {key: self._claim_of(key, winners) for key in keys}
        claims = {id(claim): claim for claim in of_key.values()}
        await _all_done(claims.values())
        decided: dict[int, dict[tuple[str, str], Verdict]] = {}  # each claim's verdicts, read once (a lock each)
        for ident, claim in claims.items():
            if (error := claim.exception()) is not None:
                raise error
            decided[ident] = claim.result()
        verdicts = {key: decided[id(claim)][key] for key, claim in of_key.items()}
        keep = {key for key, verdict in verdicts.items() if verdict is Verdict.CLAIMED}
        complete = all(verdict is not Verdict.BUSY for verdict in verdicts.values())
        return Admission(narrow(request, self.coalesced.winners if winners is None else winners, keep), complete)

    def settle(self, sent_early: Mapping[tuple[str, str], Winner] | None = None) -> GuardSummary:
        """After the session closed: the claimed writes, the stale and busy counts, the messages to retry.

        ``sent_early``: the writes sent before the batch was coalesced (early_writes). Each one whose own
        claim was made is among the claimed writes too, even when a later write of its record won the
        batch: if it did not land, the release must keep its record's lease (it may still land).
        """
        summary = GuardSummary()
        outcomes: dict[Future[dict[tuple[str, str], Verdict]], tuple[BaseException | None, Mapping[Any, Any]]] = {}

        def outcome(claim: Future[dict[tuple[str, str], Verdict]]) -> tuple[BaseException | None, Mapping[Any, Any]]:
            """A claim's error or verdicts, read once per claim (each read takes the future's lock)."""
            known = outcomes.get(claim)
            if known is None:
                error = claim.exception()
                known = outcomes[claim] = (error, {} if error is not None else claim.result())
            return known

        for key, early in (sent_early or {}).items():
            winner = self.coalesced.winners.get(key)
            if winner is not None and winner.same_write(early):
                continue  # the batch's winner: counted below
            error, verdicts = outcome(self._claim_of(key, {key: early}))
            if error is None and verdicts.get(key) is Verdict.CLAIMED:
                summary.claimed.append(GuardedWrite(*key, early.version, early.operation))
        busy_until: dict[str, list[float | None]] = {}  # message id -> when each of its busy records frees up
        for key, winner in self.coalesced.winners.items():
            error, verdicts = outcome(self._claim_of(key))
            verdict = None if error is not None else verdicts[key]
            if verdict is Verdict.CLAIMED:
                summary.claimed.append(GuardedWrite(*key, winner.version, winner.operation))
            elif verdict is Verdict.STALE:
                summary.stale += 1
                summary.stale_by_namespace[key[0]] += 1
            elif error is not None:
                for message_id in winner.message_ids:
                    summary.failures.setdefault(message_id, error)
            else:
                summary.busy += 1
                summary.busy_by_namespace[key[0]] += 1
                for message_id in winner.message_ids:
                    busy_until.setdefault(message_id, []).append(self.session.held_until.get(key))
        for message_id, ends in busy_until.items():
            retry_at = None if None in ends else max(end for end in ends if end is not None)
            busy = BusyWriteError(f"{len(ends)} record(s) held by another worker; retried later", retry_at)
            summary.failures.setdefault(message_id, busy)
        return summary


async def _all_done(claims: Iterable[Future[Any]]) -> None:
    """Wait until every one of ``claims`` is done, woken once (not once per claim, as ``asyncio.wrap_future`` would).

    A request of many one-record messages waits on as many claims; most are done already (claimed
    while the batch was read), and the rest finish together with their claim group. Each claim
    still pending counts down; the last one wakes the event loop.
    """
    pending = [claim for claim in claims if not claim.done()]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    left = [len(pending)]
    counting = threading.Lock()

    def wake(_: Future[Any]) -> None:
        with counting:
            left[0] -= 1
            last = left[0] == 0
        if last:
            loop.call_soon_threadsafe(_set_done, woken)

    for claim in pending:
        claim.add_done_callback(wake)  # runs at once if the claim finished meanwhile
    await woken


def _set_done(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # not when the waiting request was cancelled meanwhile
        woken.set_result(None)


@dataclass(slots=True)
class GuardSummary:
    claimed: list[GuardedWrite] = field(default_factory=list)
    stale: int = 0  # acknowledged and dropped
    busy: int = 0  # held by another invocation: retried
    stale_by_namespace: Counter[str] = field(default_factory=Counter)
    busy_by_namespace: Counter[str] = field(default_factory=Counter)
    failures: dict[str, BaseException] = field(default_factory=dict)
