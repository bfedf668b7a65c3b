"""The query service: every query is answered on its reply queue, with matches or an error.

* A valid query runs in its tenant's namespace (always the registry's; no field can widen it),
  concurrently with the rest of the batch and under the invocation's deadline. Its reply carries
  the matches, or, when they would not fit in one SQS message, a pointer to an S3 object.
* An invalid query whose ``reply_to`` is on the allow-list gets an error reply with its code and
  is acknowledged; one with no usable ``reply_to`` is poison and goes to the DLQ with its reasons.
* A query with ``min_lsn`` (read-your-writes) is asked again while the index is behind it, within the
  deadline, and its reply says whether it got there (``fresh``); every ok reply carries the indexed
  LSN it was read at (``lsn``). The waiting is :mod:`vector_relay.query.freshness`.
* A query Pinecone rejects (400) gets an error reply ``pinecone_rejected``.
* A transient failure leaves the query for SQS to redeliver; on its last delivery it gets an error
  reply ``retries_exhausted`` and goes to the DLQ, so no caller waits for an answer that never comes.
* A reply queue that refuses the send (missing, no permission) makes the query a batch item
  failure: a reply is never dropped silently.

Kept as one module (~400 lines): the service, its batch run and the replies they build and send are
one path that nothing else uses (the reply building, from ``_reply_target`` to ``_send_replies``, is
the seam if it grows); how a read-your-writes query waits is in :mod:`vector_relay.query.freshness`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay import tracing
from vector_relay.aws_clients import sqs_client
from vector_relay.contract.fields import MAX_TENANT_CHARS, IndexShape, ValidationContext
from vector_relay.contract.messages import QueryMessage
from vector_relay.contract.parsing import parse_query_message, read_json
from vector_relay.deadline import Deadline
from vector_relay.errors import FailureKind, PoisonMessageError, Problem, TransientError
from vector_relay.keys.api_key_cache import GatewaySource, call_with_key_refresh
from vector_relay.metrics import (
    ERROR_REPLIES_BY_CODE,
    FRESH_REPLIES,
    NOT_FRESH_REPLIES,
    OVERSIZED_REPLIES,
    QUERY_LATENCY,
    QUERY_REPLIES,
    TENANT_QUERY_LATENCY,
    TENANT_QUERY_READ_UNITS,
    TENANT_QUERY_REPLIES,
    TRANSIENT_FAILURES,
    UNREGISTERED_TENANT,
    WRITES_INDEXED_AFTER,
    Metric,
    emit_per_tenant,
)
from vector_relay.pinecone.data_plane import QueryResult
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.query.freshness import Answer, Pacing, query_until_fresh
from vector_relay.query.replies import ReplyTooLargeError, error_reply, ok_reply
from vector_relay.settings import Settings
from vector_relay.sqs.batch_service import Delivery, Poison, Retry, Verdict
from vector_relay.sqs.limits import send_batches
from vector_relay.tenancy import TenantRegistry

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger(child=True)


@dataclass(slots=True)
class PendingReply:
    record: SQSRecord
    reply_to: str
    body: str
    code: str  # "ok" or the error code, for metrics
    dead_letter_after: PoisonMessageError | None = None
    fresh: bool | None = None  # a read-your-writes answer's freshness, for metrics
    indexed_after_ms: float | None = None  # a fresh answer: from its writes' first send (writes_sent_at) to it
    tenant: str = UNREGISTERED_TENANT  # whose answer it is, when the registry has the tenant (per-tenant metrics)
    latency_ms: float | None = None  # an answer: the time of its Pinecone query
    read_units: int | None = None  # an answer: the read units Pinecone reported for it (every attempt)


class QueryService:
    """Answers batches of queries on their reply queues."""

    def __init__(
        self,
        settings: Settings,
        gateways: GatewaySource,
        loop: asyncio.Runner,
        metrics: Metrics,
        pacing: Pacing | None = None,
    ) -> None:
        self.settings = settings
        self.gateways = gateways
        self.loop = loop
        self.metrics = metrics
        self.pacing = pacing or Pacing()  # how read-your-writes queries wait (tests inject the sleep)

    def validation(self, registry: TenantRegistry, index: IndexShape) -> ValidationContext:
        # any queue some tenant may be answered on passes the contract; problems() narrows it to the tenant's own
        allowed = self.settings.reply_queue_allow_list | registry.all_reply_queues()
        return ValidationContext(tenants=registry, index=index, reply_queues=allowed)

    def parse(self, record: SQSRecord, validation: ValidationContext) -> QueryMessage:
        return parse_query_message(record.body, validation)

    def problems(self, message: QueryMessage, registry: TenantRegistry) -> list[Problem]:
        """A reply queue that is not its tenant's (no reply: the sender has no right to write there), or a
        filter its tenant's schema refuses (answered before Pinecone is asked: the filter would silently miss)."""
        if message.reply_to not in self.reply_queues(registry, message.tenant):
            return [Problem("reply_to_not_allowed", "reply_to", "not one of the reply queues of the message's tenant")]
        schema = registry.schema_for(message.tenant)
        return schema.filter_problems(message.filter) if schema is not None and message.filter else []

    def reply_queues(self, registry: TenantRegistry, tenant: str) -> frozenset[str]:
        return registry.reply_queues_for(tenant, self.settings.reply_queue_allow_list)

    def start(self, registry: TenantRegistry, deadline: Deadline) -> QueryRun:
        return QueryRun(self, registry, deadline)


