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
from collections.abc import Iterator
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


def field_names(filter_: dict[str, Any]) -> set[str]:
    """Every metadata field a valid filter names, at any depth of ``$and`` / ``$or``."""
    names: set[str] = set()
    for key, value in filter_.items():
        if key in LOGICAL_OPERATORS:
            for item in value:
                names |= field_names(item)
        else:
            names.add(key)
    return names


def matches_every_record(filter_: dict[str, Any]) -> bool:
    """Whether a valid filter is true of every record there could be, whatever its metadata.

    Decided from the filter alone, so only what holds for *any* record counts:

    * ``{}`` (no condition), and an implicit or explicit AND whose every part matches every record;
    * an ``$or`` with a part that matches every record, or whose parts ask both ``$exists: true``
      and ``$exists: false`` of one field (a record has the field or it has not).

    What depends on the records is not decided here and returns False: ``$exists: true`` on a field
    every record happens to carry, ``$ne`` / ``$nin`` of a value no record holds, a range that spans
    every value in use, ``$eq`` on a value all records share, and complements such as ``$eq: v`` or
    ``$ne: v`` (Pinecone does not document how those treat list fields and values of other types, so
    calling them complete would be a guess).
    """
    return all(_clause_matches_every_record(key, value) for key, value in filter_.items())


def _clause_matches_every_record(key: str, value: Any) -> bool:
    if key == "$and":
        return all(matches_every_record(item) for item in value)
    if key == "$or":
        items = list(_or_items(value))
        if any(matches_every_record(item) for item in items):
            return True
        exists: dict[str, set[bool]] = {}
        for item in items:
            if len(item) == 1:
                [(name, condition)] = item.items()
                if name not in LOGICAL_OPERATORS and isinstance(condition, dict) and set(condition) == {"$exists"}:
                    exists.setdefault(name, set()).add(condition["$exists"])
        return any(seen == {True, False} for seen in exists.values())
    return False  # a condition on one field: a record without the field, or with another value, fails it


def _or_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The parts of an ``$or``, with an ``$or`` nested alone in a part taken as parts of this one."""
    for item in items:
        if set(item) == {"$or"}:
            yield from _or_items(item["$or"])
        else:
            yield item


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
