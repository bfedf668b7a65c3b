"""Pinecone's metadata filter language, checked before any call.

A filter Pinecone would reject with HTTP 400 is caught here, so the message is dead-lettered with a
readable reason instead of costing a request (and, for a query, the caller gets an error reply).
The rules follow Pinecone's "Filter by metadata" guide (docs.pinecone.io/guides/search/filter-by-metadata):

* a filter is an object; several keys are an implicit AND;
* ``$and`` / ``$or`` take a non-empty array of filters;
* a field maps to a bare value (shorthand for ``$eq``) or to an object of operators;
* ``$eq`` / ``$ne`` take a string, number or boolean; ``$gt`` ``$gte`` ``$lt`` ``$lte`` a number only;
  ``$in`` / ``$nin`` a non-empty array of strings or numbers; ``$exists`` a boolean;
* field names do not start with ``$``; null, nested arrays and non-finite numbers are never valid.

The text-match operators (``$match_phrase`` and friends) belong to Pinecone's documents API and are
rejected on vector indexes, so they are rejected here too.
"""

from __future__ import annotations

import math
from typing import Any

LOGICAL_OPERATORS = frozenset({"$and", "$or"})
EQUALITY_OPERATORS = frozenset({"$eq", "$ne"})
ORDERING_OPERATORS = frozenset({"$gt", "$gte", "$lt", "$lte"})
MEMBERSHIP_OPERATORS = frozenset({"$in", "$nin"})
FIELD_OPERATORS = EQUALITY_OPERATORS | ORDERING_OPERATORS | MEMBERSHIP_OPERATORS | {"$exists"}

# Deeper filters are not useful and would let a message drive unbounded recursion.
MAX_FILTER_DEPTH = 16


def filter_problems(filter_: Any, *, allow_empty: bool) -> list[tuple[str, str]]:
    """Return ``(location, message)`` for every way ``filter_`` breaks Pinecone's filter language.

    ``location`` is a dotted path inside the filter (empty for the filter as a whole). An empty
    list means the filter is valid. ``allow_empty`` is false where Pinecone rejects ``{}``
    (delete and update by filter).
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(filter_, dict):
        return [("", f"a filter must be an object, got {_json_type(filter_)}")]
    if not filter_ and not allow_empty:
        return [("", "an empty filter would match every record; it is not allowed here")]
    _check_filter_object(filter_, "", 1, problems)
    return problems


def _check_filter_object(filter_: dict[Any, Any], path: str, depth: int, problems: list[tuple[str, str]]) -> None:
    if depth > MAX_FILTER_DEPTH:
        problems.append((path, f"filters nest at most {MAX_FILTER_DEPTH} levels deep"))
        return
    for key, value in filter_.items():
        where = _join(path, key)
        if key in LOGICAL_OPERATORS:
            _check_logical(key, value, where, depth, problems)
        elif key.startswith("$"):
            problems.append((where, f"unknown operator {key!r} at this level (expected a field name, $and or $or)"))
        elif key == "":
            problems.append((where, "a field name must not be empty"))
        elif isinstance(value, dict):
            _check_operators(value, where, problems)
        else:
            _check_operand("$eq", value, where, problems)


def _check_logical(key: str, value: Any, where: str, depth: int, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, list) or not value:
        problems.append((where, f"{key} takes a non-empty array of filters, got {_json_type(value)}"))
        return
    for index, item in enumerate(value):
        item_where = f"{where}[{index}]"
        if not isinstance(item, dict) or not item:
            problems.append((item_where, f"each {key} item must be a non-empty filter object"))
        else:
            _check_filter_object(item, item_where, depth + 1, problems)


def _check_operators(operators: dict[Any, Any], where: str, problems: list[tuple[str, str]]) -> None:
    if not operators:
        problems.append((where, "an operator object must not be empty"))
        return
    for operator, operand in operators.items():
        if operator not in FIELD_OPERATORS:
            problems.append(
                (_join(where, operator), f"unknown operator {operator!r}; valid: {', '.join(sorted(FIELD_OPERATORS))}")
            )
        else:
            _check_operand(operator, operand, _join(where, operator), problems)


def _check_operand(operator: str, operand: Any, where: str, problems: list[tuple[str, str]]) -> None:
    if operator in EQUALITY_OPERATORS:
        if isinstance(operand, list):
            problems.append((where, f"{operator} compares with one value; use $in or $nin for a list"))
        elif not _is_scalar(operand):
            problems.append((where, f"{operator} takes a string, number or boolean, got {_json_type(operand)}"))
    elif operator in ORDERING_OPERATORS:
        if not _is_number(operand):
            problems.append((where, f"{operator} takes a number only, got {_json_type(operand)}"))
    elif operator in MEMBERSHIP_OPERATORS:
        if not isinstance(operand, list) or not operand:
            problems.append(
                (where, f"{operator} takes a non-empty array of strings or numbers, got {_json_type(operand)}")
            )
        else:
            for index, item in enumerate(operand):
                if not (isinstance(item, str) or _is_number(item)):
                    problems.append(
                        (f"{where}[{index}]", f"{operator} items are strings or numbers, got {_json_type(item)}")
                    )
    elif operator == "$exists" and not isinstance(operand, bool):
        problems.append((where, f"$exists takes true or false, got {_json_type(operand)}"))


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**64  # what the JSON encoder on the way to Pinecone can write
    return math.isfinite(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