class QueryRun:
    """One batch of queries: the valid ones run concurrently, every answer goes out in batched sends."""

    def __init__(self, service: QueryService, registry: TenantRegistry, deadline: Deadline) -> None:
        self._service = service
        self._registry = registry
        self._deadline = deadline
        self._queries: list[Delivery[QueryMessage]] = []
        self._replies: list[PendingReply] = []

    def take(self, delivery: Delivery[QueryMessage]) -> None:
        self._queries.append(delivery)

    def dead_lettered(self, record: SQSRecord, poison: PoisonMessageError) -> None:
        pass  # a refused query is answered (answer()) or has no one to tell

    def settle(self) -> None:
        pass  # every reply went out in finish()

    def answer(self, record: SQSRecord, poison: PoisonMessageError) -> bool:
        """An invalid query is answered with its code when its reply_to is usable for its tenant.

        A query from a queue that may not act for its tenant (tenant binding), or naming a reply queue
        that is not its tenant's, gets no reply: the reply would go where the sender has no right to write.
        """
        target = _reply_target(record.body, lambda tenant: self._usable_reply_queues(record, tenant))
        if target is None:
            return False
        reply_to, correlation_id, tenant = target
        body = error_reply(correlation_id, tenant, poison.error_code, poison.detail)
        # a metric's dimension only ever names a registered tenant: the registry bounds how many series there are
        known = tenant if tenant is not None and tenant in self._registry else UNREGISTERED_TENANT
        self._replies.append(PendingReply(record, reply_to, body, poison.error_code, tenant=known))
        return True

    def _usable_reply_queues(self, record: SQSRecord, tenant: object) -> frozenset[str]:
        """Where an invalid query that names ``tenant`` (any JSON value) may get its error reply."""
        name = tenant if isinstance(tenant, str) else ""
        if self._registry.binding_problem(record.event_source_arn, name) is not None:
            return frozenset()  # from a tenant's queue for another tenant, or for a bound tenant from elsewhere
        return self._service.reply_queues(self._registry, name)

    def close(self) -> None:
        pass

    def finish(self) -> dict[str, Verdict]:
        service = self._service
        metrics = service.metrics
        verdicts: dict[str, Verdict] = {}
        jobs = [(d.message, self._registry.namespace_for(d.message.tenant)) for d in self._queries]
        spans = tracing.span_log()  # each attempt of each query, for the batch's trace
        queries = _run_queries(jobs, service.gateways, service.settings, self._deadline, service.pacing, spans)
        # this invocation's context, not the first one's that asyncio.Runner keeps (see IngestService.write)
        try:
            results = service.loop.run(queries, context=contextvars.copy_context())
        finally:
            spans.record()  # the queries ran as concurrent tasks: written from the handler's thread
        for delivery, result in zip(self._queries, results, strict=True):
            record, message = delivery.record, delivery.message
            if isinstance(result, Answer):
                try:
                    body, stored = ok_reply(record, message, result.result, result.fresh)
                except ReplyTooLargeError as error:  # the same answer on every delivery: an error reply, not a retry
                    body = error_reply(message.correlation_id, message.tenant, "result_too_large", str(error))
                    self._replies.append(
                        PendingReply(record, message.reply_to, body, "result_too_large", tenant=message.tenant)
                    )
                    continue
                except Exception as error:  # S3 refused, or no time left to store it: this query is retried alone
                    logger.warning(
                        "a large reply could not be stored; the query is retried",
                        extra={"message_id": record.message_id, "error": type(error).__name__},
                    )
                    verdicts[record.message_id] = Retry(
                        TransientError(f"the reply could not be stored: {type(error).__name__}")
                    )
                    continue
                if stored:
                    OVERSIZED_REPLIES.emit(metrics, 1)
                indexed_after = (
                    max(result.at * 1000 - message.writes_sent_at, 0.0)
                    if result.fresh and message.writes_sent_at is not None
                    else None
                )
                self._replies.append(
                    PendingReply(
                        record,
                        message.reply_to,
                        body,
                        "ok",
                        fresh=result.fresh,
                        indexed_after_ms=indexed_after,
                        tenant=message.tenant,
                        latency_ms=result.result.elapsed_ms,
                        read_units=result.result.read_units,
                    )
                )
                QUERY_LATENCY.emit(metrics, result.result.elapsed_ms)
            elif result.kind is FailureKind.REJECTED:
                body = error_reply(message.correlation_id, message.tenant, "pinecone_rejected", str(result))
                self._replies.append(
                    PendingReply(record, message.reply_to, body, "pinecone_rejected", tenant=message.tenant)
                )
            elif delivery.last:  # answered, so no caller waits for an answer that never comes, then dead-lettered
                detail = f"last delivery failed: {result}"
                body = error_reply(message.correlation_id, message.tenant, "retries_exhausted", detail)
                exhausted = PoisonMessageError([Problem("retries_exhausted", "", detail)])
                self._replies.append(
                    PendingReply(record, message.reply_to, body, "retries_exhausted", exhausted, tenant=message.tenant)
                )
            else:
                verdicts[record.message_id] = Retry(TransientError(str(result)))
                TRANSIENT_FAILURES.emit(metrics, 1)
        with tracing.span("reply send") as span:
            sent = _send_replies(self._replies, service_sqs(), metrics)
            span.note(replies=len(self._replies), refused=sum(isinstance(v, Retry) for v in sent.values()))
        return verdicts | sent


