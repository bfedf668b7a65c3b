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

from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import fmean

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.batching import Coalesced, coalesce, pack
from vector_relay.contract import ValidationContext, WriteMessage
from vector_relay.errors import PoisonMessageError, Problem, TransientError
from vector_relay.validation import parse_write_message
from vector_relay.version_guard import GuardedWrite, GuardUnavailableError, Verdict
from vector_relay.worker import WorkerDependencies, dead_letter, invocation_budget, last_delivery, sort_batch
from vector_relay.writer import Deadline, PlanRunner, WriteOutcome

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
    guard = _claim(coalesced, deps, context)
    plan = pack(coalesced, exclude=guard.excluded)
    runner = PlanRunner(
        deps.gateways,
        deadline=deadline,
        max_concurrency=deps.settings.pinecone_max_concurrency,
        namespace_rate_limit=deps.settings.pinecone_namespace_rate_limit,
    )
    outcome = deps.loop.run(runner.run(plan))
    if deps.guard is not None and guard.claimed:
        # Release what landed. A failed or cancelled request may still reach Pinecone late, so its
        # records stay leased until the lease expires and no newer write can overtake it.
        landed = [write for write in guard.claimed if write.key in outcome.landed]
        deps.guard.release(landed, lease_seconds=guard.lease_seconds, claimed_at=deps.guard.last_claim_at)
    for message_id, error in guard.failures.items():
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
    _report(outcome, deps, len(batch.valid), len(failures), guard.stale)
    return failures


@dataclass(slots=True)
class _GuardResult:
    claimed: list[GuardedWrite] = field(default_factory=list)
    excluded: set[tuple[str, str]] = field(default_factory=set)
    failures: dict[str, BaseException] = field(default_factory=dict)
    stale: int = 0
    lease_seconds: float = 0.0


def _claim(coalesced: Coalesced, deps: WorkerDependencies, context: LambdaContext | None) -> _GuardResult:
    """Ask the version guard about every winning write: claimed ones are sent, stale ones dropped, busy ones retried."""
    result = _GuardResult()
    if deps.guard is None or not coalesced.winners:
        return result
    writes = {
        key: GuardedWrite(w.namespace, w.record_id, w.version, w.operation) for key, w in coalesced.winners.items()
    }
    settings = deps.settings
    lease_seconds = (
        invocation_budget(context, deps)
        + settings.deadline_margin_ms / 1000
        + settings.write_version_lease_slack_seconds
    )
    result.lease_seconds = lease_seconds
    try:
        verdicts = deps.guard.claim(list(writes.values()), lease_seconds=lease_seconds)
    except GuardUnavailableError as error:
        result.excluded = set(writes)
        for winner in coalesced.winners.values():
            for message_id in winner.message_ids:
                result.failures.setdefault(message_id, error)
        return result
    for key, verdict in verdicts.items():
        if verdict is Verdict.CLAIMED:
            result.claimed.append(writes[key])
            continue
        result.excluded.add(key)
        if verdict is Verdict.STALE:
            result.stale += 1
        else:
            busy = TransientError(f"record {key[1]!r} is being written by another worker; retried later")
            for message_id in coalesced.winners[key].message_ids:
                result.failures.setdefault(message_id, busy)
    return result


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
