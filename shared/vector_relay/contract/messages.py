"""Message contract v1: what upstream services publish (write messages and queries).

The field types, limits and the :class:`~vector_relay.contract.fields.ValidationContext` the
checks read are in :mod:`vector_relay.contract.fields`; what the query worker replies is in
:mod:`vector_relay.contract.replies`, what the DLQ carries in
:mod:`vector_relay.contract.dead_letter_attributes`. :mod:`vector_relay.contract.parsing` turns
validation errors into :class:`~vector_relay.errors.Problem` lists. ``docs/contract.md`` explains
every field and code.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from vector_relay.contract.fields import (
    MAX_CORRELATION_ID_CHARS,
    MAX_METADATA_BYTES,
    MAX_RECORDS_PER_MESSAGE,
    MAX_TOP_K,
    VERSION_METADATA_KEY,
    VERSION_METADATA_ROOM,
    DenseVector,
    Lsn,
    MessageModel,
    RecordId,
    SparseQueryVector,
    SparseRecordValues,
    StrictModel,
    Version,
    check_filter,
    context_of,
    raise_problems,
)
from vector_relay.contract.filters import field_names, matches_every_record


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


class UpsertRecord(StrictModel):
    """One record to write: its id, the producer's version, and dense and/or sparse values with optional metadata."""

    id: RecordId
    version: Version
    values: DenseVector | None = None
    sparse_values: SparseRecordValues | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _check_metadata(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if metadata is not None:
            raise_problems(_metadata_problems(metadata), metadata, "metadata")
        return metadata

    @model_validator(mode="after")
    def _check_has_vector(self, info: ValidationInfo) -> Self:
        index = context_of(info).index
        if index is not None and not index.is_sparse and self.values is None:
            raise PydanticCustomError("dimension_mismatch", "the index is dense: every record needs values")
        if index is not None and index.is_sparse and self.sparse_values is None:
            raise PydanticCustomError(
                "dimension_mismatch", "the index is sparse-only: every record needs sparse_values"
            )
        if self.values is None and self.sparse_values is None:
            raise PydanticCustomError("schema_violation", "a record needs values, sparse_values, or both")
        return self


class DeleteRecord(StrictModel):
    """One record to delete, with the producer's version of the deletion."""

    id: RecordId
    version: Version


class UpsertMessage(MessageModel):
    """Write (create or replace) up to 1,000 records of one tenant."""

    op: Literal["upsert"]
    records: Annotated[list[UpsertRecord], Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)]


class DeleteMessage(MessageModel):
    """Delete up to 1,000 records of one tenant by id."""

    op: Literal["delete"]
    records: Annotated[list[DeleteRecord], Field(min_length=1, max_length=MAX_RECORDS_PER_MESSAGE)]


class DeleteByFilterMessage(MessageModel):
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
        check_filter(filter_, allow_empty=False)
        if VERSION_METADATA_KEY in field_names(filter_):
            raise PydanticCustomError(
                "filter_field_reserved",
                f"{VERSION_METADATA_KEY} is the relay's own field; a delete_by_filter may not filter on it",
            )
        return filter_

    @model_validator(mode="after")
    def _confirmed(self) -> Self:
        if self.confirm is not None and self.confirm != self.tenant:
            raise_problems(
                [("delete_not_confirmed", ("confirm",), "confirm, when given, must equal the tenant")], self, "confirm"
            )
        if self.confirm is None and matches_every_record(self.filter):
            raise_problems(
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


class PurgeTenantMessage(MessageModel):
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


class QueryMessage(MessageModel):
    """A similarity search in one tenant's namespace, answered on ``reply_to``.

    ``min_lsn`` asks for read-your-writes: the answer must reflect every write of the tenant's namespace
    up to that log sequence number (its receipt's ``lsn``); the worker asks again while the index is behind
    it, and the reply says whether it got there (``fresh``). ``writes_sent_at`` (epoch ms, the newest of
    those writes' ``first_sent_at``) lets the worker report how long they took to become visible.
    """

    op: Literal["query"]
    vector: DenseVector | None = None
    id: RecordId | None = None
    sparse_vector: SparseQueryVector | None = None
    top_k: Annotated[int, Field(strict=True)] = 10
    filter: dict[str, Any] | None = None
    include_metadata: bool = False
    include_values: bool = False
    reply_to: Annotated[str, Field(min_length=1, max_length=2048)]
    correlation_id: Annotated[str, Field(min_length=1, max_length=MAX_CORRELATION_ID_CHARS)] | None = None
    min_lsn: Lsn | None = None
    writes_sent_at: Annotated[int, Field(strict=True, ge=0, le=2**53)] | None = None

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
            check_filter(filter_, allow_empty=True)
        return filter_

    @field_validator("reply_to")
    @classmethod
    def _allowed_reply_queue(cls, reply_to: str, info: ValidationInfo) -> str:
        allowed = context_of(info).reply_queues
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
