"""Tenant metadata schemas: each violation has its code and a detail that names record (by position), field,
expected type and found type, never a value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vector_relay.contract.tenant_schemas import FIELD_TYPES, FieldSpec, TenantSchema, conforms
from vector_relay.errors import ConfigurationError
from vector_relay.tenancy import TenantRegistry

SCHEMA = TenantSchema(
    {
        "year": FieldSpec("number", required=True),
        "genre": FieldSpec("string"),
        "tags": FieldSpec("string_list", filterable=False),
        "public": FieldSpec("boolean"),
    },
    extra="forbid",
)


def messages(problems: list[Any]) -> list[tuple[str, str, str]]:
    return [(p.code, p.location, p.message) for p in problems]


def test_a_conforming_record_passes_and_an_int_valued_float_is_the_same_number() -> None:
    assert SCHEMA.record_problems(0, {"year": 2021, "genre": "drama", "tags": ["x"], "public": True}) == []
    assert SCHEMA.record_problems(0, {"year": 2021.0}) == []


def test_each_violation_names_the_record_the_field_the_type_expected_and_the_type_found() -> None:
    problems = SCHEMA.record_problems(3, {"genre": 5, "public": 1, "tags": "x", "colour": "red"})
    assert messages(problems) == [
        (
            "metadata_schema_violation",
            "records[3].metadata.year",
            "required field 'year' (number) is missing",
        ),
        (
            "metadata_schema_violation",
            "records[3].metadata.genre",
            "field 'genre' must be string, found a number",
        ),
        (
            "metadata_schema_violation",
            "records[3].metadata.tags",
            "field 'tags' must be string_list, found a string",
        ),
        (
            "metadata_schema_violation",
            "records[3].metadata.public",
            "field 'public' must be boolean, found a number",
        ),
        (
            "metadata_schema_violation",
            "records[3].metadata.colour",
            "field 'colour' is not declared, and the tenant's schema forbids undeclared fields",
        ),
    ]


def test_a_boolean_is_not_a_number_and_extra_allow_keeps_undeclared_fields() -> None:
    lenient = TenantSchema({"year": FieldSpec("number")})
    assert [p.message for p in lenient.record_problems(0, {"year": True, "colour": "red"})] == [
        "field 'year' must be number, found a boolean"
    ]


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"year": {"$gte": 2020}, "genre": "drama"}, []),
        ({"$or": [{"year": {"$in": [2020, 2021.0]}}, {"public": True}]}, []),
        ({"colour": "red"}, [("filter_field_not_declared", "filter.colour")]),
        ({"tags": {"$in": ["a"]}}, [("filter_field_not_declared", "filter.tags")]),  # declared, not filterable
        ({"year": {"$gte": "2022"}}, [("filter_type_mismatch", "filter.year.$gte")]),
        ({"$and": [{"genre": {"$in": ["a", 3]}}]}, [("filter_type_mismatch", "filter.$and[0].genre.$in")]),
        ({"public": {"$eq": "yes"}, "year": {"$exists": True}}, [("filter_type_mismatch", "filter.public.$eq")]),
    ],
)
def test_filters_may_use_only_declared_filterable_fields_with_values_of_their_type(
    filter_: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert [(p.code, p.location) for p in SCHEMA.filter_problems(filter_)] == expected


def test_a_filter_problem_says_which_field_and_why() -> None:
    [mismatch] = SCHEMA.filter_problems({"year": {"$gte": "2022"}})
    assert mismatch.message == "field 'year' is number; $gte compares it with a string"
    [undeclared] = SCHEMA.filter_problems({"colour": "red"})
    assert undeclared.message == (
        "field 'colour' is not declared in the tenant's schema; filters may use only its filterable fields"
    )


def test_the_registry_reads_schemas_and_the_old_form_has_none() -> None:
    registry = TenantRegistry.from_json(
        json.dumps(
            {
                "acme": {"namespace": "a", "schema": {"fields": {"year": {"type": "number", "required": True}}}},
                "globex": "g",
            }
        ),
        source="test",
    )
    schema = registry.schema_for("acme")
    assert schema is not None
    assert schema.fields == {"year": FieldSpec("number", required=True, filterable=True)}
    assert registry.schema_for("globex") is None


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ([], "schema must be an object"),
        ({"fields": {"year": {"type": "integer"}}}, "type must be one of string, number, boolean, string_list"),
        ({"fields": {"year": {"type": "number", "required": "yes"}}}, "required and filterable must be true or false"),
        ({"fields": {"year": {"type": "number", "index": True}}}, "unknown keys"),
        ({"fields": {"$year": {"type": "number"}}}, "must be a non-empty string not starting with '$'"),
        ({"fields": {}, "extra": "ignore"}, "extra must be 'allow' or 'forbid'"),
        ({"field": {}}, "unknown schema keys"),
    ],
)
def test_a_malformed_schema_is_a_configuration_error_that_says_what(schema: Any, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        TenantRegistry.from_mapping({"acme": {"namespace": "a", "schema": schema}}, source="test")
    assert fragment in str(refused.value)
    assert "tenant 'acme'" in str(refused.value)


VALUES = {
    "string": st.text(max_size=8),
    "number": st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False, width=32),
    "boolean": st.booleans(),
    "string_list": st.lists(st.text(max_size=4), max_size=3),
}


@st.composite
def schema_and_record(draw: st.DrawFn) -> tuple[TenantSchema, dict[str, Any]]:
    names = draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=6, unique=True))
    fields = {n: FieldSpec(draw(st.sampled_from(FIELD_TYPES)), required=draw(st.booleans())) for n in names}
    record = {n: draw(VALUES[f.type]) for n, f in fields.items() if f.required or draw(st.booleans())}
    return TenantSchema(fields, extra=draw(st.sampled_from(["allow", "forbid"]))), record


@given(case=schema_and_record(), data=st.data())
def test_exactly_the_conforming_records_are_accepted(case: tuple[TenantSchema, dict[str, Any]], data: Any) -> None:
    schema, record = case
    assert schema.record_problems(0, record) == []  # built to conform

    # one field's value replaced by a value of another type: exactly that field is refused
    name = data.draw(st.sampled_from(sorted(schema.fields)))
    kind = schema.fields[name].type
    others = [t for t in FIELD_TYPES if t != kind]
    other = data.draw(st.sampled_from(others))
    value = data.draw(VALUES[other].filter(lambda v: not _same_type(kind, v)))
    broken = {**record, name: value}
    assert [p.location for p in schema.record_problems(0, broken)] == [f"records[0].metadata.{name}"]


def _same_type(kind: Any, value: Any) -> bool:
    return conforms(kind, value)  # e.g. an empty list is a string_list too
