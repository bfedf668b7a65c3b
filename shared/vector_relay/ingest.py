"""The ingest worker's batch logic: validate, dead-letter the poison, coalesce, write to Pinecone.

1. Every message is validated on its own (contract, tenant, index shape); poison is sent to the
   DLQ with its reasons and acknowledged.
2. The valid messages are planned into as few Pinecone requests as allowed
   (:mod:`vector_relay.batching`) and run concurrently under the invocation's deadline
   (:mod:`vector_relay.writer`).
3. Messages Pinecone rejects are poison too (``pinecone_rejected``); messages whose request failed
   transiently are reported as batch item failures, except on their last delivery before the
   redrive limit, where they go to the DLQ with ``retries_exhausted`` and the last error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from statistics import fmean

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.batching import Coalesced, PlannedRequest, WritePlan, coalesce, narrow, pack, request_keys
from vector_relay.contract import ValidationContext, WriteMessage
from vector_relay.errors import PoisonMessageError, Problem, TransientError
from vector_relay.validation import parse_write_message
from vector_relay.version_guard import GuardedWrite, GuardUnavailableError, Verdict, VersionGuard
from vector_relay.worker import WorkerDependencies, dead_letter, invocation_budget, last_delivery, sort_batch
from vector_relay.writer import MIN_REQUEST_SECONDS, Deadline, PlanRunner, WriteOutcome

logger = Logger(child=True)


def handle_ingest_batch(
    records: list[SQSRecord], context: LambdaContext | None, deps: WorkerDependencies
) -> Mapping[str, BaseException]:
    """Return the messages SQS must redeliver, by message id. Everything else was applied or dead-lettered."""
    deadline = Deadline(invocation_budget(context, deps))
    tenants = deps.tenants.current()
    validation = ValidationContext(tenants=tenants, index=deps.index.current())
    batch = sort_batch(records, deps, parse_write_message, validation)
    writes: list[tuple[str, str, WriteMessage]] = [
        (record.message_id, tenants.namespace_for(message.tenant), message) for record, message in batch.valid
    ]
    coalesced = coalesce(writes)
    guard = (
        _GuardedRun(coalesced, deps.guard, _lease_seconds(context, deps), deadline) if deps.guard is not None else None
    )
    runner = PlanRunner(
        deps.gateways,
        deadline=deadline,
        max_concurrency=deps.settings.pinecone_max_concurrency,
        namespace_rate_limit=deps.settings.pinecone_namespace_rate_limit,
        admit=guard.admit if guard is not None else None,
    )
    plan = pack(coalesced)
    if guard is None:
        outcome = deps.loop.run(runner.run(plan))
        stale, guard_failures = 0, {}
    else:
        outcome = deps.loop.run(guard.run(runner, plan))
        # Release what landed. A failed or cancelled request may still reach Pinecone late, so its
        # records stay leased until the lease expires and no newer write can overtake it.
        guard.guard.release(guard.lease, guard.claimed, outcome.landed)
        stale, guard_failures = guard.stale, guard.failures
    for message_id, error in guard_failures.items():
        if message_id not in outcome.poison:
            outcome.failures.setdefault(message_id, error)
    by_id = {record.message_id: record for record, _ in batch.valid}
    failures = dict(batch.failures)
    for message_id, poison in outcome.poison.items():
        dead_letter(deps, by_id[message_id], poison, failures)
    for message_id, error in outcome.failures.items():
        record = by_id[message_id]
        if last_delivery(record, deps):
            exhausted = PoisonMessageError([Problem("retries_exhausted", "", f"last delivery failed: {error}")])
            dead_letter(deps, record, exhausted, failures)
        else:
            failures[message_id] = error
    _report(outcome, deps, len(batch.valid), len(failures), stale)
    return failures


def _lease_seconds(context: LambdaContext | None, deps: WorkerDependencies) -> float:
    """A lease outlives the invocation: its remaining time, the deadline margin and the clock-skew slack."""
    settings = deps.settings
    return (
        invocation_budget(context, deps)
        + settings.deadline_margin_ms / 1000
        + settings.write_version_lease_slack_seconds
    )


class _GuardedRun:
    """A batch run under the version guard: every request waits for its records' claims, then sends the claimed ones.

    Each namespace's requests are claimed in plan order by one thread (``guard.concurrency``
    namespaces at a time), so the first requests are already on their way to Pinecone while the
    later ones are still being claimed.
    """

    def __init__(self, coalesced: Coalesced, guard: VersionGuard, lease_seconds: float, deadline: Deadline) -> None:
        self.coalesced = coalesced
        self.deadline = deadline
        self.guard = guard
        self.lease = guard.lease(lease_seconds)
        self.claimed: list[GuardedWrite] = []
        self.failures: dict[str, BaseException] = {}
        self.stale = 0
        self._verdicts: dict[int, asyncio.Future[dict[tuple[str, str], Verdict]]] = {}

    async def run(self, runner: PlanRunner, plan: WritePlan) -> WriteOutcome:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.guard.concurrency)
        claims = []
        for namespace, stages in plan.stages.items():
            requests = [request for stage in stages for request in stage if request_keys(request)]
            for request in requests:
                self._verdicts[id(request)] = loop.create_future()
            if requests:
                claims.append(self._claim(namespace, requests, slots))
        await asyncio.gather(runner.run(plan), *claims)
        for future in self._verdicts.values():  # a request held back by an earlier failure was never admitted
            if future.done() and not future.cancelled():
                future.exception()
        return runner.outcome

    async def _claim(self, namespace: str, requests: list[PlannedRequest], slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        futures = [self._verdicts[id(request)] for request in requests]
        winners = self.coalesced.winners
        groups = [
            [GuardedWrite(*key, winners[key].version, winners[key].operation) for key in request_keys(request)]
            for request in requests
        ]

        def settle(index: int, verdicts: dict[tuple[str, str], Verdict]) -> None:
            if not futures[index].done():
                futures[index].set_result(verdicts)

        def deliver(index: int, verdicts: dict[tuple[str, str], Verdict]) -> None:  # on the claiming thread
            loop.call_soon_threadsafe(settle, index, verdicts)

        async with slots:
            try:
                await asyncio.to_thread(
                    self.guard.claim_in_groups, namespace, groups, self.lease, deliver, stop=self._out_of_time
                )
            except GuardUnavailableError as error:
                for future in futures:  # the requests not claimed yet fail and are retried, in order
                    if not future.done():
                        future.set_exception(error)

    def _out_of_time(self) -> bool:
        return self.deadline.left() < MIN_REQUEST_SECONDS  # nothing claimed now could still be sent

    async def admit(self, request: PlannedRequest) -> PlannedRequest | None:
        """The part of ``request`` this invocation may write; raises the guard's error if it could not be asked."""
        future = self._verdicts.get(id(request))
        if future is None:
            return request  # a filter operation: ordered by its stage, not by the guard
        verdicts = await future
        keep = set()
        for key, verdict in verdicts.items():
            winner = self.coalesced.winners[key]
            if verdict is Verdict.CLAIMED:
                keep.add(key)
                self.claimed.append(GuardedWrite(*key, winner.version, winner.operation))
            elif verdict is Verdict.STALE:
                self.stale += 1
            else:
                busy = TransientError(f"record {key[1]!r} is being written by another worker; retried later")
                for message_id in winner.message_ids:
                    self.failures.setdefault(message_id, busy)
        return narrow(request, self.coalesced.winners, keep)


