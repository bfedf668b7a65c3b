"""The composition root of the SQS workers: what a container builds once and reuses while it stays warm.

Only the handlers (``functions/``) import it; the edge (:mod:`vector_relay.sqs.processor`) and the
services (:mod:`vector_relay.ingest.service`, :mod:`vector_relay.query.service`) get their
collaborators as arguments. Built on a container's first invocation: the settings, AWS clients,
the tenant registry, the API key and the Pinecone client, the version guard, and one event loop.
ReceiptsFunction needs only the tenant registry and SQS (:func:`receipt_resender`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, cast

from aws_lambda_powertools import Metrics

from vector_relay.aws_clients import aws_credentials, dynamodb_client, secrets_client, sqs_client, ssm_client
from vector_relay.contract.fields import IndexShape
from vector_relay.contract.messages import QueryMessage, WriteMessage
from vector_relay.keys.api_key_cache import ApiKey, ApiKeyCache, GatewaySource, read_api_key
from vector_relay.metrics import AUTH_FAILURE
from vector_relay.pinecone.data_plane import PineconeGateway
from vector_relay.settings import Settings, get_settings, receipts_function_settings
from vector_relay.sqs.processor import Edge, Worker
from vector_relay.tenancy import TenantRegistrySource

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_dynamodb import DynamoDBClient

    from vector_relay.ingest.version_guard import VersionGuard
    from vector_relay.sqs.receipt_retry import Outcome


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
                # Imported here: with the shape in the settings (as the template sets it) it is never needed.
                from vector_relay.pinecone.control_plane import describe_index_shape

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
    edge: Edge = field(init=False)
    _ingest: Worker[WriteMessage] | None = field(default=None, init=False)
    _query: Worker[QueryMessage] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.edge = Edge(
            settings=self.settings,
            tenants=self.tenants,
            index=self.index,
            metrics=self.metrics,
            guarded=self.guard is not None,
            clock=self.guard.now if self.guard is not None else time.time,
        )

    @property
    def ingest(self) -> Worker[WriteMessage]:
        """The ingest function's worker, built once per container; the query service is never imported there."""
        if self._ingest is None:
            from vector_relay.ingest.service import IngestService

            service = IngestService(self.settings, self.gateways, self.loop, self.metrics, guard=self.guard)
            self._ingest = Worker(self.edge, service)
        return self._ingest

    @property
    def query(self) -> Worker[QueryMessage]:
        """The query function's worker, built once per container; the ingest service is never imported there."""
        if self._query is None:
            from vector_relay.query.service import QueryService

            self._query = Worker(self.edge, QueryService(self.settings, self.gateways, self.loop, self.metrics))
        return self._query


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
    # Imported here: the query function, whose environment names no table, never loads the guard.
    from vector_relay.ingest.dynamodb_json import JsonDynamoDB
    from vector_relay.ingest.version_guard import VersionGuard

    dynamodb = JsonDynamoDB(dynamodb_client(), aws_credentials())  # claims' bulk calls without botocore's model walk
    return VersionGuard(
        cast("DynamoDBClient", dynamodb),  # the client's calls, two of them sent as raw JSON
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
    receipt_tenants.cache_clear()


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
            on_auth_failure=lambda key: AUTH_FAILURE.emit(metrics, 1),
        ),
        metrics=metrics,
        guard=version_guard(settings),
    )
    _built.append(deps)
    return deps


def ingest_worker(metrics: Metrics) -> Callable[[], Worker[WriteMessage]]:
    """The ingest function's record handler for :class:`~vector_relay.sqs.processor.SqsBatchProcessor`."""
    return lambda: worker_dependencies(metrics).ingest


def query_worker(metrics: Metrics) -> Callable[[], Worker[QueryMessage]]:
    """The query function's record handler for :class:`~vector_relay.sqs.processor.SqsBatchProcessor`."""
    return lambda: worker_dependencies(metrics).query


@cache
def receipt_tenants() -> TenantRegistrySource:
    """ReceiptsFunction's tenant registry, built on a container's first invocation (re-read after its TTL)."""
    settings = receipts_function_settings()
    return TenantRegistrySource(
        inline=settings.tenant_registry,
        parameter_name=settings.tenant_registry_parameter,
        read_parameter=read_ssm_parameter,
        ttl_seconds=settings.tenant_registry_ttl_seconds,
    )


def receipt_resender() -> Callable[[SQSRecord], Outcome]:
    """ReceiptsFunction's record handler for :class:`~vector_relay.sqs.receipt_retry.ReceiptRetryProcessor`."""
    from vector_relay.sqs.receipt_retry import receipt_resender as resender

    return resender(lambda: receipt_tenants().current(), sqs_client)
