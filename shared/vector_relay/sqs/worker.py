"""What the SQS workers share: their dependencies, and sorting a batch into valid messages and poison.

Every message of a batch is validated on its own; a poison message is dead-lettered (and
acknowledged) without disturbing the others, and a failed dead-letter send keeps it on its queue.
Dependencies are built on the first invocation of a container and reused while it stays warm:
AWS clients, the tenant registry, the API key and the Pinecone client, and one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.aws_clients import (
    FINISH_SECONDS,
    GUARD_PROFILE,
    OutOfTimeError,
    dynamodb_client,
    secrets_client,
    sqs_client,
    ssm_client,
)
from vector_relay.contract.messages import IndexShape, ValidationContext
from vector_relay.contract.tenant_schemas import message_problems
from vector_relay.errors import ConfigurationError, PoisonMessageError, Problem, TransientError
from vector_relay.ingest.runner import MIN_REQUEST_SECONDS
from vector_relay.ingest.version_guard import VersionGuard
from vector_relay.keys.api_key_cache import ApiKey, ApiKeyCache, GatewaySource, read_api_key
from vector_relay.pinecone.gateway import PineconeGateway, describe_index_shape
from vector_relay.settings import Settings, get_settings
from vector_relay.sqs.poison import route_poison
from vector_relay.tenancy import TenantRegistry, TenantRegistrySource

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

# Used when there is no Lambda context (a direct call from a script or a test).
DEFAULT_BUDGET_SECONDS = 30.0


class IndexShapeSource:
    """The index's dimension and metric: from the settings when given, else one describe_index call per container."""

    def __init__(self, settings: Settings, keys: ApiKeyCache) -> None:
        self._settings = settings
        self._keys = keys
        self._lock = threading.Lock()
        self._shape = index_shape_from_settings(settings)

    def current(self) -> IndexShape:
        with self._lock:
            if self._shape is None:
                name = self._settings.require("pinecone_index_name")
                self._shape = describe_index_shape(
                    api_key=self._keys.current().value, name=name, control_host=self._settings.pinecone_control_host
                )
            return self._shape


@dataclass(slots=True)
class WorkerDependencies:
    settings: Settings
    tenants: TenantRegistrySource
    keys: ApiKeyCache
    index: IndexShapeSource
    gateways: GatewaySource
    metrics: Metrics
    guard: VersionGuard | None = None
    loop: asyncio.Runner = field(default_factory=asyncio.Runner)
    timing_checked: bool = False

    @property
    def sqs(self) -> SQSClient:
        """An SQS client sure to answer before the invocation must return (asked for each call)."""
        return sqs_client()


@dataclass(slots=True)
class SortedBatch[M]:
    """The valid messages of a batch (with their records), and the messages to retry by message id."""

    valid: list[tuple[SQSRecord, M]] = field(default_factory=list)
    failures: dict[str, BaseException] = field(default_factory=dict)


def index_shape_from_settings(settings: Settings) -> IndexShape | None:
    """The index's shape when the settings give its metric (and dimension, unless sparse)."""
    if settings.pinecone_index_metric is None:
        return None
    return IndexShape(dimension=settings.pinecone_index_dimension, metric=settings.pinecone_index_metric)


def read_ssm_parameter(name: str) -> str:
    return ssm_client().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def version_guard(settings: Settings) -> VersionGuard | None:
    """The DynamoDB version guard when ``WRITE_VERSION_TABLE`` is set; without it, writes are not version-checked."""
    if not settings.write_version_table:
        return None
    return VersionGuard(
        dynamodb_client(),
        settings.write_version_table,
        ttl_seconds=settings.write_version_ttl_seconds,
        concurrency=settings.write_version_concurrency,
    )


def gateway_builder(settings: Settings) -> Callable[[ApiKey], PineconeGateway]:
    def build(key: ApiKey) -> PineconeGateway:
        return PineconeGateway(
            host=settings.pinecone_index_host,
            api_key=key.value,
            attempt_timeout=settings.pinecone_request_timeout_seconds,
            max_attempts=settings.pinecone_max_attempts,
            transport=settings.pinecone_transport,
            grpc_host=settings.pinecone_grpc_host,
        )

    return build


_built: list[WorkerDependencies] = []


def reset_worker_dependencies() -> None:
    """Forget the cached dependencies and close their event loops (tests; the local stack on restart)."""
    while _built:
        deps = _built.pop()
        with contextlib.suppress(RuntimeError):  # a loop already closed has no open clients left to close
            deps.loop.run(deps.gateways.close())
        deps.loop.close()
        if deps.guard is not None:
            deps.guard.close()
    worker_dependencies.cache_clear()


