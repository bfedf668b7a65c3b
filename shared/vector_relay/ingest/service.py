"""The ingest worker's batch logic: validate, dead-letter the poison, coalesce, write to Pinecone.

1. Every message is validated on its own (contract, tenant, index shape); poison is sent to the
   DLQ with its reasons and acknowledged.
2. The valid messages are planned into as few Pinecone requests as allowed
   (:mod:`vector_relay.ingest.planning`) and run concurrently under the invocation's deadline
   (:mod:`vector_relay.ingest.runner`).
3. Messages Pinecone rejects are poison too (``pinecone_rejected``); messages whose request failed
   transiently are reported as batch item failures, except on their last delivery before the
   redrive limit, where they go to the DLQ with ``retries_exhausted`` and the last error.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from statistics import fmean
from typing import Literal, assert_never

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.aws_clients import OutOfTimeError
from vector_relay.contract.messages import (
    DeleteByFilterMessage,
    DeleteMessage,
    PurgeTenantMessage,
    UpsertMessage,
    ValidationContext,
)
from vector_relay.contract.parsing import parse_write_message
from vector_relay.errors import PoisonMessageError, Problem, WaitingError
from vector_relay.ingest.planning import (
    Coalesced,
    EncodedUpsert,
    PlannableWrite,
    PlannedRequest,
    Transport,
    coalesce,
    encode_upsert,
    narrow,
    pack,
    request_keys,
)
from vector_relay.ingest.runner import (
    MIN_REQUEST_SECONDS,
    Admission,
    Deadline,
    HeldBehindError,
    PlanRunner,
    WriteOutcome,
)
from vector_relay.ingest.version_guard import BusyWriteError, GuardedWrite, Verdict, VersionGuard
from vector_relay.sqs.message_age import expired, first_sent_attribute, first_sent_ms
from vector_relay.sqs.worker import (
    WorkerDependencies,
    check_timing,
    dead_letter,
    invocation_budget,
    last_delivery,
    queue_url,
    retry_soon,
    sort_batch,
)
from vector_relay.tenancy import TenantRegistry

logger = Logger(child=True)

MAX_RETRY_DELAY_SECONDS = 900  # never more than a Lambda's longest timeout: the queue's own timeout is longer


def handle_ingest_batch(
    records: list[SQSRecord], context: LambdaContext | None, deps: WorkerDependencies
) -> Mapping[str, BaseException]:
    """Return the messages SQS must redeliver, by message id. Everything else was applied or dead-lettered."""
    check_timing(context, deps)
    deadline = Deadline(invocation_budget(context, deps))
    tenants = deps.tenants.current()
    validation = ValidationContext(tenants=tenants, index=deps.index.current())
    expired: dict[str, BaseException] = {}
    records = _without_expired(records, deps, expired)
    if deps.guard is None:
        batch = sort_batch(records, deps, _parser(deps.settings.pinecone_transport), validation)
        coalesced = coalesce(_writes(batch.valid, tenants))
        outcome = deps.loop.run(_runner(deps, deadline).run(pack(coalesced)))
        summary = None
    else:
        guard = _GuardedRun(deps.guard, _lease_seconds(context, deps), deadline, tenants)
        try:
            batch = sort_batch(
                records, deps, _parser(deps.settings.pinecone_transport), validation, on_valid=guard.submit
            )
            coalesced = guard.coalesced = coalesce(_writes(batch.valid, tenants))
            guard.session.seal()
            outcome = deps.loop.run(_runner(deps, deadline, admit=guard.admit).run(pack(coalesced)))
        finally:
            guard.session.close()
        summary = guard.settle()
        # Release what landed. A failed or cancelled request may still reach Pinecone late, so its
        # records stay leased until the lease expires and no newer write can overtake it.
        deps.guard.release(guard.session.lease, summary.claimed, outcome.landed)
    for message_id, error in (summary.failures if summary else {}).items():
        if message_id not in outcome.poison:
            outcome.failures[message_id] = _own_reason_first(outcome.failures.get(message_id), error)
    _wait_with_the_busy(outcome.failures)
    by_id = {record.message_id: record for record, _ in batch.valid}
    failures = dict(batch.failures) | expired
    for message_id, poison in outcome.poison.items():
        dead_letter(deps, by_id[message_id], poison, failures)
    for record in (by_id[message_id] for message_id in by_id if message_id in outcome.failures):  # batch order
        error = outcome.failures[record.message_id]
        if not last_delivery(record, deps):
            failures[record.message_id] = error
        elif isinstance(error, WaitingError) and _requeue(deps, record, error):
            pass  # waiting for another worker is not a failure: a fresh copy waits on, this one is done
        else:
            exhausted = PoisonMessageError([Problem("retries_exhausted", "", f"last delivery failed: {error}")])
            dead_letter(deps, record, exhausted, failures)
    _retry_busy_sooner(deps, by_id, failures)
    _report(outcome, deps, len(batch.valid), len(failures), summary)
    return failures


def _own_reason_first(current: BaseException | None, new: BaseException) -> BaseException:
    """A message's failure when the run and the guard both gave one: its own reason over being held behind another."""
    if current is None or (isinstance(current, HeldBehindError) and not isinstance(new, HeldBehindError)):
        return new
    return current


