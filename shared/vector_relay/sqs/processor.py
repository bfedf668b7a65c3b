"""The Lambda SQS edge: one batch processor for the ingest and query workers.

Powertools' :class:`BatchProcessor` calls a handler per record; writing to Pinecone well needs the
whole batch (to coalesce records into few requests), so :class:`SqsBatchProcessor` overrides
``process()`` and does, in one pass down and one back up:

1. bounds every AWS call of the invocation by the time it has left (:func:`invocation_deadline`);
2. sorts the batch: each message is judged on its own (the service's contract, the tenant binding,
   the service's own checks); poison is dead-lettered with its reasons without disturbing the
   others, unless the service answers it itself (a query's error reply), and a refusal for the
   tenant gets a second look at the registry first (:mod:`vector_relay.sqs.tenant_refusals`);
3. hands the valid messages to the service (:class:`BatchRun`), which returns a verdict for each
   message that is not done (:data:`Verdict`);
4. applies the verdicts: a retry is a batch item failure (on the last delivery before the redrive
   policy moves it, a dead letter ``retries_exhausted`` with the last error); a wait comes back
   when the hold ends (on its last delivery it is sent again as a fresh copy); poison is
   dead-lettered. Response building and the partial-failure report stay Powertools'.

Services never call back into the edge: they get deliveries and give verdicts.

Kept as one module at ~360 lines, just over the ~350 bound: the verdicts and protocols at its top
are the edge's whole contract with its services and read best beside the pass that applies them
(they are the seam, a ``sqs/verdicts.py``, if it grows).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, assert_never

import orjson
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay import tracing
from vector_relay.aws_clients import sqs_client
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.deadline import FINISH_SECONDS, Deadline, invocation_deadline
from vector_relay.errors import ConfigurationError, PoisonMessageError, Problem, TransientError, WaitingError
from vector_relay.metrics import (
    BUSY_REQUEUED,
    POISON_MESSAGES,
    POISON_MESSAGES_BY_CODE,
    TENANT_POISON_MESSAGES,
    UNREGISTERED_TENANT,
    emit_per_tenant,
)
from vector_relay.settings import Settings
from vector_relay.sqs.batch_service import BatchRun, BatchService, Delivery, HasTenant, Poison, Retry, Wait
from vector_relay.sqs.dead_letter import route_poison
from vector_relay.sqs.queues import redrive_target_url
from vector_relay.sqs.redelivery import MAX_RETRY_DELAY_SECONDS, requeue, retry_soon
from vector_relay.sqs.tenant_refusals import REGISTRY_REFUSALS, SecondLook, unconfirmed
from vector_relay.sqs.timing import check_timing
from vector_relay.tenancy import TenantRegistry, TenantRegistrySource

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

# Used when there is no Lambda context (a direct call from a script or a test).
DEFAULT_BUDGET_SECONDS = 30.0


class IndexShapes(Protocol):
    def current(self) -> IndexShape: ...


@dataclass(slots=True)
class Edge:
    """What the edge works with, built once per container by the composition root (``vector_relay.dependencies``)."""

    settings: Settings
    tenants: TenantRegistrySource
    index: IndexShapes
    metrics: Metrics
    guarded: bool = False  # writes go through the version guard (the timing check asks more of the margin)
    clock: Callable[[], float] = time.time  # the clock of WaitingError.retry_at (the version guard's)
    timing_checked: bool = False

    @property
    def sqs(self) -> SQSClient:
        """An SQS client sure to answer before the invocation must return (asked for each call)."""
        return sqs_client()

    def last_delivery(self, record: SQSRecord) -> bool:
        return int(record.attributes.approximate_receive_count) >= self.settings.source_queue_max_receive_count


@dataclass(frozen=True, slots=True)
class Worker[M: HasTenant]:
    edge: Edge
    service: BatchService[M]


class SqsBatchProcessor(BatchProcessor):
    """Sorts, dead-letters, bounds time, hands valid messages to a service and applies its verdicts.

    Its record handler (``process_partial_response(record_handler=...)``) returns the container's
    :class:`Worker`: the edge's collaborators and the service, built on a container's first invocation.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(event_type=EventType.SQS, **kwargs)

    def process(self) -> list[tuple[Any, ...]]:
        records = [SQSRecord(raw) for raw in self.records]
        context: LambdaContext | None = getattr(self, "lambda_context", None)
        tally = Tally()
        try:
            with _aws_calls_bounded(context):
                failures = handle_batch(records, context, self.handler(), tally)
        except Exception as batch_error:  # the batch could not be sorted: every message is retried
            failures = {record.message_id: batch_error for record in records}
        tracing.annotate_batch(
            messages=len(records), tenants=tally.tenants, dead_lettered=tally.dead_lettered, retried=len(failures)
        )
        results: list[tuple[Any, ...]] = []
        for record in records:
            error = failures.get(record.message_id)
            if error is None:
                results.append(self.success_handler(record=record, result=None))
            else:
                results.append(self.failure_handler(record=record, exception=(type(error), error, error.__traceback__)))
        return results


