"""Turn a raw SQS body into a contract model, or into a poison error listing every problem.

The pydantic error ``type`` is already the project's code for the contract's own checks; the
generic pydantic errors (wrong type, missing field, unknown field) become ``schema_violation``,
and a few structural ones get a code of their own. :data:`ERROR_CODES` is the complete list, and a
test keeps ``docs/contract.md`` explaining each one.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from vector_relay.contract.fields import (
    MAX_RECORD_ID_CHARS,
    MAX_RECORDS_PER_MESSAGE,
    MAX_SPARSE_ENTRIES,
    MAX_TOP_K,
    ValidationContext,
)
from vector_relay.contract.messages import QueryMessage, WriteMessage
from vector_relay.errors import PoisonMessageError, Problem

# Every code a message can be dead-lettered or answered with, and what it means.
ERROR_CODES: dict[str, str] = {
    "invalid_json": "the body is not valid JSON",
    "json_too_deep": "the body nests arrays and objects more than 200 levels deep (valid JSON, but more than the "
    "relay reads; no message of the contract needs more than about 40)",
    "schema_violation": "a field is missing, unknown, or of the wrong type or size",
    "unsupported_schema_version": "schema_version is not 1",
    "unknown_op": "op is missing or not an operation this queue accepts",
    "unknown_tenant": "the tenant is not in the tenant registry",
    "tenant_not_bound": "the message came from a queue that may not act for its tenant (set by the worker)",
    "too_many_records": f"more than {MAX_RECORDS_PER_MESSAGE:,} records in one message",
    "id_invalid": f"a record id is not 1-{MAX_RECORD_ID_CHARS} ASCII characters without NUL",
    "dimension_mismatch": "a dense vector's length is not the index dimension, or its kind does not fit the index",
    "non_finite_value": "a vector or metadata number is NaN or infinite",
    "zero_vector": "a dense vector has only zeros",
    "sparse_values_invalid": "sparse indices and values differ in length, repeat an index, or exceed "
    f"{MAX_SPARSE_ENTRIES:,} entries",
    "sparse_not_supported": "sparse values sent to an index whose metric is not dotproduct",
    "metadata_type": "a metadata value is not a string, number, boolean or list of strings",
    "metadata_key_invalid": "a metadata key is empty, starts with '$', or is the reserved _relay_version",
    "metadata_too_large": "a record's metadata exceeds 40 KB as JSON (with the relay's version key)",
    "metadata_schema_violation": "a record's metadata breaks its tenant's schema: a required field missing, a field of "
    "another type, or an undeclared field where the schema forbids them (set by the worker)",
    "invalid_filter": "a filter breaks Pinecone's filter language",
    "filter_field_not_declared": "a filter names a field the tenant's schema does not declare filterable "
    "(set by the worker)",
    "filter_type_mismatch": "a filter compares a field of the tenant's schema with a value of another type "
    "(set by the worker)",
    "purge_not_confirmed": "purge_tenant's confirm does not repeat the tenant",
    "delete_not_confirmed": "delete_by_filter's filter matches every record and confirm does not repeat the tenant, "
    "or confirm is given and names another tenant",
    "filter_field_reserved": "a delete_by_filter's filter names _relay_version, the field the relay writes itself",
    "query_target_invalid": "a query has both or neither of vector and id",
    "top_k_out_of_range": f"top_k is outside 1-{MAX_TOP_K:,}",
    "min_lsn_invalid": "a query's min_lsn is not an integer from 0 to 2**63 - 1 (a write's LSN)",
    "result_too_large": "the reply would exceed the relay's 4 MiB bound on one reply (set by the worker)",
    "reply_to_not_allowed": "reply_to is not on the reply queue allow-list (or the tenant's own reply_queues)",
    "pinecone_rejected": "Pinecone answered 400/422 for this message's records (set by the worker)",
    "retries_exhausted": "the last delivery before the redrive limit failed transiently (set by the worker)",
    "write_expired": "the write was first sent longer ago than the version guard remembers versions "
    "(WRITE_VERSION_TTL_SECONDS less 1 h), so applying it could overtake a forgotten delete (set by the worker)",
}

# The JSON parser of pydantic-core (jiter) reads at most this many nested arrays and objects and
# refuses a deeper body as it reads it, with no Python recursion (tests/unit/test_contract.py pins
# the figure). Nothing in the contract nests more than about 40 levels (a filter of 16).
MAX_JSON_DEPTH = 200
_TOO_DEEP = Problem(
    "json_too_deep",
    "",
    f"the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep, more than the relay reads",
)

_WRITE_OPS = ("upsert", "delete", "delete_by_filter", "purge_tenant")
_QUERY_OPS = ("query",)

_write_adapter: TypeAdapter[WriteMessage] = TypeAdapter(WriteMessage)


def parse_write_message(body: str, context: ValidationContext) -> WriteMessage:
    """Validate an ingest-queue body. Raises :class:`PoisonMessageError` with every problem.

    However the body fails to be read it is poison: a ``RecursionError`` (a part nested deeper than
    some check can follow) is ``json_too_deep`` like a body the parser refuses for its depth.
    """
    try:
        return _write_adapter.validate_json(body, context=context.as_pydantic_context())
    except ValidationError as error:
        raise PoisonMessageError(problems_from(error, _WRITE_OPS)) from None
    except RecursionError:
        raise PoisonMessageError([_TOO_DEEP]) from None


def parse_query_message(body: str, context: ValidationContext) -> QueryMessage:
    """Validate a query-queue body. Raises :class:`PoisonMessageError` with every problem (as parse_write_message)."""
    try:
        return QueryMessage.model_validate_json(body, context=context.as_pydantic_context())
    except ValidationError as error:
        raise PoisonMessageError(problems_from(error, _QUERY_OPS)) from None
    except RecursionError:
        raise PoisonMessageError([_TOO_DEEP]) from None


def read_json(body: str) -> Any:
    """``body`` as Python values, read by the same parser and within the same depth as the contract's models.

    Raises ``ValueError`` for anything the models could not read either (invalid JSON, too deep).
    """
    try:
        return from_json(body)
    except RecursionError:
        raise ValueError(_TOO_DEEP.message) from None


def problems_from(error: ValidationError, ops: tuple[str, ...]) -> list[Problem]:
    """Map pydantic's errors to the contract's codes, with locations like ``records[3].values``."""
    problems: list[Problem | None] = []
    non_finite: dict[tuple[int | str, ...], tuple[int, list[int | str]]] = {}  # vector -> (its slot, positions)
    for detail in error.errors(include_url=False, include_input=False):
        loc = detail["loc"]
        if loc and loc[0] in ops:  # a discriminated union puts the tag first
            loc = loc[1:]
        if detail["type"] == "finite_number" and loc:
            slot, positions = non_finite.setdefault(loc[:-1], (len(problems), []))
            if not positions:
                problems.append(None)  # filled in below, once every position of this vector is known
            positions.append(loc[-1])
            continue
        if detail["type"] == "json_invalid" and str(detail.get("ctx", {}).get("error", "")).startswith(
            "recursion limit exceeded"
        ):
            problems.append(_TOO_DEEP)
            continue
        problems.append(Problem(_code_for(detail["type"], loc, ops), _format_location(loc), _message_for(detail, ops)))
    for vector, (slot, positions) in non_finite.items():
        more = f" and {len(positions) - 1} more" if len(positions) > 1 else ""
        message = f"values must be finite numbers (no NaN or Infinity); position {positions[0]}{more} is not"
        problems[slot] = Problem("non_finite_value", _format_location(vector), message)
    return [problem for problem in problems if problem is not None]


def _code_for(error_type: str, loc: tuple[int | str, ...], ops: tuple[str, ...]) -> str:
    if error_type in ERROR_CODES:
        return error_type
    if error_type == "json_invalid":
        return "invalid_json"
    if error_type in {"union_tag_invalid", "union_tag_not_found"} or (loc == ("op",) and error_type == "literal_error"):
        return "unknown_op"
    if loc == ("schema_version",) and error_type == "literal_error":
        return "unsupported_schema_version"
    if error_type == "too_long" and loc == ("records",):
        return "too_many_records"
    return "schema_violation"


def _message_for(detail: Any, ops: tuple[str, ...]) -> str:
    if detail["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return f"op must be one of {', '.join(ops)}"
    if detail["type"] == "extra_forbidden":
        return "unknown field (contract v1 rejects fields it does not define)"
    return str(detail["msg"])


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
