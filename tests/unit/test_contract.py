"""Contract v1: every valid shape parses, every way to be wrong has its own stable code and a readable reason."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vector_relay import producer
from vector_relay.contract import parsing as validation
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.contract.fields import MAX_METADATA_BYTES, IndexShape, ValidationContext
from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, PurgeTenantMessage, UpsertMessage
from vector_relay.contract.parsing import (
    ERROR_CODES,
    MAX_JSON_DEPTH,
    parse_query_message,
    parse_write_message,
    read_json,
)
from vector_relay.contract.replies import QueryReplyError, QueryReplyOk
from vector_relay.errors import PoisonMessageError

REPLY = "https://sqs.us-east-1.amazonaws.com/123456789012/replies"
CONTEXT = ValidationContext(
    tenants={"acme": "tenant-acme", "globex": "tenant-globex"},
    index=IndexShape(dimension=3, metric="cosine"),
    reply_queues={REPLY},
)
DOTPRODUCT = ValidationContext(tenants={"acme"}, index=IndexShape(dimension=3, metric="dotproduct"))
SPARSE_INDEX = ValidationContext(tenants={"acme"}, index=IndexShape(dimension=None, metric="dotproduct"))


def upsert(*records: dict[str, Any], **fields: Any) -> str:
    message = {"schema_version": 1, "op": "upsert", "tenant": "acme", "records": list(records)} | fields
    return json.dumps(message)


def rec(**fields: Any) -> dict[str, Any]:
    return {"id": "doc-1#0", "version": 1, "values": [0.1, 0.2, 0.3]} | fields


def query(**fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "query", "tenant": "acme", "reply_to": REPLY} | fields)


def poison(body: str, context: ValidationContext = CONTEXT, *, parse: Any = parse_write_message) -> PoisonMessageError:
    with pytest.raises(PoisonMessageError) as caught:
        parse(body, context)
    return caught.value


# ------------------------------------------------------------------ valid messages


def test_upsert_with_dense_values_and_metadata_parses() -> None:
    message = parse_write_message(
        upsert(rec(metadata={"doc_id": "d", "year": 2024, "ok": True, "tags": ["a"]})), CONTEXT
    )
    assert isinstance(message, UpsertMessage)
    assert message.records[0].metadata == {"doc_id": "d", "year": 2024, "ok": True, "tags": ["a"]}
    assert message.records[0].values == [0.1, 0.2, 0.3]


def test_integer_vector_values_are_read_as_floats() -> None:
    message = parse_write_message(upsert(rec(values=[1, 0, -2])), CONTEXT)
    assert isinstance(message, UpsertMessage)
    assert message.records[0].values == [1.0, 0.0, -2.0]


def test_hybrid_record_parses_on_a_dotproduct_index() -> None:
    body = upsert(rec(sparse_values={"indices": [3, 90], "values": [0.5, 0.2]}))
    message = parse_write_message(body, DOTPRODUCT)
    assert isinstance(message, UpsertMessage)
    assert message.records[0].sparse_values is not None
    assert message.records[0].sparse_values.indices == [3, 90]


def test_sparse_only_record_parses_on_a_sparse_index() -> None:
    body = upsert({"id": "s", "version": 0, "sparse_values": {"indices": [1], "values": [0.5]}})
    assert isinstance(parse_write_message(body, SPARSE_INDEX), UpsertMessage)


def test_delete_delete_by_filter_and_purge_parse() -> None:
    delete = parse_write_message(
        json.dumps({"schema_version": 1, "op": "delete", "tenant": "acme", "records": [{"id": "a", "version": 9}]}),
        CONTEXT,
    )
    by_filter = parse_write_message(
        json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": {"doc_id": "d"}}),
        CONTEXT,
    )
    purge = parse_write_message(
        json.dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": "acme"}), CONTEXT
    )
    assert isinstance(delete, DeleteMessage)
    assert delete.records[0].version == 9
    assert isinstance(by_filter, DeleteByFilterMessage)
    assert isinstance(purge, PurgeTenantMessage)


def test_query_by_vector_and_by_id_parse_with_defaults() -> None:
    by_vector = parse_query_message(query(vector=[1, 2, 3], filter={"year": {"$gte": 2023}}), CONTEXT)
    by_id = parse_query_message(query(id="doc-1#0", top_k=10_000, correlation_id="c-1"), CONTEXT)
    assert (by_vector.top_k, by_vector.include_metadata, by_vector.include_values) == (10, False, False)
    assert by_id.id == "doc-1#0"
    assert by_id.top_k == 10_000


def test_without_deployment_context_only_structure_is_checked() -> None:
    message = parse_write_message(upsert(rec(values=[1.0] * 7), tenant="anyone"), ValidationContext())
    assert isinstance(message, UpsertMessage)


# ------------------------------------------------------------------ one code per way to be wrong


@pytest.mark.parametrize(
    ("body", "code", "location"),
    [
        ("{not json", "invalid_json", ""),
        ("", "invalid_json", ""),
        ("[]", "schema_violation", ""),
        (upsert(rec(), extra=1), "schema_violation", "extra"),
        (upsert(rec(colour="red")), "schema_violation", "records[0].colour"),
        (upsert(rec(version=-1)), "schema_violation", "records[0].version"),
        (upsert(rec(version=1.5)), "schema_violation", "records[0].version"),
        (upsert(rec(values=["0.1", 0.2, 0.3])), "schema_violation", "records[0].values[0]"),
        (upsert(), "schema_violation", "records"),
        (upsert(rec(), schema_version=2), "unsupported_schema_version", "schema_version"),
        (upsert(rec(), op="merge"), "unknown_op", ""),
        (json.dumps({"schema_version": 1, "tenant": "acme"}), "unknown_op", ""),
        (upsert(rec(), tenant="initech"), "unknown_tenant", "tenant"),
        (upsert(*[rec(id=f"r{i}") for i in range(1001)]), "too_many_records", "records"),
        (upsert(rec(id="")), "id_invalid", "records[0].id"),
        (upsert(rec(id="x" * 513)), "id_invalid", "records[0].id"),
        (upsert(rec(id="caf\u00e9")), "id_invalid", "records[0].id"),
        (upsert(rec(id="a\u0000b")), "id_invalid", "records[0].id"),
        (upsert(rec(id=42)), "id_invalid", "records[0].id"),
        (upsert(rec(values=[0.1, 0.2])), "dimension_mismatch", "records[0].values"),
        (upsert(rec(values=None)), "dimension_mismatch", "records[0]"),
        (upsert(rec(values=[0.0, 0.0, 0.0])), "zero_vector", "records[0].values"),
        (upsert(rec(metadata={"nested": {"a": 1}})), "metadata_type", "records[0].metadata.nested"),
        (upsert(rec(metadata={"mixed": ["a", 1]})), "metadata_type", "records[0].metadata.mixed"),
        (upsert(rec(metadata={"missing": None})), "metadata_type", "records[0].metadata.missing"),
        (upsert(rec(metadata={"$where": "x"})), "metadata_key_invalid", "records[0].metadata.$where"),
        (upsert(rec(metadata={"_relay_version": "9"})), "metadata_key_invalid", "records[0].metadata._relay_version"),
        # 40 bytes of the 40 KB are the relay's: {"text": "..."} of 40,921 bytes would fit Pinecone alone
        (
            upsert(rec(metadata={"text": "x" * (MAX_METADATA_BYTES - 11 - 39)})),
            "metadata_too_large",
            "records[0].metadata",
        ),
        (upsert(rec(metadata={"huge": 2**64})), "metadata_type", "records[0].metadata.huge"),
        (upsert(rec(metadata={"text": "x" * MAX_METADATA_BYTES})), "metadata_too_large", "records[0].metadata"),
        (
            upsert(rec(sparse_values={"indices": [1], "values": [0.5]})),
            "sparse_not_supported",
            "records[0].sparse_values",
        ),
        (
            json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": {}}),
            "invalid_filter",
            "filter",
        ),
        (
            json.dumps({"schema_version": 1, "op": "purge_tenant", "tenant": "acme", "confirm": "globex"}),
            "purge_not_confirmed",
            "",
        ),
    ],
)
def test_poison_write_gets_its_code_and_location(body: str, code: str, location: str) -> None:
    error = poison(body)
    assert error.error_code == code
    assert error.problems[0].location == location
    assert error.problems[0].message
    assert code in ERROR_CODES


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_vector_values_are_poison(literal: str) -> None:
    body = '{"schema_version":1,"op":"upsert","tenant":"acme","records":[{"id":"a","version":1,"values":[0.1,%s,0.3]}]}'
    error = poison(body % literal)
    assert error.error_code == "non_finite_value"
    assert "position 1" in error.problems[0].message


def test_non_finite_metadata_number_is_poison() -> None:
    body = (
        '{"schema_version":1,"op":"upsert","tenant":"acme",'
        '"records":[{"id":"a","version":1,"values":[1,2,3],"metadata":{"score":NaN}}]}'
    )
    assert poison(body).error_code == "non_finite_value"


@pytest.mark.parametrize(
    ("sparse", "problem"),
    [
        ({"indices": [1, 2], "values": [0.5]}, "same length"),
        ({"indices": [1, 1], "values": [0.5, 0.5]}, "unique"),
        ({"indices": list(range(2049)), "values": [0.1] * 2049}, "at most 2048"),
    ],
)
def test_malformed_sparse_values_are_poison(sparse: dict[str, Any], problem: str) -> None:
    error = poison(upsert(rec(sparse_values=sparse)), DOTPRODUCT)
    assert error.error_code == "sparse_values_invalid"
    assert problem in error.detail


def test_sparse_index_rejects_dense_values() -> None:
    error = poison(upsert(rec(sparse_values={"indices": [1], "values": [1.0]})), SPARSE_INDEX)
    assert error.error_code == "dimension_mismatch"
    assert "sparse-only" in error.detail


def test_every_problem_of_a_message_is_reported_in_order() -> None:
    body = upsert(
        rec(id="ok-1"),
        rec(id="x" * 600, values=[0.0, 0.0, 0.0]),
        rec(id="ok-2", metadata={"$bad": 1, "deep": {"a": 1}}),
        tenant="initech",
    )
    error = poison(body)
    assert [(p.code, p.location) for p in error.problems] == [
        ("unknown_tenant", "tenant"),
        ("id_invalid", "records[1].id"),
        ("zero_vector", "records[1].values"),
        ("metadata_key_invalid", "records[2].metadata.$bad"),
        ("metadata_type", "records[2].metadata.deep"),
    ]
    assert error.error_code == "unknown_tenant"
    assert error.detail.splitlines()[0] == "[unknown_tenant] tenant: the tenant is not in the tenant registry"


def test_dimension_mismatch_names_both_dimensions() -> None:
    error = poison(upsert(rec(values=[1.0] * 5)))
    assert "vector dimension 5 does not match the dimension of the index 3" in error.detail


# ------------------------------------------------------------------ queries


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"vector": [1, 2, 3], "reply_to": "https://sqs.us-east-1.amazonaws.com/1/evil"}, "reply_to_not_allowed"),
        ({"vector": [1, 2, 3], "id": "a"}, "query_target_invalid"),
        ({}, "query_target_invalid"),
        ({"vector": [1, 2, 3], "top_k": 0}, "top_k_out_of_range"),
        ({"vector": [1, 2, 3], "top_k": 10_001}, "top_k_out_of_range"),
        ({"vector": [1, 2, 3], "filter": {"year": {"$gt": "2020"}}}, "invalid_filter"),
        ({"vector": [1, 2]}, "dimension_mismatch"),
        ({"vector": [1, 2, 3], "sparse_vector": {"indices": [1], "values": [1.0]}}, "sparse_not_supported"),
        ({"vector": [1, 2, 3], "namespace": "tenant-globex"}, "schema_violation"),
        ({"id": "a", "tenant": "initech"}, "unknown_tenant"),
    ],
)
def test_poison_query_gets_its_code(fields: dict[str, Any], code: str) -> None:
    assert poison(query(**fields), parse=parse_query_message).error_code == code


def test_a_write_op_on_the_query_queue_is_unknown_op() -> None:
    assert poison(upsert(rec()), parse=parse_query_message).error_code == "unknown_op"


def test_a_query_on_the_ingest_queue_is_unknown_op() -> None:
    error = poison(query(vector=[1, 2, 3]))
    assert error.error_code == "unknown_op"
    assert "upsert, delete, delete_by_filter, purge_tenant" in error.detail


@pytest.mark.parametrize("min_lsn", [0, 1, 1234, 2**63 - 1])
def test_a_query_may_ask_for_read_your_writes_with_min_lsn(min_lsn: int) -> None:
    assert parse_query_message(query(id="a", min_lsn=min_lsn), CONTEXT).min_lsn == min_lsn
    assert parse_query_message(query(id="a", min_lsn=None), CONTEXT).min_lsn is None
    assert parse_query_message(query(id="a"), CONTEXT).min_lsn is None


@pytest.mark.parametrize("min_lsn", [-1, 2**63, True, False, "1234", 1234.0, 1e30, [1234], {"lsn": 1}])
def test_a_min_lsn_that_is_no_lsn_is_min_lsn_invalid_without_quoting_it(min_lsn: object) -> None:
    error = poison(query(id="a", min_lsn=min_lsn), parse=parse_query_message)
    assert [(p.code, p.location) for p in error.problems] == [("min_lsn_invalid", "min_lsn")]
    assert "1234" not in error.detail
    assert "e+30" not in error.detail


def test_a_query_cannot_name_a_namespace() -> None:
    """Isolation: the namespace comes from the registry; a query that tries to choose one is refused."""
    error = poison(query(id="a", namespace="tenant-globex"), parse=parse_query_message)
    assert error.problems[0].location == "namespace"


# ------------------------------------------------------------------ replies and DLQ attributes


def test_query_reply_needs_matches_or_a_location() -> None:
    ok = QueryReplyOk(tenant="acme", matches=[], correlation_id="c")
    assert ok.model_dump(exclude_none=True) == {
        "schema_version": 1,
        "correlation_id": "c",
        "status": "ok",
        "tenant": "acme",
        "matches": [],
        "lsn": None,
    }
    with pytest.raises(ValueError, match="exactly one of matches and result_location"):
        QueryReplyOk(tenant="acme")
    error = QueryReplyError(error={"code": "invalid_filter", "message": "m"})  # type: ignore[arg-type]
    assert error.status == "error"


def test_an_ok_reply_always_carries_its_lsn_and_fresh_only_when_asked() -> None:
    unknown = QueryReplyOk(tenant="acme", matches=[])
    plain = QueryReplyOk(tenant="acme", matches=[], lsn=41)
    waited = QueryReplyOk(tenant="acme", matches=[], lsn=41, fresh=False)

    assert json.loads(unknown.model_dump_json(exclude_none=True))["lsn"] is None  # null is written, not left out
    assert {"lsn": 41}.items() <= json.loads(plain.model_dump_json(exclude_none=True)).items()
    assert "fresh" not in json.loads(plain.model_dump_json(exclude_none=True))
    assert {"lsn": 41, "fresh": False}.items() <= json.loads(waited.model_dump_json(exclude_none=True)).items()
    assert "lsn" not in unknown.model_dump(exclude_none=True, exclude={"lsn"})
    # a reply from a relay before read-your-writes (no lsn) still reads
    older = QueryReplyOk.model_validate_json('{"schema_version": 1, "status": "ok", "tenant": "acme", "matches": []}')
    assert (older.lsn, older.fresh) == (None, None)


def test_dead_letter_attributes_round_trip_through_sqs_shape() -> None:
    attributes = DeadLetterAttributes(
        error_code="zero_vector",
        error_detail="[zero_vector] records[0].values: ...",
        source_queue="arn:aws:sqs:us-east-1:123456789012:ingest",
        source_message_id="m-1",
        receive_count=2,
    )
    encoded = attributes.to_message_attributes()
    assert encoded["receive_count"] == {"DataType": "Number", "StringValue": "2"}
    assert DeadLetterAttributes.from_message_attributes(encoded) == attributes


# ------------------------------------------------------------------ property: what the contract accepts round-trips

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
metadata_values = st.one_of(
    st.text(max_size=20), finite, st.booleans(), st.integers(-(2**53), 2**53), st.lists(st.text(max_size=5), max_size=4)
)
records = st.builds(
    lambda rid, version, values, metadata: {"id": rid, "version": version, "values": values, "metadata": metadata},
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=40),
    st.integers(0, 2**63 - 1),
    st.lists(finite, min_size=3, max_size=3).filter(any),
    st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: not k.startswith("$")), metadata_values, max_size=5
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(records, min_size=1, max_size=20))
def test_any_valid_upsert_parses_and_round_trips(generated: list[dict[str, Any]]) -> None:
    message = parse_write_message(upsert(*generated), CONTEXT)
    assert isinstance(message, UpsertMessage)
    for parsed, original in zip(message.records, generated, strict=True):
        assert parsed.id == original["id"]
        assert parsed.version == original["version"]
        assert parsed.values == pytest.approx(original["values"])
        assert parsed.metadata == original["metadata"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(), min_size=3, max_size=3))
def test_any_float_vector_is_accepted_exactly_when_finite_and_not_zero(values: list[float]) -> None:
    body = json.dumps({"schema_version": 1, "op": "query", "tenant": "acme", "reply_to": REPLY, "vector": values})
    valid = all(math.isfinite(v) for v in values) and any(values)
    if valid:
        assert parse_query_message(body, CONTEXT).vector == values
    else:
        assert poison(body, parse=parse_query_message).error_code in {"non_finite_value", "zero_vector"}


def test_a_vectors_non_finite_values_are_one_problem_naming_the_first_position() -> None:
    values = "[0.1,NaN,0.3,Infinity,-Infinity]"
    body = '{"schema_version":1,"op":"upsert","tenant":"acme","records":[{"id":"a","version":1,"values":%s},'
    body += '{"id":"b","version":1,"values":[1,2,3],"sparse_values":{"indices":[1],"values":[NaN]}}]}'
    error = poison(body % values)
    assert [(p.code, p.location) for p in error.problems] == [
        ("non_finite_value", "records[0].values"),
        ("non_finite_value", "records[1].sparse_values.values"),
    ]
    assert "position 1 and 2 more" in error.problems[0].message


# ------------------------------------------------------------------ bodies nested deeply


def nested(levels: int, inner: str = "1") -> str:
    return '{"a":' * levels + inner + "}" * levels


@pytest.mark.parametrize("parse", [parse_write_message, parse_query_message])
def test_the_parser_reads_200_levels_and_a_deeper_body_is_json_too_deep(parse: Any) -> None:
    # pins pydantic-core's depth limit, which docs/contract.md states (MAX_JSON_DEPTH)
    assert poison(nested(MAX_JSON_DEPTH), parse=parse).error_code in {"schema_violation", "unknown_op"}  # read
    for levels in (MAX_JSON_DEPTH + 1, 10_000):
        refused = poison(nested(levels), parse=parse)
        assert (refused.error_code, refused.problems[0].location) == ("json_too_deep", "")
    assert poison("[" * 10_000 + "]" * 10_000, parse=parse).error_code == "json_too_deep"


@pytest.mark.parametrize("parse", [parse_write_message, parse_query_message])
def test_a_recursion_error_while_validating_is_json_too_deep_not_a_crash(
    parse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a check that recurses past Python's limit on some body (none does today: this is the guarantee)
    def recurse(*_: Any, **__: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(validation._write_adapter, "validate_json", recurse)
    monkeypatch.setattr(validation.QueryMessage, "model_validate_json", recurse)
    # THEN the body is poison with a code, on its first receive
    assert poison(query(vector=[0.1, 0.2, 0.3]), parse=parse).error_code == "json_too_deep"


def test_read_json_reads_what_the_models_read_and_refuses_the_rest_with_value_error() -> None:
    assert read_json(nested(MAX_JSON_DEPTH)) is not None
    for body in (nested(MAX_JSON_DEPTH + 1), nested(10_000), "[" * 10_000, '{"a": '):
        with pytest.raises(ValueError):  # noqa: PT011 - any ValueError: the callers treat them alike
            read_json(body)


# ------------------------------------------------------------------ deletes by filter that reach every record


def delete_by_filter(filter_: Any, **fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": filter_} | fields)


MATCH_ALL = {"$or": [{"doc_id": {"$exists": True}}, {"doc_id": {"$exists": False}}]}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (delete_by_filter({"_relay_version": {"$exists": True}}), "filter_field_reserved"),
        (delete_by_filter({"_relay_version": {"$exists": True}}, confirm="acme"), "filter_field_reserved"),
        (delete_by_filter({"$and": [{"a": 1}, {"$or": [{"_relay_version": "3"}]}]}), "filter_field_reserved"),
        (delete_by_filter(MATCH_ALL), "delete_not_confirmed"),
        (delete_by_filter(MATCH_ALL, confirm="globex"), "delete_not_confirmed"),
        (delete_by_filter({"doc_id": "doc-42"}, confirm="globex"), "delete_not_confirmed"),
        (delete_by_filter({}, confirm="acme"), "invalid_filter"),  # Pinecone refuses {}: purge_tenant is the way
    ],
)
def test_a_delete_by_filter_on_the_relay_s_field_or_of_every_record_unconfirmed_is_poison(body: str, code: str) -> None:
    assert poison(body).error_code == code


def test_a_confirmed_match_all_delete_by_filter_and_a_selective_one_parse() -> None:
    confirmed = parse_write_message(delete_by_filter(MATCH_ALL, confirm="acme"), CONTEXT)
    selective = parse_write_message(delete_by_filter({"doc_id": {"$exists": True}}), CONTEXT)
    assert isinstance(confirmed, DeleteByFilterMessage)
    assert isinstance(selective, DeleteByFilterMessage)
    assert (confirmed.confirm, selective.confirm) == ("acme", None)
    assert producer.delete_by_filter("acme", MATCH_ALL, confirm="acme") == confirmed
    with pytest.raises(ValidationError, match="matches every record"):
        producer.delete_by_filter("acme", MATCH_ALL)