def _report(outcome: WriteOutcome, deps: WorkerDependencies, valid: int, failed: int, stale: int) -> None:
    metrics = deps.metrics
    if deps.guard is not None:
        metrics.add_metric(name="StaleWritesDropped", unit=MetricUnit.Count, value=stale)
    metrics.add_metric(name="RecordsUpserted", unit=MetricUnit.Count, value=outcome.records_upserted)
    metrics.add_metric(name="RecordsDeleted", unit=MetricUnit.Count, value=outcome.records_deleted)
    metrics.add_metric(name="PineconeRequests", unit=MetricUnit.Count, value=outcome.requests)
    metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=len(outcome.failures))
    if outcome.deadline_cutoffs:
        metrics.add_metric(name="DeadlineCutoffs", unit=MetricUnit.Count, value=outcome.deadline_cutoffs)
    if outcome.auth_refreshes:
        metrics.add_metric(name="AuthRefreshes", unit=MetricUnit.Count, value=outcome.auth_refreshes)
    for latency in outcome.latencies_ms:
        metrics.add_metric(name="PineconeLatency", unit=MetricUnit.Milliseconds, value=latency)
    logger.info(
        "ingest batch done",
        extra={
            "valid_messages": valid,
            "failed_messages": failed,
            "records_upserted": outcome.records_upserted,
            "records_deleted": outcome.records_deleted,
            "pinecone_requests": outcome.requests,
            "mean_latency_ms": round(fmean(outcome.latencies_ms), 1) if outcome.latencies_ms else None,
            "rejected_messages": len(outcome.poison),
            "deadline_cutoffs": outcome.deadline_cutoffs,
            "stale_writes_dropped": stale,
        },
    )