def _wait_with_the_busy(failures: dict[str, BaseException]) -> None:
    """Give messages held behind a waiting write the time the busy records free up (the latest, so a held
    message never comes back before the write it must follow); unknown when any busy end is unknown."""
    ends = [error.retry_at for error in failures.values() if isinstance(error, BusyWriteError)]
    retry_at = None if not ends or None in ends else max(end for end in ends if end is not None)
    for error in failures.values():
        if isinstance(error, HeldBehindError):
            error.retry_at = None if retry_at is None else retry_at + 1  # after the busy write, not with it


def _without_expired(
    records: list[SQSRecord], deps: WorkerDependencies, failures: dict[str, BaseException]
) -> list[SQSRecord]:
    """``records`` without the writes first sent longer ago than the version guard remembers versions:
    those are dead-lettered as ``write_expired`` (:mod:`vector_relay.sqs.message_age`)."""
    if deps.guard is None:
        return records  # no guard, no tombstones to outlive
    now = deps.guard.now()
    kept = []
    for record in records:
        problem = expired(record, now=now, remembered_seconds=deps.settings.write_version_ttl_seconds)
        if problem is None:
            kept.append(record)
        else:
            dead_letter(deps, record, PoisonMessageError([problem]), failures)
    return kept


def _requeue(deps: WorkerDependencies, record: SQSRecord, error: WaitingError) -> bool:
    """Send a waiting message again as a new one (its receive count starts over), delayed until the hold ends.

    On its last delivery a message that only waits for another worker's hold (or behind a write of
    its namespace that does) would otherwise reach the DLQ as retries_exhausted; a record written
    often can keep a message busy through ``maxReceiveCount`` deliveries. The copy is the same
    write: the version guard orders it like the original. It carries the original's first send
    time, so the copy is no younger than the write (:mod:`vector_relay.sqs.message_age`). False when
    SQS refused the copy (the original is then dead-lettered as before).
    """
    now = deps.guard.now() if deps.guard is not None else 0.0
    delay = 0 if error.retry_at is None else min(max(math.ceil(error.retry_at - now) + 1, 0), MAX_SQS_DELAY_SECONDS)
    try:
        deps.sqs.send_message(
            QueueUrl=queue_url(deps.sqs, record.event_source_arn),
            MessageBody=record.body,
            DelaySeconds=delay,
            MessageAttributes=first_sent_attribute(first_sent_ms(record)),
        )
    except (ClientError, BotoCoreError, OutOfTimeError) as failure:
        logger.warning(
            "could not requeue a busy message", extra={"message_id": record.message_id, "error": str(failure)}
        )
        return False
    deps.metrics.add_metric(name="BusyRequeued", unit=MetricUnit.Count, value=1)
    logger.info("waiting on its last delivery: sent again", extra={"message_id": record.message_id, "delay": delay})
    return True


