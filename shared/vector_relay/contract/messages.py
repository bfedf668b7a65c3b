"""Message contract v1: what upstream services publish, what the query worker replies, what the DLQ carries.

Every model forbids unknown fields. Structural rules (types, required fields, sizes) live in the
field types; the rules that depend on the deployment (the tenant registry, the index's dimension
and metric, the reply allow-list) read a :class:`ValidationContext` passed at validation time, so
one pass over a message finds every problem. Validation errors carry stable codes (the pydantic
error ``type`` is the code for the project's own checks); :mod:`vector_relay.contract.parsing` turns them
into :class:`~vector_relay.errors.Problem` lists. ``docs/contract.md`` explains every field and code.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from vector_relay.contract.filters import field_names, filter_problems, matches_every_record

# The contract's limits, each defined here only. Pinecone's figures are from
# docs.pinecone.io/reference/api/database-limits and the 2026-07 OpenAPI spec (see docs/contract.md
# for each source); Pinecone's limits on one request are the planner's (vector_relay.ingest.planning).
MAX_RECORD_ID_CHARS = 512
# Records in one message: 1,000, as many as Pinecone takes in one upsert or delete-by-id request
# (the planner's MAX_RECORDS_PER_REQUEST and MAX_IDS_PER_DELETE).
MAX_RECORDS_PER_MESSAGE = 1000
MAX_METADATA_BYTES = 40 * 1024  # 40 KB of metadata per record, measured as compact UTF-8 JSON
MAX_DIMENSION = 20_000
MAX_SPARSE_ENTRIES = 2048
MAX_SPARSE_INDEX = 2**32 - 1
MAX_TOP_K = 10_000
MAX_VERSION = 2**63 - 1
# Every upserted record carries its version in this metadata key (a decimal string: exact for any
# 64-bit version, where a JSON number would lose precision above 2**53), so a reconciler can tell
# which version the index holds. Producers may not set it; its bytes count against the 40 KB.
VERSION_METADATA_KEY = "_relay_version"
VERSION_METADATA_ROOM = len(orjson.dumps({VERSION_METADATA_KEY: str(MAX_VERSION)}))
MAX_TENANT_CHARS = 128
MAX_CORRELATION_ID_CHARS = 256

Metric = Literal["cosine", "dotproduct", "euclidean"]


@dataclass(frozen=True, slots=True)
class IndexShape:
    """What a record must look like to fit the index: its dense dimension (None for a sparse index) and metric."""

    dimension: int | None
    metric: Metric

    @property
    def is_sparse(self) -> bool:
        return self.dimension is None


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """Deployment facts the contract checks against. A field left as None skips the checks that need it."""

    tenants: Collection[str] | None = None
    index: IndexShape | None = None
    reply_queues: Collection[str] | None = None

    def as_pydantic_context(self) -> dict[str, Any]:
        return {CONTEXT_KEY: self}


CONTEXT_KEY = "vector_relay"


def _context(info: ValidationInfo) -> ValidationContext:
    found = info.context.get(CONTEXT_KEY) if isinstance(info.context, dict) else None
    return found if isinstance(found, ValidationContext) else ValidationContext()


def _raise(problems: Iterable[tuple[str, tuple[str | int, ...], str]], value: Any, title: str) -> None:
    """Raise one ValidationError with every ``(code, location, message)``; pydantic merges it into the outer one."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(code, message.replace("{", "(").replace("}", ")")), loc=loc, input=value
        )
        for code, loc, message in problems
    ]
    if details:
        raise ValidationError.from_exception_data(title, details)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=True)


