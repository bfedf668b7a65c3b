"""What the SQS workers share: their dependencies, and sorting a batch into valid messages and poison.

Every message of a batch is validated on its own; a poison message is dead-lettered (and
acknowledged) without disturbing the others, and a failed dead-letter send keeps it on its queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.clients import sqs_client, ssm_client
from vector_relay.contract import IndexShape, ValidationContext
from vector_relay.errors import PoisonMessageError, TransientError
from vector_relay.poison import route_poison
from vector_relay.settings import Settings, get_settings
from vector_relay.tenancy import TenantRegistrySource

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass(frozen=True, slots=True)
class WorkerDependencies:
    settings: Settings
    sqs: SQSClient
    tenants: TenantRegistrySource
    index: IndexShape | None
    metrics: Metrics


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
    return WorkerDependencies(
        settings=settings, sqs=sqs_client(), tenants=tenants, index=index_shape_from_settings(settings), metrics=metrics
    )


def sort_batch[M](
    records: list[SQSRecord],
    deps: WorkerDependencies,
    parse: Callable[[str, ValidationContext], M],
    validation: ValidationContext,
) -> SortedBatch[M]:
    """Validate each record with ``parse``; dead-letter the poison; return the valid ones and the retries."""
    dead_letter_queue_url = deps.settings.require("dead_letter_queue_url")
    batch: SortedBatch[M] = SortedBatch()
    for record in records:
        try:
            batch.valid.append((record, parse(record.body, validation)))
        except PoisonMessageError as poison:
            try:
                route_poison(deps.sqs, dead_letter_queue_url=dead_letter_queue_url, record=record, error=poison)
            except TransientError as error:
                batch.failures[record.message_id] = error
            else:
                deps.metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
    return batch