def service_sqs() -> SQSClient:
    """An SQS client sure to answer before the invocation must return (asked for each batch of sends)."""
    return sqs_client()


def _reply_target(
    body: str, allowed_for: Callable[[object], frozenset[str]]
) -> tuple[str, str | None, str | None] | None:
    """``(reply_to, correlation_id, tenant)`` of an invalid query, when its reply_to is usable for its tenant.

    The body is read as the contract reads it (same parser, same depth limit): one the contract
    could not read has no reply_to to answer on.
    """
    try:
        raw = read_json(body)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    reply_to = raw.get("reply_to")
    tenant = raw.get("tenant")
    # any JSON value may be in reply_to, even an unhashable one
    if not isinstance(reply_to, str) or reply_to not in allowed_for(tenant):
        return None
    correlation_id = raw.get("correlation_id")
    return (
        reply_to,
        correlation_id if isinstance(correlation_id, str) and len(correlation_id) <= 256 else None,
        tenant if isinstance(tenant, str) and len(tenant) <= MAX_TENANT_CHARS else None,
    )


async def _run_queries(
    jobs: list[tuple[QueryMessage, str]],
    gateways: GatewaySource,
    settings: Settings,
    deadline: Deadline,
    pacing: Pacing,
    spans: tracing.SpanLog = tracing.NO_SPANS,
) -> list[Answer | PineconeRequestError]:
    slots = asyncio.Semaphore(settings.pinecone_max_concurrency)  # held by each attempt, not while it waits

    async def one(message: QueryMessage, namespace: str) -> Answer | PineconeRequestError:
        async def attempt() -> QueryResult | PineconeRequestError:
            with spans.span("pinecone query", "remote") as span:
                span.annotate("tenant", message.tenant)
                span.note(namespace=namespace, top_k=message.top_k)
                result = await ask()
                if isinstance(result, PineconeRequestError):
                    span.failed(result.kind.value, fault=result.kind is not FailureKind.REJECTED)
                else:
                    span.note(matches=len(result.matches), read_units=result.read_units, lsn=result.indexed_lsn)
                return result

        async def ask() -> QueryResult | PineconeRequestError:
            try:
                refreshed = await call_with_key_refresh(
                    gateways,
                    lambda gateway: gateway.query(
                        namespace,
                        top_k=message.top_k,
                        vector=message.vector,
                        record_id=message.id,
                        sparse_vector=message.sparse_vector.model_dump() if message.sparse_vector else None,
                        filter_=message.filter or None,
                        include_values=message.include_values,
                        include_metadata=message.include_metadata,
                        timeout=deadline.left(),
                    ),
                )
            except PineconeRequestError as error:
                return error
            except Exception as error:  # e.g. the secret unreadable during a key refresh: retried by SQS
                logger.warning(
                    "a query failed before Pinecone answered; retried",
                    extra={"namespace": namespace, "error": type(error).__name__},
                    exc_info=error,
                )
                return PineconeRequestError(FailureKind.TRANSIENT, f"the query failed: {type(error).__name__}: {error}")
            return refreshed.value

        return await query_until_fresh(attempt, message.min_lsn, deadline, slots, pacing)

    # A task group, not gather: the invocation returns only when every query has ended (the loop
    # outlives it, and a query left running would resume inside the next invocation).
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(message, namespace)) for message, namespace in jobs]
    return [task.result() for task in tasks]


