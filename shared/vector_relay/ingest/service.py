"""The ingest service: a batch of valid write messages planned, admitted and written to Pinecone.

The SQS edge (:mod:`vector_relay.sqs.processor`) hands over each valid message as it is judged and
takes back a verdict for each one that is not done:

1. parse: the contract (:func:`~vector_relay.contract.parsing.parse_write_message`), an upsert's
   records encoded at once for the transport, and, under the version guard, a copy first sent
   longer ago than the guard remembers is ``write_expired`` (:mod:`vector_relay.sqs.message_age`);
2. take: under the guard, the message's records are claimed while the rest is still read
   (:mod:`vector_relay.ingest.admission`);
3. finish: the valid messages are planned into as few Pinecone requests as allowed
   (:mod:`vector_relay.ingest.planning`) and run concurrently under the invocation's deadline
   (:mod:`vector_relay.ingest.runner`), each request admitted by the guard;
4. verdicts: a message Pinecone rejects is poison (``pinecone_rejected``); one whose request failed
   transiently is retried; one that waits for another worker's hold (directly or behind an earlier
   write of its namespace) waits, which is never a failure;
5. receipts: once every verdict is applied, each message whose fate is final (applied, stale, or
   dead-lettered by the edge) is told to its tenant's receipt queue, if it has one
   (:mod:`vector_relay.ingest.receipts`).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from statistics import fmean

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay import tracing
from vector_relay.aws_clients import sqs_client
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.contract.messages import WriteMessage
from vector_relay.contract.parsing import parse_write_message
from vector_relay.contract.tenant_schemas import message_problems
from vector_relay.deadline import Deadline
from vector_relay.errors import BusyWriteError, HeldBehindError, PoisonMessageError, Problem, WaitingError
from vector_relay.ingest.admission import GuardedBatch, GuardSummary
from vector_relay.ingest.early_writes import BackgroundSending, EarlyWrites, Settled, depend_on_early
from vector_relay.ingest.planning import Coalesced, PlannableWrite, PlannedRequest, WritePlan, coalesce, pack
from vector_relay.ingest.receipts import Landed, ReceiptBook, ReceiptsSent
from vector_relay.ingest.runner import Admission, PlanRunner, WriteOutcome
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.keys.api_key_cache import GatewaySource
from vector_relay.metrics import (
    AUTH_REFRESHES,
    BUSY_WRITES,
    DEADLINE_CUTOFFS,
    PINECONE_INDEX_NOT_FOUND,
    PINECONE_LATENCY,
    PINECONE_REQUESTS,
    PINECONE_RETRIES,
    RECEIPTS_LOST,
    RECEIPTS_RETRIED,
    RECEIPTS_SENT,
    RECORDS_DELETED,
    RECORDS_UPSERTED,
    STALE_WRITES_DROPPED,
    TENANT_BUSY_WRITES,
    TENANT_RECORDS_DELETED,
    TENANT_RECORDS_UPSERTED,
    TENANT_STALE_WRITES_DROPPED,
    TRANSIENT_FAILURES,
    UNCERTAIN_LANDINGS,
    WRITE_APPLIED_AFTER,
    Metric,
    emit_per_tenant,
)
from vector_relay.pinecone.wire import encode_upsert
from vector_relay.settings import Settings
from vector_relay.sqs.batch_service import Delivery, Poison, Retry, Verdict, Wait
from vector_relay.sqs.message_age import expired
from vector_relay.tenancy import TenantRegistry

logger = Logger(child=True)


class IngestService:
    """Writes batches of valid messages to Pinecone, through the version guard when there is one."""

    def __init__(
        self,
        settings: Settings,
        gateways: GatewaySource,
        loop: asyncio.Runner,
        metrics: Metrics,
        *,
        guard: VersionGuard | None = None,
    ) -> None:
        self._settings = settings
        self._gateways = gateways
        self._loop = loop
        self._metrics = metrics
        self._guard = guard

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def settings(self) -> Settings:
        return self._settings

    def validation(self, registry: TenantRegistry, index: IndexShape) -> ValidationContext:
        return ValidationContext(tenants=registry, index=index)

    def parse(self, record: SQSRecord, validation: ValidationContext) -> WriteMessage:
        if self._guard is not None:  # no guard, no tombstones to outlive
            problem = expired(
                record, now=self._guard.now(), remembered_seconds=self._settings.write_version_ttl_seconds
            )
            if problem is not None:
                raise PoisonMessageError([problem])
        return parse_write_message(record.body, validation)

    def problems(self, message: WriteMessage, registry: TenantRegistry) -> list[Problem]:
        return message_problems(registry.schema_for(message.tenant), message)

    def start(self, registry: TenantRegistry, deadline: Deadline) -> IngestRun:
        spans = tracing.span_log()  # the batch's guard claims and Pinecone requests, for its trace
        guarded = None
        if self._guard is not None:
            settings = self._settings
            # a lease outlives the invocation: its remaining time, the deadline margin and the clock-skew slack
            lease = deadline.left() + settings.deadline_margin_ms / 1000 + settings.write_version_lease_slack_seconds
            guarded = GuardedBatch(self._guard, lease, deadline, registry, spans)
        runner = self.runner(deadline, guarded.admit if guarded is not None else None, spans)
        sending = BackgroundSending(self._loop, runner, guarded.admit if guarded is not None else None)
        return IngestRun(self, registry, deadline, guarded, spans, runner, sending)

    def encode(self, message: WriteMessage) -> PlannableWrite:
        """An upsert's records encoded once for the transport, as soon as the message is valid."""
        return encode_upsert(message, self._settings.pinecone_transport)

    def runner(
        self,
        deadline: Deadline,
        admit: Callable[[PlannedRequest], Awaitable[Admission]] | None = None,
        spans: tracing.SpanLog = tracing.NO_SPANS,
    ) -> PlanRunner:
        """A runner for one batch's requests (each admitted by ``admit`` first, if given)."""
        return PlanRunner(
            self._gateways,
            deadline=deadline,
            max_concurrency=self._settings.pinecone_max_concurrency,
            namespace_rate_limit=self._settings.pinecone_namespace_rate_limit,
            admit=admit,
            spans=spans,
        )

    def run(self, runner: PlanRunner, plan: WritePlan) -> WriteOutcome:
        """Run ``plan`` on the service's event loop, in this thread."""
        # In this invocation's context: asyncio.Runner.run would otherwise use the context of the container's
        # first invocation, whose AWS time box (deadline.invocation_deadline) has long ended.
        return self._loop.run(runner.run(plan), context=contextvars.copy_context())

    def report(self, outcome: WriteOutcome, valid: int, failed: int, guard: GuardSummary | None) -> None:
        _report(outcome, self._metrics, valid, failed, guard)