def _retry_busy_sooner(
    deps: WorkerDependencies, by_id: Mapping[str, SQSRecord], failures: dict[str, BaseException]
) -> None:
    """Make messages that only wait for another worker's hold visible again when that hold ends.

    Otherwise SQS would redeliver them after the queue's visibility timeout (6x the function's),
    minutes for a record that is written often. Best effort: if SQS refuses, that timeout applies.
    """
    now = deps.guard.now() if deps.guard is not None else 0.0
    retry_soon(
        deps,
        [
            (by_id[message_id], min(max(math.ceil(error.retry_at - now) + 1, 1), MAX_RETRY_DELAY_SECONDS))
            for message_id, error in failures.items()
            if isinstance(error, WaitingError) and error.retry_at is not None and message_id in by_id
        ],
    )


MAX_SQS_DELAY_SECONDS = 900  # SendMessage's DelaySeconds limit


def _lease_seconds(context: LambdaContext | None, deps: WorkerDependencies) -> float:
    """A lease outlives the invocation: its remaining time, the deadline margin and the clock-skew slack."""
    settings = deps.settings
    return (
        invocation_budget(context, deps)
        + settings.deadline_margin_ms / 1000
        + settings.write_version_lease_slack_seconds
    )


def _parser(transport: Transport) -> Callable[[str, ValidationContext], PlannableWrite]:
    """Validate a message; encode an upsert's records at once for ``transport`` (see ingest.planning)."""

    def parse(body: str, validation: ValidationContext) -> PlannableWrite:
        return encode_upsert(parse_write_message(body, validation), transport)

    return parse


def _writes(
    valid: list[tuple[SQSRecord, PlannableWrite]], tenants: TenantRegistry
) -> list[tuple[str, str, PlannableWrite]]:
    return [(record.message_id, tenants.namespace_for(message.tenant), message) for record, message in valid]


def _runner(
    deps: WorkerDependencies,
    deadline: Deadline,
    admit: Callable[[PlannedRequest], Awaitable[Admission]] | None = None,
) -> PlanRunner:
    return PlanRunner(
        deps.gateways,
        deadline=deadline,
        max_concurrency=deps.settings.pinecone_max_concurrency,
        namespace_rate_limit=deps.settings.pinecone_namespace_rate_limit,
        admit=admit,
    )


