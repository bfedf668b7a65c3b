"""Reply contract v1: what the query worker answers on a query's ``reply_to``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, SerializationInfo, SerializerFunctionWrapHandler, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from vector_relay.contract.fields import SparseValues, StrictModel


class Match(StrictModel):
    """One query result. ``values`` and ``metadata`` appear only when the query asked for them."""

    id: str
    score: float
    values: list[float] | None = None
    sparse_values: SparseValues | None = None
    metadata: dict[str, Any] | None = None


class Usage(StrictModel):
    read_units: int | None = None


class ResultLocation(StrictModel):
    """Where a reply too large for one SQS message was stored."""

    bucket: str
    key: str


class ReplyError(StrictModel):
    code: str
    message: str


class QueryReplyOk(StrictModel):
    """A successful answer: the matches, or a pointer to them in S3 when they exceed the SQS message limit.

    ``lsn``: the namespace's indexed LSN the answer was read at (Pinecone's ``x-pinecone-max-indexed-lsn``),
    null when Pinecone said none (the gRPC transport); on every ok reply, null included. ``fresh``: only
    in answer to a query with ``min_lsn``, whether ``lsn`` had reached it.
    """

    schema_version: Literal[1] = 1
    correlation_id: str | None = None
    status: Literal["ok"] = "ok"
    tenant: str
    matches: list[Match] | None = None
    result_location: ResultLocation | None = None
    usage: Usage | None = None
    lsn: int | None = None  # optional to read: replies of a relay from before read-your-writes have none
    fresh: bool | None = None

    @model_validator(mode="after")
    def _matches_or_location(self) -> Self:
        if (self.matches is None) == (self.result_location is None):
            raise PydanticCustomError("schema_violation", "an ok reply has exactly one of matches and result_location")
        return self

    @model_serializer(mode="wrap")
    def _lsn_written_as_null(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """``lsn`` is written even when null under ``exclude_none`` (unless ``include``/``exclude`` leave it out)."""
        fields: dict[str, Any] = handler(self)
        asked = (info.include is None or "lsn" in info.include) and (info.exclude is None or "lsn" not in info.exclude)
        if self.lsn is None and info.exclude_none and asked:
            fields["lsn"] = None
        return fields


class QueryReplyError(StrictModel):
    """An answer that says why the query could not be served, with a stable ``error.code``."""

    schema_version: Literal[1] = 1
    correlation_id: str | None = None
    status: Literal["error"] = "error"
    tenant: str | None = None
    error: ReplyError


QueryReply = Annotated[QueryReplyOk | QueryReplyError, Field(discriminator="status")]