@dataclass(slots=True)
class _TenantReplies:
    """What one tenant's sent replies of a batch count for in its per-tenant metrics."""

    replies: int = 0
    read_units: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    indexed_after_ms: list[float] = field(default_factory=list)

    def add(self, reply: PendingReply) -> None:
        self.replies += 1
        self.read_units += reply.read_units or 0
        if reply.latency_ms is not None:
            self.latencies_ms.append(reply.latency_ms)
        if reply.indexed_after_ms is not None:
            self.indexed_after_ms.append(reply.indexed_after_ms)

    def metrics(self) -> dict[Metric, float | Sequence[float]]:
        return {
            TENANT_QUERY_REPLIES: self.replies,
            TENANT_QUERY_READ_UNITS: self.read_units,
            TENANT_QUERY_LATENCY: self.latencies_ms,
            WRITES_INDEXED_AFTER: self.indexed_after_ms,
        }


def _send_replies(replies: list[PendingReply], sqs: SQSClient, metrics: Metrics) -> dict[str, Verdict]:
    """Send replies in batches per reply queue; a refused send fails its query (SQS redelivers it).

    A reply sent on a query's last delivery is followed by its dead letter (``dead_letter_after``).
    """
    verdicts: dict[str, Verdict] = {}
    sent: dict[str, int] = {}
    freshness = {True: 0, False: 0}  # sent answers to read-your-writes queries, by their fresh
    by_tenant: dict[str, _TenantReplies] = {}
    by_queue: dict[str, list[PendingReply]] = {}
    for reply in replies:
        by_queue.setdefault(reply.reply_to, []).append(reply)
    for queue_url, pending in by_queue.items():
        for chunk in send_batches(pending, lambda reply: len(reply.body.encode())):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": reply.body} for i, reply in enumerate(chunk)
            ]
            try:
                response: Any = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                refused = {int(item["Id"]): item.get("Message", item["Code"]) for item in response.get("Failed", [])}
            except Exception as error:
                logger.warning("reply queue refused the send", extra={"reply_to": queue_url, "error": str(error)})
                refused = {i: str(error) for i in range(len(chunk))}
            for i, reply in enumerate(chunk):
                if i in refused:
                    verdicts[reply.record.message_id] = Retry(
                        TransientError(f"reply queue refused the reply: {refused[i]}")
                    )
                    continue
                sent[reply.code] = sent.get(reply.code, 0) + 1
                if reply.fresh is not None:
                    freshness[reply.fresh] += 1
                by_tenant.setdefault(reply.tenant, _TenantReplies()).add(reply)
                if reply.dead_letter_after is not None:
                    verdicts[reply.record.message_id] = Poison(reply.dead_letter_after)
    QUERY_REPLIES.emit(metrics, sum(sent.values()))
    if freshness[True]:
        FRESH_REPLIES.emit(metrics, freshness[True])
    if freshness[False]:
        NOT_FRESH_REPLIES.emit(metrics, freshness[False])
    emit_per_tenant({tenant: replies.metrics() for tenant, replies in by_tenant.items()})
    for code, count in sent.items():
        if code != "ok":
            ERROR_REPLIES_BY_CODE.of(code).emit(metrics, count)
    return verdicts
