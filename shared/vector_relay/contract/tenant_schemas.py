"""Per-tenant metadata schemas: no record lands with a field of the wrong type, no filter silently misses.

Pinecone enforces no schema: a filter on a field some records lack, or that holds a number in one
record and a string in another, returns fewer matches than it should, or none, and no error. A
tenant's registry entry may declare one (docs/contract.md, "Tenant metadata schemas"):

    "schema": {"fields": {"year": {"type": "number", "required": true},
                          "genre": {"type": "string"},
                          "tags": {"type": "string_list", "filterable": false}},
               "extra": "forbid"}

Types: ``string``, ``number`` (an integer-valued float and an int are the same number; a boolean is
not a number), ``boolean``, ``string_list``. ``required`` (default false): every upserted record has
it. ``filterable`` (default true): queries and delete_by_filter may filter on it. ``extra``:
``allow`` (default) keeps undeclared fields, ``forbid`` refuses them. With a schema, a filter may
name only declared filterable fields, with values of their type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, assert_never

from vector_relay.errors import Problem

if TYPE_CHECKING:
    from vector_relay.contract.messages import WriteMessage

FieldType = Literal["string", "number", "boolean", "string_list"]
FIELD_TYPES: tuple[FieldType, ...] = ("string", "number", "boolean", "string_list")
FIELD_KEYS = frozenset({"type", "required", "filterable"})
SCHEMA_KEYS = frozenset({"fields", "extra"})
LOGICAL = frozenset({"$and", "$or"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    type: FieldType
    required: bool = False
    filterable: bool = True


@dataclass(frozen=True, slots=True)
class TenantSchema:
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    extra: Literal["allow", "forbid"] = "allow"

    @classmethod
    def parse(cls, raw: object, where: str, problems: list[str]) -> TenantSchema | None:
        """The schema of a registry entry; what is wrong with it is appended to ``problems``."""
        if not isinstance(raw, dict):
            problems.append(f'{where}: schema must be an object {{"fields": {{...}}, "extra": "allow"|"forbid"}}')
            return None
        unknown = sorted(set(map(str, raw)) - SCHEMA_KEYS)
        if unknown:
            problems.append(f"{where}: unknown schema keys {unknown} (known: {sorted(SCHEMA_KEYS)})")
        extra = raw.get("extra", "allow")
        if extra not in ("allow", "forbid"):
            problems.append(f"{where}: extra must be 'allow' or 'forbid', got {extra!r}")
        fields = raw.get("fields", {})
        if not isinstance(fields, dict):
            problems.append(f"{where}: fields must be an object of field name -> {{type, required, filterable}}")
            return None
        specs: dict[str, FieldSpec] = {}
        for name, spec in fields.items():
            parsed = _field(name, spec, f"{where}.fields.{name}", problems)
            if parsed is not None:
                specs[name] = parsed
        return cls(specs, extra if extra in ("allow", "forbid") else "allow")

    def record_problems(self, index: int, metadata: Mapping[str, Any] | None) -> list[Problem]:
        """Why the metadata of record ``index`` breaks the schema (empty: it conforms).

        A reason names the record by its position, the field, the type expected and the type found;
        never a value of the message (its id included), which stays in the dead-lettered body.
        """
        metadata = metadata or {}
        problems: list[Problem] = []
        where = f"records[{index}].metadata"
        for name, spec in self.fields.items():
            if name not in metadata:
                if spec.required:
                    problems.append(_violation(f"{where}.{name}", f"required field '{name}' ({spec.type}) is missing"))
                continue
            found = metadata[name]
            if not conforms(spec.type, found):
                problems.append(
                    _violation(f"{where}.{name}", f"field '{name}' must be {spec.type}, found {describe(found)}")
                )
        if self.extra == "forbid":
            for name in metadata:
                if name not in self.fields:
                    problems.append(
                        _violation(
                            f"{where}.{name}",
                            f"field '{name}' is not declared, and the tenant's schema forbids undeclared fields",
                        )
                    )
        return problems

    def filter_problems(self, filter_: Mapping[str, Any], where: str = "filter") -> list[Problem]:
        """Fields a filter may not use, and values of the wrong type for their field (empty: it is fine)."""
        problems: list[Problem] = []
        self._walk(filter_, where, problems)
        return problems

    def _walk(self, filter_: Mapping[str, Any], where: str, problems: list[Problem]) -> None:
        for key, value in filter_.items():
            if key in LOGICAL:
                for i, part in enumerate(value if isinstance(value, list) else []):
                    if isinstance(part, Mapping):
                        self._walk(part, f"{where}.{key}[{i}]", problems)
                continue
            spec = self.fields.get(key)
            if spec is None or not spec.filterable:
                why = "not declared" if spec is None else "declared not filterable"
                problems.append(
                    Problem(
                        "filter_field_not_declared",
                        f"{where}.{key}",
                        f"field '{key}' is {why} in the tenant's schema; filters may use only its filterable fields",
                    )
                )
                continue
            operators = value if isinstance(value, Mapping) else {"$eq": value}
            for operator, operand in operators.items():
                if operator == "$exists":
                    continue
                values = operand if operator in ("$in", "$nin") and isinstance(operand, list) else [operand]
                for one in values:
                    if not _comparable(spec.type, one):
                        problems.append(
                            Problem(
                                "filter_type_mismatch",
                                f"{where}.{key}.{operator}",
                                f"field '{key}' is {spec.type}; {operator} compares it with {describe(one)}",
                            )
                        )
                        break


def _field(name: object, spec: object, where: str, problems: list[str]) -> FieldSpec | None:
    if not isinstance(name, str) or not name or name.startswith("$"):
        problems.append(f"{where}: a field name must be a non-empty string not starting with '$'")
        return None
    if not isinstance(spec, dict):
        problems.append(f"{where}: must be an object {{type, required, filterable}}")
        return None
    unknown = sorted(set(map(str, spec)) - FIELD_KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys {unknown} (known: {sorted(FIELD_KEYS)})")
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        problems.append(f"{where}: type must be one of {', '.join(FIELD_TYPES)}, got {kind!r}")
        return None
    required, filterable = spec.get("required", False), spec.get("filterable", True)
    if not isinstance(required, bool) or not isinstance(filterable, bool):
        problems.append(f"{where}: required and filterable must be true or false")
        return None
    return FieldSpec(kind, required, filterable)


def conforms(kind: FieldType, value: Any) -> bool:
    """Whether a metadata value is of the field's type (an integer-valued float is the same number as the int)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _comparable(kind: FieldType, value: Any) -> bool:
    """Whether a filter operand can match values of the field's type (a list field compares its elements)."""
    return conforms("string" if kind == "string_list" else kind, value)


def describe(value: Any) -> str:
    """The JSON type of a value, never the value: reasons say what was found, not what it held."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return "an object"


def _violation(location: str, message: str) -> Problem:
    return Problem("metadata_schema_violation", location, message)


def message_problems(schema: TenantSchema | None, message: WriteMessage) -> list[Problem]:
    """Why a valid write message breaks its tenant's schema: an upsert's records, a delete_by_filter's filter.

    Judged before an upsert's records are encoded for Pinecone (the ingest service encodes the valid ones).
    """
    from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, PurgeTenantMessage, UpsertMessage

    if schema is None:
        return []
    match message:
        case UpsertMessage():
            return [
                problem
                for i, record in enumerate(message.records)
                for problem in schema.record_problems(i, record.metadata)
            ]
        case DeleteByFilterMessage():
            return schema.filter_problems(message.filter)
        case DeleteMessage() | PurgeTenantMessage():
            return []  # ids and versions, or a confirmation: nothing a schema governs
        case _:
            assert_never(message)