def _check_record_id(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("id_invalid", "a record id must be a string")
    if not 1 <= len(value) <= MAX_RECORD_ID_CHARS:
        raise PydanticCustomError(
            "id_invalid",
            f"a record id has 1 to {MAX_RECORD_ID_CHARS} characters, this one has {{length}}",
            {"length": len(value)},
        )
    if not value.isascii() or "\x00" in value:
        raise PydanticCustomError("id_invalid", "a record id must be ASCII without NUL characters")
    return value


RecordId = Annotated[str, BeforeValidator(_check_record_id), Field(min_length=1, max_length=MAX_RECORD_ID_CHARS)]
Version = Annotated[int, Field(strict=True, ge=0, le=MAX_VERSION)]
# Finiteness is checked by pydantic-core as it parses each number (no per-float Python work); the
# model config still lets the parser read NaN / Infinity, so they are reported as non_finite_value
# (validation.problems_from folds a vector's non-finite positions into one problem).
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class SparseValues(_Strict):
    """A sparse vector: parallel arrays of dimension indices (uint32) and their values."""

    indices: Annotated[list[Annotated[int, Field(strict=True, ge=0, le=MAX_SPARSE_INDEX)]], Field(min_length=1)]
    values: Annotated[list[FiniteFloat], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        problems: list[tuple[str, tuple[str | int, ...], str]] = []
        if len(self.indices) != len(self.values):
            problems.append(
                (
                    "sparse_values_invalid",
                    (),
                    f"indices and values must have the same length ({len(self.indices)} != {len(self.values)})",
                )
            )
        if len(self.indices) > MAX_SPARSE_ENTRIES:
            problems.append(
                (
                    "sparse_values_invalid",
                    ("indices",),
                    f"at most {MAX_SPARSE_ENTRIES} entries, got {len(self.indices)}",
                )
            )
        if len(set(self.indices)) != len(self.indices):
            problems.append(("sparse_values_invalid", ("indices",), "indices must be unique"))
        _raise(problems, self, "SparseValues")
        return self


def _dense_problems(values: list[float], index: IndexShape | None) -> list[tuple[str, tuple[str | int, ...], str]]:
    if index is not None and index.is_sparse:
        return [("dimension_mismatch", (), "the index is sparse-only: send sparse_values and no dense values")]
    if index is not None and len(values) != index.dimension:
        return [
            (
                "dimension_mismatch",
                (),
                f"vector dimension {len(values)} does not match the dimension of the index {index.dimension}",
            )
        ]
    if not values or len(values) > MAX_DIMENSION:
        return [("dimension_mismatch", (), f"a dense vector has 1 to {MAX_DIMENSION} values, got {len(values)}")]
    if not any(values):
        return [("zero_vector", (), "a dense vector must have at least one non-zero value")]
    return []


def _metadata_problems(metadata: dict[str, Any]) -> list[tuple[str, tuple[str | int, ...], str]]:
    problems: list[tuple[str, tuple[str | int, ...], str]] = []
    for key, value in metadata.items():
        if not key or key.startswith("$"):
            problems.append(
                ("metadata_key_invalid", (key,), "metadata keys must be non-empty and must not start with '$'")
            )
        elif key == VERSION_METADATA_KEY:
            problems.append(
                (
                    "metadata_key_invalid",
                    (key,),
                    f"{VERSION_METADATA_KEY} is reserved: the relay writes the version there",
                )
            )
        if isinstance(value, bool | str):
            continue
        if isinstance(value, int | float):
            if not math.isfinite(value):
                problems.append(("non_finite_value", (key,), "metadata numbers must be finite"))
            elif not fits_json_number(value):
                problems.append(
                    ("metadata_type", (key,), "integers must fit in 64 bits; send larger numbers as floats")
                )
            continue
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            continue
        problems.append(
            (
                "metadata_type",
                (key,),
                f"metadata values are strings, numbers, booleans or lists of strings; got {_describe(value)}",
            )
        )
    if not problems:
        size = len(orjson.dumps(metadata))
        if size + VERSION_METADATA_ROOM > MAX_METADATA_BYTES:
            problems.append(
                (
                    "metadata_too_large",
                    (),
                    f"metadata is {size} bytes as JSON; Pinecone allows {MAX_METADATA_BYTES}, "
                    f"{VERSION_METADATA_ROOM} of them kept for the relay's version key",
                )
            )
    return problems


def fits_json_number(value: int | float) -> bool:
    """Whether ``value`` survives the JSON encoders on the way to Pinecone (integers limited to 64 bits)."""
    return isinstance(value, float) or -(2**63) <= value < 2**64


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a nested object"
    if isinstance(value, list):
        return "a list with non-string items"
    return type(value).__name__


class UpsertRecord(_Strict):
    """One record to write: its id, the producer's version, and dense and/or sparse values with optional metadata."""

    id: RecordId
    version: Version
    values: list[FiniteFloat] | None = None
    sparse_values: SparseValues | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("values")
    @classmethod
    def _check_values(cls, values: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if values is not None:
            _raise(_dense_problems(values, _context(info).index), values, "values")
        return values

    @field_validator("sparse_values")
    @classmethod
    def _check_sparse_allowed(cls, sparse: SparseValues | None, info: ValidationInfo) -> SparseValues | None:
        index = _context(info).index
        if sparse is not None and index is not None and index.metric != "dotproduct":
            raise PydanticCustomError(
                "sparse_not_supported",
                "sparse values need a dotproduct index; this index uses {metric}",
                {"metric": index.metric},
            )
        return sparse

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is not None:
            _raise(_metadata_problems(metadata), metadata, "metadata")
        return metadata

    @model_validator(mode="after")
    def _check_has_vector(self, info: ValidationInfo) -> Self:
        index = _context(info).index
        if index is not None and not index.is_sparse and self.values is None:
            raise PydanticCustomError("dimension_mismatch", "the index is dense: every record needs values")
        if index is not None and index.is_sparse and self.sparse_values is None:
            raise PydanticCustomError(
                "dimension_mismatch", "the index is sparse-only: every record needs sparse_values"
            )
        if self.values is None and self.sparse_values is None:
            raise PydanticCustomError("schema_violation", "a record needs values, sparse_values, or both")
        return self


class DeleteRecord(_Strict):
    """One record to delete, with the producer's version of the deletion."""

    id: RecordId
    version: Version


def _check_tenant(tenant: str, info: ValidationInfo) -> str:
    tenants = _context(info).tenants
    if tenants is not None and tenant not in tenants:
        raise PydanticCustomError("unknown_tenant", "the tenant is not in the tenant registry")
    return tenant


Tenant = Annotated[str, Field(min_length=1, max_length=MAX_TENANT_CHARS)]


class _Message(_Strict):
    schema_version: Literal[1]
    tenant: Tenant

    @field_validator("tenant")
    @classmethod
    def _known_tenant(cls, tenant: str, info: ValidationInfo) -> str:
        return _check_tenant(tenant, info)


def _check_filter(filter_: dict[str, Any], *, allow_empty: bool) -> None:
    problems = [
        ("invalid_filter", tuple(location.split(".")) if location else (), message)
        for location, message in filter_problems(filter_, allow_empty=allow_empty)
    ]
    _raise(problems, filter_, "filter")


class UpsertMessage(_Message):
    """Write (create or replace) up to 1,000 records of one tenant."""

    op: Literal["upsert"]
    records: Annotated[list[UpsertRecord], Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)]


class DeleteMessage(_Message):
    """Delete up to 1,000 records of one tenant by id."""

    op: Literal["delete"]
    records: Annotated[list[DeleteRecord], Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)]


class DeleteByFilterMessage(_Message):
    """Delete every record of one tenant whose metadata matches a (non-empty) filter.

    The filter may not name ``_relay_version``: the relay writes it into every record, so a filter
    on it selects records by the relay's bookkeeping (``$exists: true`` selects them all). A filter
    that matches every record, whatever the records hold, empties the namespace like
    ``purge_tenant``, so it needs the same ``confirm``: the tenant again.
    """

    op: Literal["delete_by_filter"]
    filter: dict[str, Any]
    confirm: str | None = None

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, filter_: dict[str, Any]) -> dict[str, Any]:
        _check_filter(filter_, allow_empty=False)
        if VERSION_METADATA_KEY in field_names(filter_):
            raise PydanticCustomError(
                "filter_field_reserved",
                f"{VERSION_METADATA_KEY} is the relay's own field; a delete_by_filter may not filter on it",
            )
        return filter_

    @model_validator(mode="after")
    def _confirmed(self) -> Self:
        if self.confirm is not None and self.confirm != self.tenant:
            _raise(
                [("delete_not_confirmed", ("confirm",), "confirm, when given, must equal the tenant")], self, "confirm"
            )
        if self.confirm is None and matches_every_record(self.filter):
            _raise(
                [
                    (
                        "delete_not_confirmed",
                        ("confirm",),
                        "the filter matches every record (it would empty the namespace): "
                        "confirm must equal the tenant, as for purge_tenant",
                    )
                ],
                self,
                "confirm",
            )
        return self