class IngestRun:
    """One batch: the valid messages in batch order, claimed as they come when guarded."""

    def __init__(
        self,
        service: IngestService,
        registry: TenantRegistry,
        deadline: Deadline,
        guarded: GuardedBatch | None,
        spans: tracing.SpanLog,
        runner: PlanRunner,
        sending: BackgroundSending,
    ) -> None:
        self._service = service
        self._registry = registry
        self._deadline = deadline
        self._guarded = guarded
        self._spans = spans
        self._runner = runner
        self._sending = sending  # requests that fill up while the batch is read go out at once (early_writes)
        self._early = EarlyWrites(sending.send)
        self._valid: list[Delivery[PlannableWrite]] = []
        self._receipts = ReceiptBook(registry)
        self._landed: dict[str, Landed] = {}  # by message id, once the batch has run: for dead letters' receipts
        self._outcome: WriteOutcome | None = None  # once the batch has run: the per-tenant metrics come from it
        self._summary: GuardSummary | None = None

    def take(self, delivery: Delivery[WriteMessage]) -> None:
        valid = Delivery(delivery.record, self._service.encode(delivery.message), delivery.last)
        self._valid.append(valid)
        if self._guarded is not None:
            self._guarded.submit(valid.message)  # its claims first: an early request waits for them
        namespace = self._registry.namespace_for(valid.message.tenant)
        self._early.add(valid.record.message_id, namespace, valid.message)

    def answer(self, record: SQSRecord, poison: PoisonMessageError) -> bool:
        return False  # a refused write has no one to answer: it is dead-lettered

    def close(self) -> None:
        try:
            self._sending.close()  # nothing is left running whatever happened
        except Exception as error:  # already raised by finish() if it ran; here only logged, and the rest closes
            logger.warning("the batch's sending thread ended with an error", extra={"error": type(error).__name__})
        if self._guarded is not None:
            self._guarded.session.close()
        self._spans.record()  # every claim and request has ended: written from the handler's thread

    def dead_lettered(self, record: SQSRecord, poison: PoisonMessageError) -> None:
        try:
            self._receipts.dead_lettered(record, poison, self._landed.get(record.message_id))
        except Exception as error:  # the message is dead-lettered already: a receipt must not undo that
            logger.exception("could not build a write receipt", extra={"error": type(error).__name__})
            RECEIPTS_LOST.emit(self._service.metrics, 1)

    def settle(self) -> None:
        """Send the batch's write receipts: after every verdict, so none is sent before its write landed."""
        pending = list(self._receipts.pending)
        try:
            emit_per_tenant(self._tenant_metrics())
        except Exception as error:  # a figure: never the receipts' or the batch's failure
            logger.warning("could not count the batch per tenant", extra={"error": type(error).__name__})
        try:
            if not pending:
                return
            with tracing.span("receipt send") as span:
                outcome = self._receipts.send(sqs_client(), self._service.settings.receipt_retry_queue_url)
                span.note(receipts=len(pending), sent=outcome.sent, retried=outcome.retried, lost=len(outcome.lost))
        except Exception as error:  # the batch is done whatever happens here
            logger.exception("could not send write receipts", extra={"error": type(error).__name__})
            outcome = ReceiptsSent(lost=pending)
        metrics = self._service.metrics
        RECEIPTS_SENT.emit(metrics, outcome.sent)
        if outcome.retried:
            RECEIPTS_RETRIED.emit(metrics, outcome.retried)
        if outcome.lost:
            RECEIPTS_LOST.emit(metrics, len(outcome.lost))
            logger.error(
                "write receipts lost: neither their queue nor the retry queue took them",
                extra={"receipts": len(outcome.lost), "message_ids": [receipt.message_id for receipt in outcome.lost]},
            )

    def _tenant_metrics(self) -> dict[str, dict[Metric, float | Sequence[float]]]:
        """Each tenant's share of the batch: records written, stale, busy, and how long its writes took."""
        by_tenant: dict[str, dict[Metric, float | Sequence[float]]] = {}
        counts: list[tuple[Metric, Mapping[str, int]]] = []
        if self._outcome is not None:
            counts += [
                (TENANT_RECORDS_UPSERTED, self._outcome.upserted_by_namespace),
                (TENANT_RECORDS_DELETED, self._outcome.deleted_by_namespace),
            ]
        if self._summary is not None:
            counts += [
                (TENANT_STALE_WRITES_DROPPED, self._summary.stale_by_namespace),
                (TENANT_BUSY_WRITES, self._summary.busy_by_namespace),
            ]
        for metric, by_namespace in counts:
            for namespace, count in by_namespace.items():
                tenant = self._registry.tenant_of_namespace(namespace)
                if tenant is not None:
                    by_tenant.setdefault(tenant, {})[metric] = count
        for tenant, after in self._receipts.applied_after.items():
            by_tenant.setdefault(tenant, {})[WRITE_APPLIED_AFTER] = after
        return by_tenant

    def finish(self) -> dict[str, Verdict]:
        service, guarded = self._service, self._guarded
        if guarded is not None:
            guarded.session.seal()  # the last claims leave now, while the batch is planned
        writes = [(d.record.message_id, self._registry.namespace_for(d.message.tenant), d.message) for d in self._valid]
        coalesced = coalesce(writes)
        settled = self._early.settle(coalesced) if self._sending.started else None
        plan = pack(coalesced, exclude=settled.sent if settled is not None else ())
        summary: GuardSummary | None = None
        if guarded is None:
            outcome = self._run(plan, settled)
        else:
            guarded.coalesced = coalesced
            try:
                outcome = self._run(plan, settled)
            finally:
                guarded.session.close()
            summary = guarded.settle(self._early.sent)
            # Release what landed. A failed or cancelled request may still reach Pinecone late, so its
            # records stay leased until the lease expires and no newer write can overtake it. The marker
            # is sent, not waited for: the batch is done whether or not it is written.
            with tracing.span("guard release") as span:
                span.note(claimed=len(summary.claimed), landed=len(outcome.landed))
                guarded.guard.release(guarded.session.lease, summary.claimed, outcome.landed, wait=False)
        if settled is not None:
            depend_on_early(outcome, settled, coalesced, self._sending)
        for message_id, error in (summary.failures if summary else {}).items():
            if message_id not in outcome.poison:
                outcome.failures[message_id] = _own_reason_first(outcome.failures.get(message_id), error)
        _wait_with_the_busy(outcome.failures)
        verdicts: dict[str, Verdict] = {message_id: Poison(poison) for message_id, poison in outcome.poison.items()}
        for delivery, (_, namespace, _) in zip(self._valid, writes, strict=True):
            # batch order: a waiting copy is requeued in the order it was sent
            message_id = delivery.record.message_id
            failed = outcome.failures.get(message_id)
            if message_id in verdicts:
                continue
            if failed is not None:
                verdicts[message_id] = Wait(failed) if isinstance(failed, WaitingError) else Retry(failed)
            else:
                self._receipt_for(delivery, namespace, coalesced, outcome)
        self._landed = {
            d.record.message_id: Landed(namespace, d.message, coalesced, outcome)
            for d, (_, namespace, _) in zip(self._valid, writes, strict=True)
            if d.record.message_id in outcome.poison or d.last
        }
        service.report(outcome, len(self._valid), len(verdicts), summary)
        self._outcome, self._summary = outcome, summary
        return verdicts

    def _run(self, plan: WritePlan, settled: Settled | None) -> WriteOutcome:
        """The plan, after or beside what was sent early (on the sending thread), else here on the handler's."""
        if settled is not None:
            return self._sending.finish(plan, settled.rewritten)
        return self._service.run(self._runner, plan)

    def _receipt_for(
        self, delivery: Delivery[PlannableWrite], namespace: str, coalesced: Coalesced, outcome: WriteOutcome
    ) -> None:
        """A done message's receipt (and freshness figure); a failure here is logged, never the batch's."""
        try:
            self._receipts.done(delivery.record, namespace, delivery.message, coalesced, outcome)
        except Exception as error:  # its write landed and it is acknowledged whatever happens here
            logger.exception("could not build a write receipt", extra={"error": type(error).__name__})
            RECEIPTS_LOST.emit(self._service.metrics, 1)


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


