"""Hostile bodies up to SQS's 1 MiB through both workers' real queues: each is applied, answered or
dead-lettered with a code on its first receive, and its batch-mates are carried out.

Where tests/integration/test_fuzz_handlers.py varies the shape of small bodies, this varies their
size and depth: strings, vectors and numbers of hundreds of thousands of characters, thousands of
records or metadata keys, filters with tens of thousands of parts or ``$in`` items, whitespace
padding, and nesting from just past the parser's limit to 100,000 levels, as plain objects and
arrays and as ``$and`` / ``$or`` filters. The oracle is the contract's own parser, as there.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from pinecone_emulator.pytest_plugin import pinecone_emulator, pinecone_emulator_server
from tests.conftest import SAMPLE_REPLY_QUEUE
from tests.integration.conftest import Pipeline, SqsDriver, pipeline, transport
from tests.integration.test_fuzz_handlers import _loads, first_code, ingest_skeletons, query_skeleton
from tests.integration.test_ingest import upsert_body
from vector_relay.contract.parsing import ERROR_CODES, MAX_JSON_DEPTH, parse_query_message, parse_write_message
from vector_relay.errors import MAX_DETAIL_CHARS

__all__ = ["pinecone_emulator", "pinecone_emulator_server", "pipeline", "transport"]

MAX_BODY = 1_000_000  # below SQS's 1 MiB with room for the batch around it
HOSTILE = settings(
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEPTHS = st.sampled_from([MAX_JSON_DEPTH + 1, 1_000, 5_000, 20_000, 100_000])


def nest(levels: int, inner: str, opening: str, closing: str) -> str:
    return opening * levels + inner + closing * levels


@st.composite
def large(draw: st.DrawFn, skeletons: list[dict[str, Any]]) -> str:
    """One valid message made large or deep in one place, at most MAX_BODY bytes."""
    body = draw(_large(skeletons))
    assume(len(body) <= MAX_BODY)
    return body


@st.composite
def _large(draw: st.DrawFn, skeletons: list[dict[str, Any]]) -> str:
    message = draw(st.sampled_from(skeletons))
    text = json.dumps(message)
    size = draw(st.integers(50_000, MAX_BODY - len(text) - 200))
    kind = draw(
        st.sampled_from(
            ["string", "numbers", "digits", "records", "keys", "wide_or", "wide_in", "padding", "deep", "deep_filter"]
        )
    )
    key = draw(st.sampled_from(sorted(message)))
    if kind == "string":  # one field's value a long string
        return json.dumps(message | {key: "x" * size})
    if kind == "numbers":  # one field's value a long list of numbers
        return json.dumps(message | {key: [0.25] * (size // 6)})
    if kind == "digits":  # one field's value a number of that many digits
        return text[:-1] + f', "{key}": ' + "7" * size + "}"
    if kind == "records":  # as many records as fit, each with a long metadata value
        record = {"id": "r", "version": 1, "values": [0.5] * 8, "metadata": {"text": "y" * 800}}
        return json.dumps(message | {"records": [record | {"id": f"r{i}"} for i in range(min(size // 1100, 1000))]})
    if kind == "keys":  # metadata with thousands of keys
        record = {"id": "r", "version": 1, "values": [0.5] * 8, "metadata": {f"k{i}": i for i in range(size // 20)}}
        return json.dumps(message | {"records": [record]})
    if kind == "wide_or":
        return json.dumps(message | {"filter": {"$or": [{"genre": f"g{i}"} for i in range(size // 24)]}})
    if kind == "wide_in":
        return json.dumps(message | {"filter": {"genre": {"$in": [f"g{i}" for i in range(size // 12)]}}})
    if kind == "padding":  # valid JSON, most of it whitespace
        return " " * size + text + "\n" * 10
    levels = min(draw(DEPTHS), (size - 20) // 12)
    if kind == "deep":
        inner = nest(levels, "1", *draw(st.sampled_from([('{"a":', "}"), ("[", "]")])))
        return text[:-1] + f', "{key}": {inner}' + "}"
    operator = draw(st.sampled_from(["$and", "$or"]))
    inner = nest(levels, '{"genre": "x"}', '{"' + operator + '": [', "]}")
    return text[:-1] + ', "filter": ' + inner + "}" if "filter" not in message else text[:-1] + f', "x": {inner}' + "}"


def mates(count: int, make: Any) -> list[str]:
    return [make(i) for i in range(count)]


def assert_dead_letters_fit(letters: list[dict[str, Any]]) -> None:
    for letter in letters:
        attributes = letter["MessageAttributes"]
        assert attributes["error_code"]["StringValue"] in ERROR_CODES
        assert 0 < len(attributes["error_detail"]["StringValue"]) <= MAX_DETAIL_CHARS
        assert attributes["receive_count"]["StringValue"] == "1"


@HOSTILE
@given(hostile=st.lists(large(ingest_skeletons()), min_size=1, max_size=1))
def test_large_and_deep_ingest_bodies_are_applied_or_dead_lettered_on_first_receive(
    pipeline: Pipeline, hostile: list[str]
) -> None:
    ids = [f"mate-{abs(hash(hostile[0])) % 10**9}-{i}" for i in range(3)]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([*hostile, *(upsert_body("globex", [i]) for i in ids)])

    response = driver.deliver_once()

    assert response == {"batchItemFailures": []}
    letters = pipeline.drain()
    codes = Counter(m["MessageAttributes"]["error_code"]["StringValue"] for m in letters)
    assert codes == Counter(c for c in (first_code(parse_write_message, b) for b in hostile) if c is not None)
    assert_dead_letters_fit(letters)
    assert set(pipeline.fetch("globex", ids)) == set(ids)


@HOSTILE
@given(hostile=st.lists(large([query_skeleton()]), min_size=1, max_size=1))
def test_large_and_deep_queries_are_answered_or_dead_lettered_on_first_receive(
    pipeline: Pipeline, hostile: list[str]
) -> None:
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    good = [json.dumps({**query_skeleton(), "tenant": "globex", "correlation_id": f"mate-{i}"}) for i in range(3)]
    driver.publish([*hostile, *good])

    response = driver.deliver_once()

    assert response == {"batchItemFailures": []}
    replies = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    letters = pipeline.drain()
    expected_letters: Counter[str] = Counter()
    expected_replies: Counter[str] = Counter()
    for body in hostile:
        code = first_code(parse_query_message, body)
        if code is not None:
            usable = isinstance(raw := _loads(body), dict) and raw.get("reply_to") == SAMPLE_REPLY_QUEUE
            (expected_replies if usable else expected_letters)[code] += 1
    assert Counter(m["MessageAttributes"]["error_code"]["StringValue"] for m in letters) == expected_letters
    error_replies = Counter(r["error"]["code"] for r in replies if r["status"] == "error")
    assert error_replies - Counter({"pinecone_rejected": error_replies["pinecone_rejected"]}) == expected_replies
    assert_dead_letters_fit(letters)
    assert {f"mate-{i}" for i in range(3)} <= {r.get("correlation_id") for r in replies if r["status"] == "ok"}