@cache
def worker_dependencies(metrics: Metrics) -> WorkerDependencies:
    """Built on the first invocation of a container and reused while it stays warm."""
    settings = get_settings()
    tenants = TenantRegistrySource(
        inline=settings.tenant_registry,
        parameter_name=settings.tenant_registry_parameter,
        read_parameter=read_ssm_parameter,
        ttl_seconds=settings.tenant_registry_ttl_seconds,
    )
    marker = settings.rotation_marker_parameter
    keys = ApiKeyCache(
        lambda: read_api_key(secrets_client(), settings.pinecone_secret_arn),
        ttl_seconds=settings.api_key_cache_ttl_seconds,
        read_marker=(lambda: read_ssm_parameter(marker)) if marker else None,
    )
    deps = WorkerDependencies(
        settings=settings,
        tenants=tenants,
        keys=keys,
        index=IndexShapeSource(settings, keys),
        gateways=GatewaySource(
            keys,
            gateway_builder(settings),
            on_auth_failure=lambda key: metrics.add_metric(name="AuthFailure", unit=MetricUnit.Count, value=1),
        ),
        metrics=metrics,
        guard=version_guard(settings),
    )
    _built.append(deps)
    return deps


class HasTenant(Protocol):
    @property
    def tenant(self) -> str: ...


def sort_batch[M: HasTenant](
    records: list[SQSRecord],
    deps: WorkerDependencies,
    parse: Callable[[str, ValidationContext], M],
    validation: ValidationContext,
    on_valid: Callable[[SQSRecord, M], None] | None = None,
) -> SortedBatch[M]:
    """Validate each record with ``parse``; dead-letter the poison; return the valid ones and the retries.

    A valid message must also come from a queue allowed to act for its tenant (tenant binding:
    :meth:`TenantRegistry.binding_problem`). ``on_valid`` sees each valid message as soon as it is
    parsed (the version guard starts claiming it). A refusal for the tenant (``unknown_tenant``,
    ``tenant_not_bound``) gets a second look first (:class:`SecondLook`): a message the registry
    as it is now would take is retried at once rather than dead-lettered.
    """
    batch: SortedBatch[M] = SortedBatch()
    tenants = validation.tenants if isinstance(validation.tenants, TenantRegistry) else None
    second_look = SecondLook(deps.tenants) if tenants is not None and deps.tenants.rereadable else None
    retry_in: list[tuple[SQSRecord, float]] = []
    for record in records:
        try:
            message = _judge(record, parse, validation)
        except PoisonMessageError as poison:
            verdict: PoisonMessageError | float = poison
            if second_look is not None and poison.error_code in REGISTRY_REFUSALS:
                try:
                    verdict = second_look.confirm(
                        record, poison, lambda late, fresh: _judge(late, parse, replace(validation, tenants=fresh))
                    )
                except Exception as error:  # a defect here must not fail the batch-mates
                    retry_alone(record, error, batch.failures)
                    continue
            if isinstance(verdict, PoisonMessageError):
                dead_letter(deps, record, verdict, batch.failures)
            elif last_delivery(record, deps):  # SQS would move it on without a reason: say why
                why = f"last delivery: {_unconfirmed(poison, verdict)}"
                dead_letter(
                    deps, record, PoisonMessageError([Problem("retries_exhausted", "tenant", why)]), batch.failures
                )
            else:
                batch.failures[record.message_id] = TransientError(_unconfirmed(poison, verdict))
                retry_in.append((record, verdict))
            continue
        except Exception as error:  # a defect here must not fail the batch-mates
            retry_alone(record, error, batch.failures)
            continue
        batch.valid.append((record, message))
        if on_valid is not None:
            on_valid(record, message)
    if retry_in:
        retry_soon(deps, retry_in)
    return batch


def _judge[M: HasTenant](
    record: SQSRecord, parse: Callable[[str, ValidationContext], M], validation: ValidationContext
) -> M:
    """The message if ``validation``'s registry takes it (contract, binding, schema); else PoisonMessageError."""
    message = parse(record.body, validation)
    tenants = validation.tenants if isinstance(validation.tenants, TenantRegistry) else None
    problem = tenants.binding_problem(record.event_source_arn, message.tenant) if tenants else None
    if problem is not None:
        raise PoisonMessageError([problem])
    violations = message_problems(tenants.schema_for(message.tenant), message) if tenants else []
    if violations:
        raise PoisonMessageError(violations)
    return message


