"""The contract's building blocks: its limits, the deployment facts it checks against, the shared field types.

Every model forbids unknown fields. Structural rules (types, required fields, sizes) live in the
field types; the rules that depend on the deployment (the tenant registry, the index's dimension
and metric, the reply allow-list) read a :class:`ValidationContext` passed at validation time, so
one pass over a message finds every problem. Validation errors carry stable codes (the pydantic
error ``type`` is the code for the project's own checks). The models built from these are in
:mod:`vector_relay.contract.messages`, :mod:`~vector_relay.contract.replies` and
:mod:`~vector_relay.contract.dead_letter_attributes`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import (
    AfterValidator,
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

from vector_relay.contract.filters import filter_problems

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
# A query's min_lsn: a log sequence number Pinecone gave a write (x-pinecone-request-lsn), 64 bits at most.
MAX_LSN = 2**63 - 1

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


def context_of(info: ValidationInfo) -> ValidationContext:
    found = info.context.get(CONTEXT_KEY) if isinstance(info.context, dict) else None
    return found if isinstance(found, ValidationContext) else ValidationContext()


def raise_problems(problems: Iterable[tuple[str, tuple[str | int, ...], str]], value: Any, title: str) -> None:
    """Raise one ValidationError with every ``(code, location, message)``; pydantic merges it into the outer one."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError(code, message.replace("{", "(").replace("}", ")")), loc=loc, input=value
        )
        for code, loc, message in problems
    ]
    if details:
        raise ValidationError.from_exception_data(title, details)


class StrictModel(BaseModel):
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


def _check_lsn(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LSN:
        raise PydanticCustomError(
            "min_lsn_invalid", "min_lsn must be an integer from 0 to 2**63 - 1 (a write's LSN, as its receipt gives it)"
        )
    return value


# A log sequence number. Any wrong value (a string, a boolean, a float, a negative number) is
# min_lsn_invalid rather than schema_violation, as any wrong record id is id_invalid. The Field comes
# first so that the JSON Schema states the bounds as minimum and maximum.
Lsn = Annotated[int, Field(ge=0, le=MAX_LSN), BeforeValidator(_check_lsn)]
Version = Annotated[int, Field(strict=True, ge=0, le=MAX_VERSION)]
# Finiteness is checked by pydantic-core as it parses each number (no per-float Python work); the
# model config still lets the parser read NaN / Infinity, so they are reported as non_finite_value
# (validation.problems_from folds a vector's non-finite positions into one problem).
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class SparseValues(StrictModel):
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
        raise_problems(problems, self, "SparseValues")
        return self


def dense_problems(values: list[float], index: IndexShape | None) -> list[tuple[str, tuple[str | int, ...], str]]:
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


def _check_tenant(tenant: str, info: ValidationInfo) -> str:
    tenants = context_of(info).tenants
    if tenants is not None and tenant not in tenants:
        raise PydanticCustomError("unknown_tenant", "the tenant is not in the tenant registry")
    return tenant


Tenant = Annotated[str, Field(min_length=1, max_length=MAX_TENANT_CHARS)]


def _dense_checked(values: list[float], info: ValidationInfo) -> list[float]:
    """A dense vector against the index's dimension (and a cosine index's need for a non-zero value)."""
    raise_problems(dense_problems(values, context_of(info).index), values, "dense vector")
    return values


def _sparse_allowed(what: str) -> AfterValidator:
    """Sparse values need a dotproduct index; ``what`` names them in the refusal ("sparse values", ...)."""

    def check(sparse: SparseValues, info: ValidationInfo) -> SparseValues:
        index = context_of(info).index
        if index is not None and index.metric != "dotproduct":
            raise PydanticCustomError(
                "sparse_not_supported",
                f"{what} need a dotproduct index; this index uses {{metric}}",
                {"metric": index.metric},
            )
        return sparse

    return AfterValidator(check)


# The vector checks once, as types: a record's values and a query's vector are the same dense vector.
DenseVector = Annotated[list[FiniteFloat], AfterValidator(_dense_checked)]
SparseRecordValues = Annotated[SparseValues, _sparse_allowed("sparse values")]
SparseQueryVector = Annotated[SparseValues, _sparse_allowed("sparse queries")]


class MessageModel(StrictModel):
    schema_version: Literal[1]
    tenant: Tenant

    @field_validator("tenant")
    @classmethod
    def _known_tenant(cls, tenant: str, info: ValidationInfo) -> str:
        return _check_tenant(tenant, info)


def check_filter(filter_: dict[str, Any], *, allow_empty: bool) -> None:
    problems = [
        ("invalid_filter", tuple(location.split(".")) if location else (), message)
        for location, message in filter_problems(filter_, allow_empty=allow_empty)
    ]
    raise_problems(problems, filter_, "filter")