@dataclass(slots=True)
class Tally:
    """What became of a batch, for its trace (:func:`vector_relay.tracing.annotate_batch`)."""

    tenants: list[str] = field(default_factory=list)  # the tenant of each valid message
    dead_lettered: int = 0
    dead_letters: list[tuple[SQSRecord, str]] = field(default_factory=list)  # each sent, with its error code


@contextmanager
def _aws_calls_bounded(context: LambdaContext | None) -> Iterator[None]:
    """Every AWS call of the batch ends before the invocation must return (no bound without a context)."""
    if context is None:
        yield
        return
    with invocation_deadline(context.get_remaining_time_in_millis() / 1000 - FINISH_SECONDS):
        yield


def handle_batch[M: HasTenant](
    records: list[SQSRecord], context: LambdaContext | None, worker: Worker[M], tally: Tally | None = None
) -> dict[str, BaseException]:
    """The messages SQS must redeliver, by message id; everything else was done or dead-lettered.

    ``tally`` is told each valid message's tenant and each dead letter sent.
    """
    tally = Tally() if tally is None else tally
    edge, service = worker.edge, worker.service
    check_timing(context, edge)
    deadline = Deadline(invocation_budget(context, edge.settings))
    registry = edge.tenants.current()
    failures: dict[str, BaseException] = {}
    run = service.start(registry, deadline)
    try:
        _sort(records, edge, service, registry, run, failures, tally)
        verdicts = run.finish()
    finally:
        run.close()
    by_id = {record.message_id: record for record in records}
    waiting: list[tuple[SQSRecord, float]] = []
    for message_id, verdict in verdicts.items():
        record = by_id[message_id]
        match verdict:
            case Poison(error):
                if dead_letter(edge, record, error, failures):
                    _dead_lettered(run, record, error, tally)
            case Retry(error) if not edge.last_delivery(record):
                failures[message_id] = error
            case Wait(error) if not edge.last_delivery(record):
                failures[message_id] = error
                if error.retry_at is not None:
                    delay = min(max(math.ceil(error.retry_at - edge.clock()) + 1, 1), MAX_RETRY_DELAY_SECONDS)
                    waiting.append((record, delay))
            case Wait(error) if _requeue(edge, record, error):
                pass  # a fresh copy waits on; this one is done
            case Retry(error) | Wait(error):
                exhausted = PoisonMessageError([Problem("retries_exhausted", "", f"last delivery failed: {error}")])
                if dead_letter(edge, record, exhausted, failures):
                    _dead_lettered(run, record, exhausted, tally)
            case _:
                assert_never(verdict)
    if waiting:  # back when the hold ends, not after the queue's visibility timeout (minutes)
        retry_soon(edge.sqs, waiting)
    run.settle()
    _count_dead_letters_by_tenant(tally.dead_letters, registry)
    return failures