# The refusals that depend on the tenant registry alone: a tenant added or bound a moment ago.
REGISTRY_REFUSALS = frozenset({"unknown_tenant", "tenant_not_bound"})
# How much SQS's clock (SentTimestamp) and the worker's may differ: a registry read less than this
# after a message was sent is not taken as knowing everything that was registered before the send.
CLOCK_SKEW_SECONDS = 1.0


class SecondLook:
    """Before a message is refused for its tenant, the registry is read again, within bounds.

    The worker's registry is a cache (``TENANT_REGISTRY_TTL_SECONDS``); a tenant added or bound
    since it was read (``vector-relay tenant add``, then a redrive) must not be refused. So a
    refusal for the tenant stands only when the registry it was judged with was read after the
    message was sent (SQS's ``SentTimestamp``, less :data:`CLOCK_SKEW_SECONDS`) and is younger than
    the re-read interval. Otherwise the parameter is read again (:meth:`TenantRegistrySource.reread`)
    and the message judged with that, at most once per invocation (one ``SecondLook`` per batch)
    and at most every few seconds per container (``REREAD_INTERVAL_SECONDS``). When that interval has not passed
    yet, the message is retried once it has.

    A message the fresh registry takes is retried at once rather than written now: the rest of the
    invocation holds the registry it started with, and the next invocation starts with the fresh one.
    """

    def __init__(self, source: TenantRegistrySource) -> None:
        self._source = source
        self._fresh: TenantRegistry | None = None

    def confirm(
        self, record: SQSRecord, poison: PoisonMessageError, judge: Callable[[SQSRecord, TenantRegistry], object]
    ) -> PoisonMessageError | float:
        """The refusal to dead-letter with, or the seconds after which the message should be judged again."""
        if self._fresh is None:
            sent = int(record.attributes.get("SentTimestamp") or 0) / 1000 or math.inf  # unknown: as if just now
            knows_the_send = self._source.read_at() >= sent + CLOCK_SKEW_SECONDS
            wait = self._source.reread_wait()
            if knows_the_send and (wait > 0 or self._source.age() < self._source.reread_interval):
                return poison  # read after the message was sent, and recently: the refusal stands
            if wait > 0:
                return wait
            self._fresh = self._source.reread()
            logger.info("tenant registry read again to confirm a refusal", extra={"message_id": record.message_id})
        try:
            judge(record, self._fresh)
        except PoisonMessageError as again:
            return again
        return 0.0


def _unconfirmed(poison: PoisonMessageError, verdict: float) -> str:
    """Why a refusal for the tenant was not made: the registry as read now takes the message, or is read soon."""
    if verdict == 0:
        return (
            f"the tenant registry as read now takes the message ({poison.error_code} was an older registry's verdict)"
        )
    return f"{poison.error_code} is confirmed only with the tenant registry read again, in {math.ceil(verdict)} s"


def retry_soon(deps: WorkerDependencies, entries: list[tuple[SQSRecord, float]]) -> None:
    """Make messages visible again after the given seconds instead of the queue's visibility timeout.

    Best effort: if SQS refuses, they come back when the visibility timeout ends (still not refused).
    """
    by_queue: dict[str, list[tuple[SQSRecord, int]]] = {}
    for record, seconds in entries:
        by_queue.setdefault(record.event_source_arn, []).append((record, math.ceil(seconds)))
    for arn, waiting in by_queue.items():
        try:
            url = queue_url(deps.sqs, arn)
            for start in range(0, len(waiting), 10):
                deps.sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": record.receipt_handle, "VisibilityTimeout": seconds}
                        for i, (record, seconds) in enumerate(waiting[start : start + 10])
                    ],
                )
        except (ClientError, BotoCoreError, OutOfTimeError) as error:
            logger.warning("could not bring messages back sooner", extra={"queue": arn, "error": str(error)})


def dead_letter_url(deps: WorkerDependencies, record: SQSRecord) -> str:
    """Where ``record``'s poison goes: its tenant queue's own DLQ, or the function's configured one."""
    source = record.event_source_arn
    if deps.tenants.current().bound_tenant(source) is None:
        return deps.settings.require("dead_letter_queue_url")
    return redrive_target_url(deps.sqs, source)