class _GuardedRun:
    """A batch under the version guard.

    Each valid message's records are handed to a claim session as soon as the message is
    validated, so DynamoDB works while the rest of the batch is still being read. Each Pinecone
    request then waits only for the claims of its own records and carries the claimed ones.
    """

    def __init__(self, guard: VersionGuard, lease_seconds: float, deadline: Deadline, tenants: TenantRegistry) -> None:
        self.session = guard.session(
            guard.lease(lease_seconds),
            stop=lambda: deadline.left() < MIN_REQUEST_SECONDS,  # nothing claimed now could still be sent
        )
        self.coalesced = Coalesced()
        self._tenants = tenants
        self._claims: dict[tuple[tuple[str, str], int, str], Future[dict[tuple[str, str], Verdict]]] = {}

    def submit(self, record: SQSRecord, message: PlannableWrite) -> None:
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
        latest: dict[str, GuardedWrite] = {}
        for item in message.records:
            current = latest.get(item.id)
            if current is None or item.version >= current.version:  # the rule of coalesce()
                latest[item.id] = GuardedWrite(namespace, item.id, item.version, operation)
        future = self.session.submit(namespace, list(latest.values()))
        for write in latest.values():
            self._claims[(write.key, write.version, write.operation)] = future

    def _claim_of(self, key: tuple[str, str]) -> Future[dict[tuple[str, str], Verdict]]:
        winner = self.coalesced.winners[key]
        return self._claims[(key, winner.version, winner.operation)]

    async def admit(self, request: PlannedRequest) -> Admission:
        """The part of ``request`` this invocation may write; raises the guard's error if it could not be asked.

        Stale records are dropped for good; busy ones make the admission incomplete, so the stages
        after this one wait for their redelivery too.
        """
        keys = request_keys(request)
        if not keys:
            return Admission(request)  # a filter operation
        claims = {id(claim): claim for claim in map(self._claim_of, keys)}
        results = await asyncio.gather(*map(asyncio.wrap_future, claims.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        verdicts = {key: self._claim_of(key).result()[key] for key in keys}
        keep = {key for key, verdict in verdicts.items() if verdict is Verdict.CLAIMED}
        complete = all(verdict is not Verdict.BUSY for verdict in verdicts.values())
        return Admission(narrow(request, self.coalesced.winners, keep), complete)

    def settle(self) -> _GuardSummary:
        """After the session closed: the claimed writes, the stale and busy counts, the messages to retry."""
        summary = _GuardSummary()
        busy_until: dict[str, list[float | None]] = {}  # message id -> when each of its busy records frees up
        for key, winner in self.coalesced.winners.items():
            claim = self._claim_of(key)
            error = claim.exception()
            verdict = None if error is not None else claim.result()[key]
            if verdict is Verdict.CLAIMED:
                summary.claimed.append(GuardedWrite(*key, winner.version, winner.operation))
            elif verdict is Verdict.STALE:
                summary.stale += 1
            elif error is not None:
                for message_id in winner.message_ids:
                    summary.failures.setdefault(message_id, error)
            else:
                summary.busy += 1
                for message_id in winner.message_ids:
                    busy_until.setdefault(message_id, []).append(self.session.held_until.get(key))
        for message_id, ends in busy_until.items():
            retry_at = None if None in ends else max(end for end in ends if end is not None)
            busy = BusyWriteError(f"{len(ends)} record(s) held by another worker; retried later", retry_at)
            summary.failures.setdefault(message_id, busy)
        return summary


@dataclass(slots=True)
class _GuardSummary:
    claimed: list[GuardedWrite] = field(default_factory=list)
    stale: int = 0  # acknowledged and dropped
    busy: int = 0  # held by another invocation: retried
    failures: dict[str, BaseException] = field(default_factory=dict)


def _report(
    outcome: WriteOutcome, deps: WorkerDependencies, valid: int, failed: int, guard: _GuardSummary | None
) -> None:
    metrics = deps.metrics
    if guard is not None:
        metrics.add_metric(name="StaleWritesDropped", unit=MetricUnit.Count, value=guard.stale)
        metrics.add_metric(name="BusyWrites", unit=MetricUnit.Count, value=guard.busy)
    metrics.add_metric(name="RecordsUpserted", unit=MetricUnit.Count, value=outcome.records_upserted)
    metrics.add_metric(name="RecordsDeleted", unit=MetricUnit.Count, value=outcome.records_deleted)
    metrics.add_metric(name="PineconeRequests", unit=MetricUnit.Count, value=outcome.requests)
    metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=len(outcome.failures))
    if outcome.deadline_cutoffs:
        metrics.add_metric(name="DeadlineCutoffs", unit=MetricUnit.Count, value=outcome.deadline_cutoffs)
    if outcome.index_not_found:  # alarmed (template.yaml PineconeIndexNotFoundAlarm)
        metrics.add_metric(name="PineconeIndexNotFound", unit=MetricUnit.Count, value=outcome.index_not_found)
    if outcome.retries:
        metrics.add_metric(name="PineconeRetries", unit=MetricUnit.Count, value=outcome.retries)
    if outcome.uncertain_landings:
        metrics.add_metric(name="UncertainLandings", unit=MetricUnit.Count, value=outcome.uncertain_landings)
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
            "index_not_found": outcome.index_not_found,
            "stale_writes_dropped": guard.stale if guard else 0,
            "busy_writes": guard.busy if guard else 0,
        },
    )
