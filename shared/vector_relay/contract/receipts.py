"""Write receipt contract v1: what the relay tells a tenant once an ingest message's fate is final.

One receipt per ingest message, on the queue the tenant's registry entry names (``receipts``). SQS
delivers at least once, so a receipt may arrive twice: :func:`receipt_id` is the same for every copy
of the same receipt, and a consumer de-duplicates on it. The ingest worker builds the bodies
(:mod:`vector_relay.ingest.receipts`); producers read them (:mod:`vector_relay.producer`). Imports
no AWS library, so both sides can use it. The fields, with examples: docs/producer.md, "Waiting for
a receipt".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from vector_relay.contract.fields import MAX_LSN, MAX_RECORD_ID_CHARS, StrictModel, Tenant, Version

RECEIPT_MAX_LISTED = 100  # records (and stale records) listed by id and version; the counts give the totals
RECEIPT_ID_HEX_CHARS = 32

Fate = Literal["applied", "stale", "dead_lettered"]
WriteOp = Literal["upsert", "delete", "delete_by_filter", "purge_tenant"]
EpochMs = Annotated[int, Field(strict=True, ge=0)]
Count = Annotated[int, Field(strict=True, ge=0)]


class RecordVersion(StrictModel):
    """A record a receipt names: its id and the version this message carried for it."""

    id: Annotated[str, Field(min_length=1, max_length=MAX_RECORD_ID_CHARS)]
    version: Version


Listed = Annotated[list[RecordVersion], Field(max_length=RECEIPT_MAX_LISTED)]

# The fields each fate's body carries besides the common ones (docs/producer.md lists them).
_WRITE_FIELDS = frozenset({"namespace", "records", "record_count", "stale", "stale_count", "lsn"})
_DEAD_LETTER_FIELDS = frozenset({"error_code", "error_codes"})


class Receipt(StrictModel):
    """One ingest message's final fate: ``applied``, ``stale`` or ``dead_lettered``.

    ``applied`` and ``stale`` carry the namespace, the records written (``records``) and dropped for
    a newer version (``stale``), at most :data:`RECEIPT_MAX_LISTED` of each listed with the totals in
    the counts, and the highest LSN Pinecone gave the writes (``lsn``, None when unknown).
    ``dead_lettered`` carries the DLQ's ``error_code`` (and every code found, ``error_codes``); a
    redrive may still apply the message, and an ``applied`` receipt then follows. No receipt carries
    vector values, metadata or an error's detail text.
    """

    schema_version: Literal[1]
    type: Literal["receipt"]
    receipt_id: Annotated[str, Field(pattern=rf"^[0-9a-f]{{{RECEIPT_ID_HEX_CHARS}}}$")]
    message_id: Annotated[str, Field(min_length=1, max_length=256)]
    tenant: Tenant
    op: WriteOp | None  # None: a dead letter whose body was not a readable message
    fate: Fate
    namespace: str | None = None
    records: Listed = Field(default_factory=list)
    record_count: Count = 0
    stale: Listed = Field(default_factory=list)
    stale_count: Count = 0
    lsn: Annotated[int, Field(strict=True, ge=0, le=MAX_LSN)] | None = None
    error_code: str | None = None
    error_codes: list[str] | None = None
    at: EpochMs  # when the fate was decided
    first_sent_at: EpochMs  # when the producer first sent the message (SQS's SentTimestamp of the original)

    @model_validator(mode="after")
    def _fields_of_the_fate(self) -> Self:
        problems: list[str] = []
        if self.fate == "dead_lettered":
            if not self.error_code:
                problems.append("a dead_lettered receipt names its error_code")
            if self.stale or self.stale_count:
                problems.append("a dead_lettered receipt names no stale records")
            if len(self.records) > self.record_count:
                problems.append("record_count counts at least the records listed")
            if self.lsn is not None and not self.record_count:
                problems.append("a dead_lettered receipt has an lsn only for records written before it was refused")
        else:
            if self.namespace is None:
                problems.append(f"an {self.fate} receipt names its namespace")
            if self.error_code is not None or self.error_codes is not None:
                problems.append(f"only a dead_lettered receipt has error codes, not an {self.fate} one")
            if len(self.records) > self.record_count or len(self.stale) > self.stale_count:
                problems.append("record_count and stale_count count at least the records listed")
            if self.fate == "stale" and (self.record_count or self.lsn is not None):
                problems.append("a stale receipt wrote nothing: no records and no lsn")
        if problems:
            raise PydanticCustomError("receipt_invalid", "{problems}", {"problems": "; ".join(problems)})
        return self

    def body(self) -> str:
        """The receipt as the relay sends it: the common fields and its fate's (docs/producer.md)."""
        other = _DEAD_LETTER_FIELDS if self.fate != "dead_lettered" else {"stale", "stale_count"}
        exclude = set(other)
        if self.fate == "dead_lettered" and not self.record_count:  # nothing of it was written: no write fields
            exclude |= _WRITE_FIELDS
        if self.fate == "dead_lettered" and self.namespace is None:
            exclude.add("namespace")
        return self.model_dump_json(exclude=exclude)


def receipt_id(
    message_id: str,
    fate: str,
    op: str | None,
    records: Iterable[RecordVersion | Mapping[str, object] | tuple[str, int]],
    stale: Iterable[RecordVersion | Mapping[str, object] | tuple[str, int]],
    error_code: str | None,
) -> str:
    """The id every copy of the same receipt has: 32 hex characters of SHA-256 over a canonical string.

    ``records`` and ``stale`` are the records the receipt lists (``{"id", "version"}`` mappings,
    :class:`RecordVersion` or ``(id, version)`` pairs), in any order. The same message with the same
    fate and the same records has the same id whenever (and however often) its receipt is built;
    a dead letter and the ``applied`` receipt of its redrive have different ids.
    """
    canonical = json.dumps(
        {
            "v": 1,
            "message_id": message_id,
            "fate": fate,
            "op": op,
            "records": sorted(_pair(r) for r in records),
            "stale": sorted(_pair(r) for r in stale),
            "error_code": error_code,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:RECEIPT_ID_HEX_CHARS]


def _pair(record: RecordVersion | Mapping[str, object] | tuple[str, int]) -> tuple[str, int]:
    if isinstance(record, RecordVersion):
        return record.id, record.version
    if isinstance(record, tuple):
        return str(record[0]), int(record[1])
    version = record["version"]
    if not isinstance(version, int):
        raise TypeError(f"a record's version is an integer, got {type(version).__name__}")
    return str(record["id"]), version
