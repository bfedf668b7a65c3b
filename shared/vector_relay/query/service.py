"""The query service: every query is answered on its reply queue, with matches or an error.

* A valid query runs in its tenant's namespace (always the registry's; no field can widen it),
  concurrently with the rest of the batch and under the invocation's deadline. Its reply carries
  the matches, or, when they would not fit in one SQS message, a pointer to an S3 object.
* An invalid query whose ``reply_to`` is on the allow-list gets an error reply with its code and
  is acknowledged; one with no usable ``reply_to`` is poison and goes to the DLQ with its reasons.
* A query Pinecone rejects (400) gets an error reply ``pinecone_rejected``.
* A transient failure leaves the query for SQS to redeliver; on its last delivery it gets an error
  reply ``retries_exhausted`` and goes to the DLQ, so no caller waits for an answer that never comes.
* A reply queue that refuses the send (missing, no permission) makes the query a batch item
  failure: a reply is never dropped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.aws_clients import s3_client, sqs_client
from vector_relay.contract.messages import (
    MAX_TENANT_CHARS,
    IndexShape,
    Match,
    QueryMessage,
    QueryReplyError,
    QueryReplyOk,
    ReplyError,
    ResultLocation,
    Usage,
    ValidationContext,
)
from vector_relay.contract.parsing import parse_query_message, read_json
from vector_relay.deadline import MIN_REQUEST_SECONDS, Deadline
from vector_relay.errors import FailureKind, PoisonMessageError, Problem, TransientError
from vector_relay.keys.api_key_cache import GatewaySource, call_with_key_refresh
from vector_relay.pinecone.data_plane import QueryResult
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.settings import Settings
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES, send_batches
from vector_relay.sqs.processor import Delivery, Poison, Retry, Verdict
from vector_relay.tenancy import TenantRegistry

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger(child=True)

# Room kept below the SQS limit for the batch entry's id and bookkeeping.
MAX_INLINE_REPLY_BYTES = SQS_MAX_MESSAGE_BYTES - 1024
# The relay's bound on one reply (its JSON, inline or stored in S3). Pinecone refuses results over
# 4 MB itself, but measures them its own way; this bound holds whatever Pinecone returns, so a
# batch of 10 large answers stays well inside the function's memory. A larger reply is answered
# with result_too_large, never retried (docs/contract.md, "Replies").
MAX_REPLY_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class PendingReply:
    record: SQSRecord
    reply_to: str
    body: str
    code: str  # "ok" or the error code, for metrics
    dead_letter_after: PoisonMessageError | None = None


class QueryService:
    """Answers batches of queries on their reply queues."""

    def __init__(self, settings: Settings, gateways: GatewaySource, loop: asyncio.Runner, metrics: Metrics) -> None:
        self.settings = settings
        self.gateways = gateways
        self.loop = loop
        self.metrics = metrics

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

    def answer(self, record: SQSRecord, poison: PoisonMessageError) -> bool:
        """An invalid query is answered with its code when its reply_to is usable for its tenant.

        A query from a queue that may not act for its tenant (tenant binding), or naming a reply queue
        that is not its tenant's, gets no reply: the reply would go where the sender has no right to write.
        """
        target = _reply_target(record.body, lambda tenant: self._usable_reply_queues(record, tenant))
        if target is None:
            return False
        reply_to, correlation_id, tenant = target
        body = _error_reply(correlation_id, tenant, poison.error_code, poison.detail)
        self._replies.append(PendingReply(record, reply_to, body, poison.error_code))
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
        results = service.loop.run(_run_queries(jobs, service.gateways, service.settings, self._deadline))
        for delivery, result in zip(self._queries, results, strict=True):
            record, message = delivery.record, delivery.message
            if isinstance(result, QueryResult):
                try:
                    body, stored = _ok_reply(record, message, result)
                except ReplyTooLargeError as error:  # the same answer on every delivery: an error reply, not a retry
                    body = _error_reply(message.correlation_id, message.tenant, "result_too_large", str(error))
                    self._replies.append(PendingReply(record, message.reply_to, body, "result_too_large"))
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
                    metrics.add_metric(name="OversizedReplies", unit=MetricUnit.Count, value=1)
                self._replies.append(PendingReply(record, message.reply_to, body, "ok"))
                metrics.add_metric(name="QueryLatency", unit=MetricUnit.Milliseconds, value=result.elapsed_ms)
            elif result.kind is FailureKind.REJECTED:
                body = _error_reply(message.correlation_id, message.tenant, "pinecone_rejected", str(result))
                self._replies.append(PendingReply(record, message.reply_to, body, "pinecone_rejected"))
            elif delivery.last:  # answered, so no caller waits for an answer that never comes, then dead-lettered
                detail = f"last delivery failed: {result}"
                body = _error_reply(message.correlation_id, message.tenant, "retries_exhausted", detail)
                exhausted = PoisonMessageError([Problem("retries_exhausted", "", detail)])
                self._replies.append(PendingReply(record, message.reply_to, body, "retries_exhausted", exhausted))
            else:
                verdicts[record.message_id] = Retry(TransientError(str(result)))
                metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
        verdicts |= _send_replies(self._replies, service_sqs(), metrics)
        return verdicts


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


def _error_reply(correlation_id: str | None, tenant: str | None, code: str, message: str) -> str:
    reply = QueryReplyError(correlation_id=correlation_id, tenant=tenant, error=ReplyError(code=code, message=message))
    return reply.model_dump_json(exclude_none=True)


class ReplyTooLargeError(Exception):
    """The reply to a query would exceed :data:`MAX_REPLY_BYTES`."""


def _ok_reply(record: SQSRecord, message: QueryMessage, result: QueryResult) -> tuple[str, bool]:
    """The reply body, and whether the matches went to S3 because they exceed one SQS message.

    Raises :class:`ReplyTooLargeError` past the relay's bound on a reply.
    """
    usage = Usage(read_units=result.read_units) if result.read_units is not None else None
    matches = [Match.model_construct(**match) for match in result.matches]
    reply = QueryReplyOk(correlation_id=message.correlation_id, tenant=message.tenant, matches=matches, usage=usage)
    body = reply.model_dump_json(exclude_none=True)
    size = len(body.encode())
    if size > MAX_REPLY_BYTES:
        raise ReplyTooLargeError(
            f"the reply would be {size} bytes; the relay answers at most {MAX_REPLY_BYTES} bytes (4 MiB): "
            "ask for a lower top_k, or leave out values or metadata"
        )
    if size <= MAX_INLINE_REPLY_BYTES:
        return body, False
    return _store_large_reply(record, message, body, usage), True


def _store_large_reply(record: SQSRecord, message: QueryMessage, body: str, usage: Usage | None) -> str:
    from vector_relay.settings import get_settings  # the bucket is only needed for large replies

    bucket = get_settings().require("query_results_bucket")
    key = large_reply_key(message.tenant, record.message_id)
    s3_client().put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    pointer = QueryReplyOk(
        correlation_id=message.correlation_id,
        tenant=message.tenant,
        result_location=ResultLocation(bucket=bucket, key=key),
        usage=usage,
    )
    logger.info("query reply stored in S3", extra={"message_id": record.message_id, "bytes": len(body.encode())})
    return pointer.model_dump_json(exclude_none=True)


# Bytes a tenant's name keeps as they are in its key prefix; every other byte is written %XX.
_KEY_PLAIN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def results_prefix(tenant: str) -> str:
    """The key prefix of a tenant's large replies: ``tenants/<the name, percent-encoded>/``.

    Every byte of the name's UTF-8 outside ``A-Z a-z 0-9 _ -`` is written ``%XX`` (``%`` too), so
    the encoding is one-to-one and holds no ``/``: no tenant's prefix lies inside another's,
    whatever names the registry holds, and one ``s3:GetObject`` grant on ``<prefix>*`` is one
    tenant's. Nor does it hold IAM's wildcards (``*``, ``?``). A name made of those characters
    only, as templates/tenant.yaml requires, is its own encoding (docs/security.md).
    """
    encoded = "".join(chr(byte) if byte in _KEY_PLAIN_BYTES else f"%{byte:02X}" for byte in tenant.encode())
    return f"tenants/{encoded}/"


def large_reply_key(tenant: str, message_id: str) -> str:
    """Where a large reply to query ``message_id`` of ``tenant`` is stored: ``<results_prefix>YYYY/MM/DD/<id>.json``."""
    return f"{results_prefix(tenant)}{time.strftime('%Y/%m/%d', time.gmtime())}/{message_id}.json"


async def _run_queries(
    jobs: list[tuple[QueryMessage, str]], gateways: GatewaySource, settings: Settings, deadline: Deadline
) -> list[QueryResult | PineconeRequestError]:
    slots = asyncio.Semaphore(settings.pinecone_max_concurrency)

    async def one(message: QueryMessage, namespace: str) -> QueryResult | PineconeRequestError:
        async with slots:
            left = deadline.left()
            if left < MIN_REQUEST_SECONDS:
                return PineconeRequestError(FailureKind.DEADLINE, "the invocation's deadline is too close to start")
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

    # A task group, not gather: the invocation returns only when every query has ended (the loop
    # outlives it, and a query left running would resume inside the next invocation).
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(message, namespace)) for message, namespace in jobs]
    return [task.result() for task in tasks]


def _send_replies(replies: list[PendingReply], sqs: SQSClient, metrics: Metrics) -> dict[str, Verdict]:
    """Send replies in batches per reply queue; a refused send fails its query (SQS redelivers it).

    A reply sent on a query's last delivery is followed by its dead letter (``dead_letter_after``).
    """
    verdicts: dict[str, Verdict] = {}
    sent: dict[str, int] = {}
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
                if reply.dead_letter_after is not None:
                    verdicts[reply.record.message_id] = Poison(reply.dead_letter_after)
    metrics.add_metric(name="QueryReplies", unit=MetricUnit.Count, value=sum(sent.values()))
    for code, count in sent.items():
        if code != "ok":
            metrics.add_metric(name=f"ErrorReplies.{code}", unit=MetricUnit.Count, value=count)
    return verdicts