def _count_dead_letters_by_tenant(dead_letters: list[tuple[SQSRecord, str]], registry: TenantRegistry) -> None:
    """The batch's dead letters in the per-tenant metric: a line per tenant and code, the code a property.

    The properties (``error_code``, ``dead_letters``) are for Logs Insights (the saved query
    ``relay-dead-letters-by-tenant``): a code per tenant as a dimension would multiply the series.
    """
    try:
        counted = Counter((_tenant_of(record, registry), error_code) for record, error_code in dead_letters)
        for (tenant, error_code), count in counted.items():
            emit_per_tenant(
                {tenant: {TENANT_POISON_MESSAGES: count}},
                {tenant: {"error_code": error_code, "dead_letters": count}},
            )
    except Exception as error:  # the messages are dead-lettered: a metric must not fail their batch
        logger.warning("could not write the dead letters' per-tenant metric", extra={"error": type(error).__name__})


def _tenant_of(record: SQSRecord, registry: TenantRegistry) -> str:
    """A dead letter's tenant for its metric: its queue's bound tenant, else the registered tenant it names.

    A tenant the registry does not have (or a body that names none) is ``-``: a dimension value never
    comes from a message alone, so the registry bounds the series.
    """
    bound = registry.bound_tenant(record.event_source_arn)
    if bound is not None:
        return bound
    try:
        body = orjson.loads(record.body)
    except orjson.JSONDecodeError:
        return UNREGISTERED_TENANT
    tenant = body.get("tenant") if isinstance(body, dict) else None
    return tenant if isinstance(tenant, str) and tenant in registry else UNREGISTERED_TENANT


def _requeue(edge: Edge, record: SQSRecord, error: WaitingError) -> bool:
    delay = 0.0 if error.retry_at is None else error.retry_at - edge.clock() + 1
    if not requeue(edge.sqs, record, delay):
        return False
    BUSY_REQUEUED.emit(edge.metrics, 1)
    return True


def _sort[M: HasTenant](
    records: list[SQSRecord],
    edge: Edge,
    service: BatchService[M],
    registry: TenantRegistry,
    run: BatchRun[M],
    failures: dict[str, BaseException],
    tally: Tally,
) -> None:
    """Judge each record; hand the valid ones to ``run``; dead-letter (or let ``run`` answer) the poison.

    A refusal for the tenant (``unknown_tenant``, ``tenant_not_bound``) gets a second look first
    (:class:`SecondLook`): a message the registry as it is now would take is retried at once rather
    than refused.
    """
    index = edge.index.current()
    validation = service.validation(registry, index)
    second_look = SecondLook(edge.tenants) if edge.tenants.rereadable else None
    retry_in: list[tuple[SQSRecord, float]] = []

    def judge(record: SQSRecord, tenants: TenantRegistry, validation: ValidationContext) -> M:
        message = service.parse(record, validation)
        problem = tenants.binding_problem(record.event_source_arn, message.tenant)
        problems = [problem] if problem is not None else service.problems(message, tenants)
        if problems:
            raise PoisonMessageError(problems)
        return message

    for record in records:
        try:
            message = judge(record, registry, validation)
        except PoisonMessageError as poison:
            verdict: PoisonMessageError | float = poison
            if second_look is not None and poison.error_code in REGISTRY_REFUSALS:
                try:
                    verdict = second_look.confirm(
                        record, poison, lambda late, fresh: judge(late, fresh, service.validation(fresh, index))
                    )
                except Exception as error:  # a defect here must not fail the batch-mates
                    _retry_alone(record, error, failures)
                    continue
            match verdict:
                case PoisonMessageError():
                    try:
                        answered = run.answer(record, verdict)
                    except Exception as error:  # the message is poison already: whatever fails here, it is refused
                        logger.warning(
                            "could not answer a refused message; it is dead-lettered",
                            extra={"message_id": record.message_id, "error": type(error).__name__},
                        )
                        answered = False
                    if not answered and dead_letter(edge, record, verdict, failures):
                        _dead_lettered(run, record, verdict, tally)
                case float() if edge.last_delivery(record):  # SQS would move it on without a reason: say why
                    why = f"last delivery: {unconfirmed(poison, verdict)}"
                    exhausted = PoisonMessageError([Problem("retries_exhausted", "tenant", why)])
                    if dead_letter(edge, record, exhausted, failures):
                        _dead_lettered(run, record, exhausted, tally)
                case float():
                    failures[record.message_id] = TransientError(unconfirmed(poison, verdict))
                    retry_in.append((record, verdict))
                case _:
                    assert_never(verdict)
            continue
        except Exception as error:  # a defect here must not fail the batch-mates
            _retry_alone(record, error, failures)
            continue
        run.take(Delivery(record, message, edge.last_delivery(record)))
        tally.tenants.append(message.tenant)
    if retry_in:
        retry_soon(edge.sqs, retry_in)