@cache
def redrive_target_url(sqs: SQSClient, queue_arn: str) -> str:
    """The URL of the DLQ named by a queue's redrive policy, asked once per client."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, queue_arn), AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ConfigurationError(f"tenant queue {queue_arn} has no redrive policy, so its poison has nowhere to go")
    return queue_url(sqs, json.loads(policy)["deadLetterTargetArn"])


@cache
def queue_url(sqs: SQSClient, arn: str) -> str:
    """The URL of the queue ``arn`` names (arn:aws:sqs:<region>:<account>:<name>), asked once per client."""
    *_, account, name = arn.split(":")
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def check_timing(context: LambdaContext | None, deps: WorkerDependencies) -> None:
    """On a container's first invocation: the settings that must hold together with the function's timeout.

    The first invocation's time left stands for the timeout. A mismatch is a ConfigurationError:
    the batch is retried (not dead-lettered) and the log says what to change.
    """
    if deps.timing_checked or context is None:
        return
    problems = timing_problems(
        deps.settings, guarded=deps.guard is not None, function_seconds=context.get_remaining_time_in_millis() / 1000
    )
    if problems:
        logger.error("settings do not hold together", extra={"problems": problems})
        raise ConfigurationError("; ".join(problems))
    deps.timing_checked = True


def timing_problems(settings: Settings, *, guarded: bool, function_seconds: float) -> list[str]:
    """What is wrong with the deadline, lease and timeout settings of a worker (docs/ordering.md)."""
    margin = settings.deadline_margin_ms / 1000
    problems = []
    if margin + MIN_REQUEST_SECONDS >= function_seconds:
        problems.append(
            f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) leaves less than {MIN_REQUEST_SECONDS:g} s "
            f"for Pinecone in a {function_seconds:.1f} s invocation"
        )
    if guarded:
        claim_overrun = GUARD_PROFILE.worst_case_seconds - MIN_REQUEST_SECONDS + FINISH_SECONDS
        if margin < claim_overrun:
            problems.append(
                f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) must be at least {claim_overrun * 1000:.0f}: "
                "a version-guard claim started just before the deadline must end before the invocation returns"
            )
        cover = margin + settings.write_version_lease_slack_seconds
        if cover < settings.pinecone_request_timeout_seconds:
            problems.append(
                f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) + WRITE_VERSION_LEASE_SLACK_SECONDS "
                f"({settings.write_version_lease_slack_seconds:g}) = {cover:g} s must be at least "
                f"PINECONE_REQUEST_TIMEOUT_SECONDS ({settings.pinecone_request_timeout_seconds:g}): the lease "
                "must cover a request sent at the deadline for as long as one attempt may take"
            )
    return problems


def invocation_budget(context: LambdaContext | None, deps: WorkerDependencies) -> float:
    """Seconds this invocation may spend on Pinecone: the Lambda time left minus the margin to finish up."""
    if context is None:
        return DEFAULT_BUDGET_SECONDS
    return (context.get_remaining_time_in_millis() - deps.settings.deadline_margin_ms) / 1000


def last_delivery(record: SQSRecord, deps: WorkerDependencies) -> bool:
    """Whether this is the message's last delivery before the redrive policy moves it to the DLQ."""
    return int(record.attributes.approximate_receive_count) >= deps.settings.source_queue_max_receive_count


def retry_alone(record: SQSRecord, error: Exception, failures: dict[str, BaseException]) -> None:
    """An unexpected error while sorting one message (a defect, not proven poison): SQS retries that message only.

    After ``maxReceiveCount`` it reaches the DLQ (``retries_exhausted``). Logged with the error's type
    and the message id, never the body.
    """
    logger.exception(
        "unexpected error while validating a message; it alone is retried",
        extra={"message_id": record.message_id, "error": type(error).__name__},
    )
    failures[record.message_id] = TransientError(f"unexpected {type(error).__name__} while validating the message")


def dead_letter(
    deps: WorkerDependencies, record: SQSRecord, poison: PoisonMessageError, failures: dict[str, BaseException]
) -> None:
    """Send ``record`` to the DLQ with its reasons; if that fails, add it to ``failures`` so SQS keeps it.

    A message from a tenant's own queue goes to that queue's DLQ (its redrive policy's target), the
    rest to ``DEAD_LETTER_QUEUE_URL``.
    """
    try:
        route_poison(deps.sqs, dead_letter_queue_url=dead_letter_url(deps, record), record=record, error=poison)
    except (ClientError, BotoCoreError, ConfigurationError) as error:  # the tenant queue's DLQ could not be found
        logger.error(
            "no DLQ for a message's source queue", extra={"message_id": record.message_id, "error": str(error)}
        )
        failures[record.message_id] = TransientError(f"the DLQ of the source queue is unknown: {error}")
    except TransientError as error:
        failures[record.message_id] = error
    else:
        deps.metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
        deps.metrics.add_metric(name=f"PoisonMessages.{poison.error_code}", unit=MetricUnit.Count, value=1)