class PurgeTenantMessage(_Message):
    """Delete every record of one tenant. ``confirm`` must repeat the tenant, so a stray message cannot purge."""

    op: Literal["purge_tenant"]
    confirm: str

    @model_validator(mode="after")
    def _confirmed(self) -> Self:
        if self.confirm != self.tenant:
            raise PydanticCustomError("purge_not_confirmed", "confirm must equal the tenant being purged")
        return self


WriteMessage = Annotated[
    UpsertMessage | DeleteMessage | DeleteByFilterMessage | PurgeTenantMessage, Field(discriminator="op")
]


class QueryMessage(_Message):
    """A similarity search in one tenant's namespace, answered on ``reply_to``."""

    op: Literal["query"]
    vector: list[FiniteFloat] | None = None
    id: RecordId | None = None
    sparse_vector: SparseValues | None = None
    top_k: Annotated[int, Field(strict=True)] = 10
    filter: dict[str, Any] | None = None
    include_metadata: bool = False
    include_values: bool = False
    reply_to: Annotated[str, Field(min_length=1, max_length=2048)]
    correlation_id: Annotated[str, Field(min_length=1, max_length=MAX_CORRELATION_ID_CHARS)] | None = None

    @field_validator("vector")
    @classmethod
    def _check_vector(cls, vector: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if vector is not None:
            _raise(_dense_problems(vector, _context(info).index), vector, "vector")
        return vector

    @field_validator("sparse_vector")
    @classmethod
    def _check_sparse_allowed(cls, sparse: SparseValues | None, info: ValidationInfo) -> SparseValues | None:
        index = _context(info).index
        if sparse is not None and index is not None and index.metric != "dotproduct":
            raise PydanticCustomError(
                "sparse_not_supported",
                "sparse queries need a dotproduct index; this index uses {metric}",
                {"metric": index.metric},
            )
        return sparse

    @field_validator("top_k")
    @classmethod
    def _check_top_k(cls, top_k: int) -> int:
        if not 1 <= top_k <= MAX_TOP_K:
            raise PydanticCustomError("top_k_out_of_range", "top_k must be an integer from 1 to 10000")
        return top_k

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, filter_: dict[str, Any] | None) -> dict[str, Any] | None:
        if filter_ is not None:
            _check_filter(filter_, allow_empty=True)
        return filter_

    @field_validator("reply_to")
    @classmethod
    def _allowed_reply_queue(cls, reply_to: str, info: ValidationInfo) -> str:
        allowed = _context(info).reply_queues
        if allowed is not None and reply_to not in allowed:
            raise PydanticCustomError("reply_to_not_allowed", "reply_to is not on the reply queue allow-list")
        return reply_to

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        given = [name for name in ("vector", "id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "query_target_invalid", "a query needs exactly one of vector and id, got {given}", {"given": len(given)}
            )
        return self


class Match(_Strict):
    """One query result. ``values`` and ``metadata`` appear only when the query asked for them."""

    id: str
    score: float
    values: list[float] | None = None
    sparse_values: SparseValues | None = None
    metadata: dict[str, Any] | None = None


class Usage(_Strict):
    read_units: int | None = None


class ResultLocation(_Strict):
    """Where a reply too large for one SQS message was stored."""

    bucket: str
    key: str


class ReplyError(_Strict):
    code: str
    message: str


class QueryReplyOk(_Strict):
    """A successful answer: the matches, or a pointer to them in S3 when they exceed the SQS message limit."""

    schema_version: Literal[1] = 1
    correlation_id: str | None = None
    status: Literal["ok"] = "ok"
    tenant: str
    matches: list[Match] | None = None
    result_location: ResultLocation | None = None
    usage: Usage | None = None

    @model_validator(mode="after")
    def _matches_or_location(self) -> Self:
        if (self.matches is None) == (self.result_location is None):
            raise PydanticCustomError("schema_violation", "an ok reply has exactly one of matches and result_location")
        return self


class QueryReplyError(_Strict):
    """An answer that says why the query could not be served, with a stable ``error.code``."""

    schema_version: Literal[1] = 1
    correlation_id: str | None = None
    status: Literal["error"] = "error"
    tenant: str | None = None
    error: ReplyError


QueryReply = Annotated[QueryReplyOk | QueryReplyError, Field(discriminator="status")]


class DeadLetterAttributes(_Strict):
    """The SQS message attributes a dead-lettered message carries. The body is the original, unchanged."""

    error_code: str
    error_detail: str
    source_queue: str
    source_message_id: str
    receive_count: Annotated[int, Field(ge=1)]
    # When the write was first sent (epoch ms), carried onto every copy (vector_relay.sqs.message_age);
    # absent on DLQ messages from before it existed.
    first_sent_at: Annotated[int, Field(ge=0)] | None = None

    def to_message_attributes(self) -> dict[str, dict[str, str]]:
        """The ``MessageAttributes`` argument of ``sqs.send_message``."""
        attributes = {
            "error_code": {"DataType": "String", "StringValue": self.error_code},
            "error_detail": {"DataType": "String", "StringValue": self.error_detail},
            "source_queue": {"DataType": "String", "StringValue": self.source_queue},
            "source_message_id": {"DataType": "String", "StringValue": self.source_message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(self.receive_count)},
        }
        if self.first_sent_at is not None:
            attributes["first_sent_at"] = {"DataType": "Number", "StringValue": str(self.first_sent_at)}
        return attributes

    @classmethod
    def from_message_attributes(cls, attributes: Mapping[str, Mapping[str, Any]]) -> DeadLetterAttributes:
        """Read the attributes back from a received message (``MessageAttributeNames=["All"]``)."""
        return cls.model_validate(
            {name: attributes[name]["StringValue"] for name in cls.model_fields if name in attributes}
        )