def _dead_lettered[M](run: BatchRun[M], record: SQSRecord, poison: PoisonMessageError, tally: Tally) -> None:
    tally.dead_lettered += 1
    tally.dead_letters.append((record, poison.error_code))
    run.dead_lettered(record, poison)


def _retry_alone(record: SQSRecord, error: Exception, failures: dict[str, BaseException]) -> None:
    """An unexpected error while sorting one message (a defect, not proven poison): SQS retries that message only.

    After ``maxReceiveCount`` it reaches the DLQ (``retries_exhausted``). Logged with the error's type
    and the message id, never the body.
    """
    logger.exception(
        "unexpected error while validating a message; it alone is retried",
        extra={"message_id": record.message_id, "error": type(error).__name__},
    )
    failures[record.message_id] = TransientError(f"unexpected {type(error).__name__} while validating the message")


def dead_letter(edge: Edge, record: SQSRecord, poison: PoisonMessageError, failures: dict[str, BaseException]) -> bool:
    """Send ``record`` to the DLQ with its reasons (True); if that fails, add it to ``failures`` so SQS keeps it.

    A message from a tenant's own queue goes to that queue's DLQ (its redrive policy's target), the
    rest to ``DEAD_LETTER_QUEUE_URL``.
    """
    try:
        with tracing.span("dead-letter send") as span:
            span.annotate("error_code", poison.error_code)
            span.note(message_id=record.message_id)
            route_poison(edge.sqs, dead_letter_queue_url=_dead_letter_url(edge, record), record=record, error=poison)
    except (ClientError, BotoCoreError, ConfigurationError) as error:  # the tenant queue's DLQ could not be found
        logger.error(
            "no DLQ for a message's source queue", extra={"message_id": record.message_id, "error": str(error)}
        )
        failures[record.message_id] = TransientError(f"the DLQ of the source queue is unknown: {error}")
    except TransientError as error:
        failures[record.message_id] = error
    else:
        POISON_MESSAGES.emit(edge.metrics, 1)
        POISON_MESSAGES_BY_CODE.of(poison.error_code).emit(edge.metrics, 1)
        return True
    return False


def _dead_letter_url(edge: Edge, record: SQSRecord) -> str:
    """Where ``record``'s poison goes: its tenant queue's own DLQ, or the function's configured one."""
    source = record.event_source_arn
    if edge.tenants.current().bound_tenant(source) is None:
        return edge.settings.require("dead_letter_queue_url")
    return redrive_target_url(edge.sqs, source)


def invocation_budget(context: LambdaContext | None, settings: Settings) -> float:
    """Seconds this invocation may spend on Pinecone: the Lambda time left minus the margin to finish up."""
    if context is None:
        return DEFAULT_BUDGET_SECONDS
    return (context.get_remaining_time_in_millis() - settings.deadline_margin_ms) / 1000
