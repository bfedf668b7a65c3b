"""The one configuration object. template.yaml Parameters -> function environment -> :class:`Settings`.

Nothing else in the package reads the environment. :func:`get_settings` builds the object on first
use (not at import), so tests and the local stack can set the environment first; tests call
``get_settings.cache_clear()``. Every variable is listed in the README's configuration table, and a
test keeps the two in step. Only the secret's ARN is configuration: the API key itself never is.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cache
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vector_relay.errors import ConfigurationError


class EnvironmentSettings(BaseModel):
    """Fields read from the environment variables of the same name, in any case (``PINECONE_INDEX_HOST``).

    A plain pydantic model filled from ``os.environ`` by :meth:`from_environment`: what
    pydantic-settings did here, without its import (~15-30 ms of every cold start, issue 33). A
    variable's text is validated as the field's type (numbers, booleans such as ``true``); a field
    with no variable keeps its default.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_environment(cls) -> Self:
        variables = {name.lower(): value for name, value in os.environ.items()}
        return cls.model_validate({field: variables[field] for field in cls.model_fields if field in variables})


class Settings(EnvironmentSettings):
    """Environment variables, by upper-cased field name. Descriptions are the README's."""

    pinecone_secret_arn: str = Field(
        description="ARN of the Secrets Manager secret holding the Pinecone API key (JSON)."
    )
    pinecone_index_host: str = Field(
        description="Data-plane host of the index, e.g. `https://my-index-abc123.svc.aped-1234.pinecone.io`."
    )
    pinecone_index_name: str | None = Field(
        default=None, description="Index name; used to read the dimension and metric when they are not set."
    )
    pinecone_index_dimension: Annotated[int, Field(ge=1, le=20_000)] | None = Field(
        default=None,
        description="Dense dimension of the index; unset = read once from `describe_index`. Empty for a sparse index.",
    )
    pinecone_index_metric: Literal["cosine", "dotproduct", "euclidean"] | None = Field(
        default=None, description="Metric of the index; unset = read once from `describe_index`."
    )
    pinecone_control_host: str | None = Field(
        default=None, description="Control-plane URL; unset = Pinecone's. The local stack points it at the emulator."
    )
    pinecone_transport: Literal["rest", "grpc"] = Field(
        default="rest",
        description="How the workers reach the data plane: `rest` (HTTPS) or `grpc` (the SDK's gRPC client).",
    )
    pinecone_grpc_host: str | None = Field(
        default=None,
        description="gRPC endpoint of the index; unset = `PINECONE_INDEX_HOST` (Pinecone serves both on one host).",
    )
    pinecone_request_timeout_seconds: float = Field(
        default=10.0, gt=0, le=60, description="Timeout of one Pinecone HTTP attempt, in seconds."
    )
    pinecone_max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts per Pinecone request within an invocation (408, 429, 5xx, timeouts); then SQS retries.",
    )
    pinecone_max_concurrency: int = Field(
        default=8, ge=1, le=64, description="Pinecone requests in flight at once per invocation."
    )
    pinecone_namespace_rate_limit: float = Field(
        default=0.0,
        ge=0,
        description="Requests per second per namespace from one invocation; 0 = no limit (Pinecone allows 100).",
    )
    tenant_registry: str | None = Field(
        default=None,
        description=(
            'Inline tenant registry, JSON `{"tenant": "namespace"}`; an entry may be `{"namespace": ..., '
            '"queues": [...], "reply_queues": [...]}` (tenant binding, docs/contract.md). '
            "Set this or `TENANT_REGISTRY_PARAMETER`."
        ),
    )
    tenant_registry_parameter: str | None = Field(
        default=None, description="Name of the SSM parameter holding the tenant registry JSON."
    )
    tenant_registry_ttl_seconds: int = Field(
        default=60, ge=0, le=3600, description="How long the registry read from SSM is cached, in seconds."
    )
    dead_letter_queue_url: str | None = Field(
        default=None, description="URL of the queue that poison messages are sent to (the source queue's DLQ)."
    )
    receipt_retry_queue_url: str | None = Field(
        default=None,
        description="URL of the relay's own queue for write receipts a tenant's receipt queue did not take; "
        "ReceiptsFunction sends them again (unset: such receipts are logged and counted as lost).",
    )
    source_queue_max_receive_count: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="The source queue's `maxReceiveCount`; the last attempt marks `retries_exhausted`.",
    )
    source_queue_visibility_timeout_seconds: int = Field(
        default=420,
        ge=0,
        le=43_200,
        description="The ingest queue's visibility timeout; the reconciler waits this x "
        "`SOURCE_QUEUE_MAX_RECEIVE_COUNT` after a write's lease before judging it (a retry may still come).",
    )
    reply_queue_allow_list: frozenset[str] = Field(
        default=frozenset(), description="Comma-separated queue URLs a query may name as `reply_to`."
    )
    query_results_bucket: str | None = Field(
        default=None, description="S3 bucket for query replies larger than one SQS message."
    )
    api_key_cache_ttl_seconds: int = Field(
        default=300,
        ge=0,
        le=3600,
        description="How long a worker trusts its cached API key before re-checking the secret's version.",
    )
    rotation_marker_parameter: str | None = Field(
        default=None, description="SSM parameter the rotation function sets to the new key's version as it promotes it."
    )
    pinecone_admin_secret_arn: str | None = Field(
        default=None,
        description="Secret with the Pinecone service account (`client_id`, `client_secret`) used by rotation.",
    )
    rotation_mode: Literal["admin_api", "manual"] = Field(
        default="admin_api",
        description="`admin_api`: rotation mints keys through the Admin API; `manual`: an operator stages the key.",
    )
    pinecone_oauth_url: str | None = Field(
        default=None,
        description="OAuth token URL of the Admin API; unset = Pinecone's. The local stack uses the emulator's.",
    )
    key_revocation_grace_seconds: int = Field(
        default=900,
        ge=0,
        description="Rotation revokes a retired key only this long after it stopped being current "
        "(at least `API_KEY_CACHE_TTL_SECONDS` + the longest worker timeout).",
    )
    worker_max_timeout_seconds: int = Field(
        default=60,
        ge=0,
        le=900,
        description="The longest timeout of the ingest and query functions; rotation checks the grace against it.",
    )
    write_version_table: str | None = Field(
        default=None, description="DynamoDB table of the highest applied version per (namespace, id)."
    )
    write_version_ttl_seconds: int = Field(
        default=19 * 86_400,
        ge=14 * 86_400 + 3600,  # SQS's longest retention (14 days) + message_age.EXPIRY_MARGIN_SECONDS
        description="How long a version (and a delete's tombstone) is kept; copies of writes first sent longer "
        "ago than this less 1 h are dead-lettered as `write_expired`. At least 14 days + 1 h (SQS's longest "
        "retention): no original message can be older.",
    )
    write_version_lease_slack_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a version-guard lease outlives its invocation (clock skew, late requests).",
    )
    write_version_concurrency: int = Field(
        default=4,
        ge=1,
        le=16,
        description="Version-guard claim groups (up to 100 records each) in flight at once, over all namespaces.",
    )
    deadline_margin_ms: int = Field(
        default=5000,
        ge=0,
        le=60_000,
        description="Time left at which a worker stops starting Pinecone calls and returns.",
    )
    reconcile_repair: bool = Field(
        default=False,
        description="Whether the scheduled reconciler deletes resurrected records again (it reports either way).",
    )
    reconcile_reserve_seconds: float = Field(
        default=120.0,
        ge=0,
        le=900,
        description="Time left at which the scheduled reconciler stops starting pages (its cursor keeps its place).",
    )
    aws_endpoint_url: str | None = Field(
        default=None, description="AWS endpoint override for the local stack (boto3 reads it too); unset in AWS."
    )

    @field_validator("reply_queue_allow_list", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "pinecone_index_dimension",
        "pinecone_index_metric",
        "pinecone_control_host",
        "pinecone_grpc_host",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("pinecone_index_host", "pinecone_grpc_host", "pinecone_control_host", "pinecone_oauth_url")
    @classmethod
    def _https_beyond_this_machine(cls, value: str | None) -> str | None:
        return require_https(value)

    @model_validator(mode="after")
    def _one_registry_source(self) -> Self:
        if self.tenant_registry and self.tenant_registry_parameter:
            raise ValueError("set TENANT_REGISTRY or TENANT_REGISTRY_PARAMETER, not both")
        return self

    def check_rotation_timing(self) -> None:
        """Rotation's cold-start check: a retired key outlives every worker that may still hold it."""
        needed = self.api_key_cache_ttl_seconds + self.worker_max_timeout_seconds
        if self.key_revocation_grace_seconds < needed:
            raise ConfigurationError(
                f"KEY_REVOCATION_GRACE_SECONDS ({self.key_revocation_grace_seconds}) must be at least "
                f"API_KEY_CACHE_TTL_SECONDS ({self.api_key_cache_ttl_seconds}) + WORKER_MAX_TIMEOUT_SECONDS "
                f"({self.worker_max_timeout_seconds}) = {needed}: a worker may use a retired key that long"
            )

    def require(self, name: str) -> str:
        """The value of an optional string setting this code path needs, or a ConfigurationError naming the variable."""
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(f"{name.upper()} is not set; this function needs it")
        return str(value)


class IndexFunctionSettings(EnvironmentSettings):
    """What the Custom::PineconeIndex function reads: it runs before the index (and so its host) exists."""

    # Its validator is built on first use, so the workers that import this module never pay for it.
    model_config = ConfigDict(defer_build=True)

    pinecone_secret_arn: str
    pinecone_control_host: str | None = None

    @field_validator("pinecone_control_host")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return require_https(value)

    @field_validator("pinecone_control_host", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


def index_function_settings() -> IndexFunctionSettings:
    try:
        return IndexFunctionSettings.from_environment()
    except ValueError as error:
        raise ConfigurationError(f"invalid configuration: {error}") from None


class ReceiptsFunctionSettings(EnvironmentSettings):
    """What ReceiptsFunction reads: where the tenant registry is. It calls neither Pinecone nor the key's secret,
    so it needs none of their settings (the index's host among them). The same variables as :class:`Settings`'
    (tests/unit/test_settings.py holds the fields equal)."""

    model_config = ConfigDict(defer_build=True)  # built on first use, as IndexFunctionSettings'

    tenant_registry: str | None = None
    tenant_registry_parameter: str | None = None
    tenant_registry_ttl_seconds: int = Field(default=60, ge=0, le=3600)


def receipts_function_settings() -> ReceiptsFunctionSettings:
    try:
        return ReceiptsFunctionSettings.from_environment()
    except ValueError as error:
        raise ConfigurationError(f"invalid configuration: {error}") from None


class TracingSettings(EnvironmentSettings):
    """Whether a function traces (:mod:`vector_relay.tracing`): Powertools' own switch, read as its Tracer reads it.

    Off with ``POWERTOOLS_TRACE_DISABLED`` true (the template's ``Tracing=false``, the tests, the local
    stack), outside Lambda (no ``LAMBDA_TASK_ROOT``: no X-Ray daemon to send to) and under ``sam local``.
    """

    powertools_trace_disabled: bool = False
    lambda_task_root: str | None = None  # set by Lambda (and by the local stack's runtime)
    aws_sam_local: bool = False

    @property
    def enabled(self) -> bool:
        return not self.powertools_trace_disabled and bool(self.lambda_task_root) and not self.aws_sam_local


def tracing_settings() -> TracingSettings:
    try:
        return TracingSettings.from_environment()
    except ValueError as error:
        raise ConfigurationError(f"invalid configuration: {error}") from None


def require_https(value: str | None) -> str | None:
    """The API key and the service account's secret travel to these URLs: TLS unless they stay on loopback."""
    if value is None:
        return None
    url = urlsplit(value)
    if url.scheme == "https" and url.hostname:
        return value
    if url.scheme == "http" and _is_loopback(url.hostname):
        return value  # the local stack's emulator
    raise ValueError(f"{value!r} must be an https:// URL (http:// only for a loopback host such as 127.0.0.1)")


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    try:
        return Settings.from_environment()
    except ValueError as error:
        raise ConfigurationError(f"invalid configuration: {error}") from None