def _report(outcome: WriteOutcome, metrics: Metrics, valid: int, failed: int, guard: GuardSummary | None) -> None:
    if guard is not None:
        STALE_WRITES_DROPPED.emit(metrics, guard.stale)
        BUSY_WRITES.emit(metrics, guard.busy)
    RECORDS_UPSERTED.emit(metrics, outcome.records_upserted)
    RECORDS_DELETED.emit(metrics, outcome.records_deleted)
    PINECONE_REQUESTS.emit(metrics, outcome.requests)
    TRANSIENT_FAILURES.emit(metrics, len(outcome.failures))
    if outcome.deadline_cutoffs:
        DEADLINE_CUTOFFS.emit(metrics, outcome.deadline_cutoffs)
    if outcome.index_not_found:  # alarmed (template.yaml PineconeIndexNotFoundAlarm)
        PINECONE_INDEX_NOT_FOUND.emit(metrics, outcome.index_not_found)
    if outcome.retries:
        PINECONE_RETRIES.emit(metrics, outcome.retries)
    if outcome.uncertain_landings:
        UNCERTAIN_LANDINGS.emit(metrics, outcome.uncertain_landings)
    if outcome.auth_refreshes:
        AUTH_REFRESHES.emit(metrics, outcome.auth_refreshes)
    for latency in outcome.latencies_ms:
        PINECONE_LATENCY.emit(metrics, latency)
    logger.info(
        "ingest batch done",
        extra={
            "valid_messages": valid,
            "failed_messages": failed,
            "records_upserted": outcome.records_upserted,
            "records_deleted": outcome.records_deleted,
            "pinecone_requests": outcome.requests,
            "early_requests": outcome.early_requests,
            "mean_latency_ms": round(fmean(outcome.latencies_ms), 1) if outcome.latencies_ms else None,
            "rejected_messages": len(outcome.poison),
            "deadline_cutoffs": outcome.deadline_cutoffs,
            "index_not_found": outcome.index_not_found,
            "stale_writes_dropped": guard.stale if guard else 0,
            "busy_writes": guard.busy if guard else 0,
        },
    )
