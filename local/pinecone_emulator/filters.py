"""Pinecone's metadata filter language, compiled to predicates.

Semantics (docs "filter by metadata", research §7):
* several keys in one object, or several operators on one field, are an implicit AND;
* a list-of-strings field matches ``$eq``/``$in`` when any element matches;
* every operator except ``$exists: false`` fails on a missing field, including ``$ne`` and ``$nin``;
* ``$gt``/``$gte``/``$lt``/``$lte`` take numbers only; numbers compare as 64-bit floats;
* anything else is an invalid filter, which the caller turns into a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata], bool]

_MISSING = object()
_COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}
_OPERATORS = {"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS}


class FilterError(ValueError):
    """The filter does not compile; the message is what the 400 says."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _same(stored: object, wanted: object) -> bool:
    """Type-aware equality: booleans never equal numbers, numbers compare as floats."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored is wanted
    if _is_number(stored) and _is_number(wanted):
        return float(stored) == float(wanted)  # type: ignore[arg-type]
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored == wanted
    return False


def _contains(stored: object, wanted: object) -> bool:
    if isinstance(stored, list):
        return any(_same(element, wanted) for element in stored)
    return _same(stored, wanted)


def _render(value: object) -> str:
    if _is_number(value):
        return repr(float(value))  # type: ignore[arg-type]
    return repr(value)


def _compile_operator(field_name: str, operator: str, operand: object) -> Predicate:
    if operator in ("$eq", "$ne"):
        if not _is_scalar(operand):
            raise FilterError(
                f"Invalid filter for field '{field_name}': {operator} requires a string, number or boolean, "
                f"got {_render(operand)}"
            )
        if operator == "$eq":
            return lambda md: _contains(md.get(field_name, _MISSING), operand)
        return lambda md: (value := md.get(field_name, _MISSING)) is not _MISSING and not _contains(value, operand)
    if operator in ("$in", "$nin"):
        if not isinstance(operand, list) or not all(_is_scalar(item) for item in operand):
            raise FilterError(
                f"Invalid filter for field '{field_name}': {operator} requires an array of strings, numbers "
                f"or booleans, got {_render(operand)}"
            )
        items = list(operand)
        if operator == "$in":
            return lambda md: any(_contains(md.get(field_name, _MISSING), item) for item in items)
        return lambda md: (
            (value := md.get(field_name, _MISSING)) is not _MISSING
            and not any(_contains(value, item) for item in items)
        )
    if operator == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(
                f"Invalid filter for field '{field_name}': $exists requires a boolean, got {_render(operand)}"
            )
        return lambda md: (field_name in md) is operand
    if operator in _COMPARISONS:
        if not _is_number(operand):
            raise FilterError(
                f"Invalid filter for field '{field_name}': {operator} requires a number, got {_render(operand)}"
            )
        bound = float(operand)  # type: ignore[arg-type]
        compare: Callable[[float], bool] = {
            "$gt": lambda v: v > bound,
            "$gte": lambda v: v >= bound,
            "$lt": lambda v: v < bound,
            "$lte": lambda v: v <= bound,
        }[operator]
        return lambda md: _is_number(value := md.get(field_name, _MISSING)) and compare(float(value))  # type: ignore[arg-type]
    raise FilterError(f"Invalid filter operator '{operator}' for field '{field_name}'")


def _compile_field(field_name: str, condition: object) -> Predicate:
    if isinstance(condition, dict):
        if not condition:
            raise FilterError(f"Invalid filter for field '{field_name}': empty condition")
        predicates = []
        for operator, operand in condition.items():
            if operator not in _OPERATORS:
                raise FilterError(f"Invalid filter operator '{operator}' for field '{field_name}'")
            predicates.append(_compile_operator(field_name, operator, operand))
        if len(predicates) == 1:
            return predicates[0]
        return lambda md: all(p(md) for p in predicates)
    if _is_scalar(condition):
        return _compile_operator(field_name, "$eq", condition)
    raise FilterError(
        f"Invalid filter for field '{field_name}': expected a string, number, boolean or an operator object, "
        f"got {_render(condition)}"
    )


def compile_filter(expression: object) -> Predicate:
    """Compile a filter object; raises :class:`FilterError` for anything Pinecone would reject."""
    if not isinstance(expression, dict):
        raise FilterError(f"Invalid filter: expected an object, got {_render(expression)}")
    predicates: list[Predicate] = []
    for key, value in expression.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"Invalid filter: {key} requires a non-empty array of filter objects")
            parts = [compile_filter(part) for part in value]
            if key == "$and":
                predicates.append(lambda md, parts=parts: all(p(md) for p in parts))
            else:
                predicates.append(lambda md, parts=parts: any(p(md) for p in parts))
        elif key.startswith("$"):
            raise FilterError(f"Invalid filter operator '{key}' at the top level")
        elif not key:
            raise FilterError("Invalid filter: field names must not be empty")
        else:
            predicates.append(_compile_field(key, value))
    if not predicates:
        return lambda md: True
    if len(predicates) == 1:
        return predicates[0]
    return lambda md: all(p(md) for p in predicates)
