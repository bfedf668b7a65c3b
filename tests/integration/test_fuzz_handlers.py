"""Arbitrary bodies through both handlers: each message is applied, answered or dead-lettered with a code, on
its first receive, and never disturbs its batch-mates (moto's server and the emulator, over HTTP).

Each example is one batch of up to 10 messages: valid batch-mates (tenant globex) mixed with fuzzed
bodies (raw text, arbitrary JSON, a valid acme message with one field replaced, dropped or added,
one with a value nested up to twice as deep as the parser reads, or one with a generated filter of
nested ``$and`` / ``$or``, some of which reach every record or name ``_relay_version``).
The oracle is the contract's own parser with the deployment's facts: a body it refuses must be in
the DLQ with the parser's first error code (or, for a query with a usable reply_to, answered with
it); a body it accepts must not be dead-lettered. Bodies nested far deeper than that (the 10,000
levels of the attack in issue #29) have tests of their own below; tests/reliability/ sends bodies
near SQS's 1 MiB.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE, SAMPLE_TENANTS
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.contract.parsing import (
    ERROR_CODES,
    MAX_JSON_DEPTH,
    parse_query_message,
    parse_write_message,
    read_json,
)
from vector_relay.errors import PoisonMessageError
from vector_relay.ingest import service as ingest
from vector_relay.query import service as querying

CONTEXT = ValidationContext(
    tenants=SAMPLE_TENANTS,
    index=IndexShape(dimension=SAMPLE_DIMENSION, metric="cosine"),
    reply_queues=frozenset({SAMPLE_REPLY_QUEUE}),
)
FUZZ = settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
_ids = itertools.count()

# SQS takes #x9 #xA #xD and #x20 upwards (no surrogates) in a body; json.dumps escapes the rest.
SQS_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r"), min_size=1
)
LEAF = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def ingest_skeletons() -> list[dict[str, Any]]:
    record = {"id": "fz", "version": 1, "values": vector(7), "metadata": {"genre": "x"}}
    return [
        {"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [record]},
        {"schema_version": 1, "op": "delete", "tenant": "acme", "records": [{"id": "fz", "version": 2}]},
        {"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": {"genre": {"$eq": "gone"}}},
    ]


def query_skeleton() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "op": "query",
        "tenant": "acme",
        "reply_to": SAMPLE_REPLY_QUEUE,
        "correlation_id": "fz",
        "vector": vector(8),
        "top_k": 3,
    }


@st.composite
def mutated(draw: st.DrawFn, skeletons: list[dict[str, Any]]) -> str:
    """A valid message with one field (top level, or of its first record) replaced, dropped, or added."""
    message = copy.deepcopy(draw(st.sampled_from(skeletons)))
    target = message
    if "records" in message and draw(st.booleans()):
        target = message["records"][0]
    key = draw(st.sampled_from([*target, "unexpected"]))
    action = draw(st.sampled_from(["replace", "drop"]))
    if action == "drop":
        target.pop(key, None)
    else:
        target[key] = draw(JSON)
    return json.dumps(message)


@st.composite
def deepened(draw: st.DrawFn, skeletons: list[dict[str, Any]]) -> str:
    """A valid message with one field's value nested in arrays and objects, around the parser's depth limit."""
    message = copy.deepcopy(draw(st.sampled_from(skeletons)))
    key = draw(st.sampled_from(sorted(message)))
    value: Any = message[key]
    levels = draw(st.integers(1, 40) | st.integers(MAX_JSON_DEPTH - 10, 2 * MAX_JSON_DEPTH))
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(levels):
        value = [value] if rng.random() < 0.5 else {rng.choice(["$and", "$or", "a", key]): value}
    message[key] = value
    return json.dumps(message)


FIELD = st.sampled_from(["genre", "year", "doc_id", "_relay_version"])
CONDITION = st.one_of(
    st.fixed_dictionaries({"$exists": st.booleans()}),
    st.fixed_dictionaries({"$eq": st.sampled_from(["x", 1, True])}),
    st.fixed_dictionaries({"$in": st.lists(st.sampled_from(["x", "y", 2]), min_size=1, max_size=3)}),
    st.fixed_dictionaries({"$gt": st.sampled_from([1, "1"])}),
)
FILTER = st.recursive(
    st.dictionaries(FIELD, CONDITION, min_size=1, max_size=2),
    lambda inner: st.builds(
        lambda operator, parts: {operator: parts},
        st.sampled_from(["$and", "$or"]),
        st.lists(inner, min_size=1, max_size=3),
    ),
    max_leaves=40,
)


@st.composite
def filtered(draw: st.DrawFn, skeletons: list[dict[str, Any]]) -> str:
    """A message whose filter is generated: nested $and / $or, sometimes past 16 levels, sometimes matching every
    record or naming _relay_version, sometimes with a confirm."""
    message = copy.deepcopy(draw(st.sampled_from([s for s in skeletons if "filter" in s or s["op"] == "query"])))
    filter_ = draw(FILTER)
    for _ in range(draw(st.integers(0, 20))):
        filter_ = {draw(st.sampled_from(["$and", "$or"])): [filter_]}
    message["filter"] = filter_
    if message["op"] == "delete_by_filter" and draw(st.booleans()):
        message["confirm"] = draw(st.sampled_from(["acme", "globex"]))
    return json.dumps(message)


def bodies(skeletons: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    return SQS_TEXT | JSON.map(json.dumps) | mutated(skeletons) | deepened(skeletons) | filtered(skeletons)


def first_code(parse: Any, body: str) -> str | None:
    """The error code the contract gives ``body``, or None when it is valid."""
    try:
        parse(body, CONTEXT)
    except PoisonMessageError as poison:
        return poison.error_code
    return None


def dead_letters(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.drain(pipeline.dlq_url)


@FUZZ
@given(fuzzed=st.lists(bodies(ingest_skeletons()), min_size=1, max_size=8), seed=st.randoms())
def test_every_ingest_message_is_applied_or_dead_lettered_and_batch_mates_land(
    pipeline: Pipeline, fuzzed: list[str], seed: Any
) -> None:
    good_ids = [f"good-{next(_ids)}" for _ in range(10 - len(fuzzed))]
    good = [upsert_body("globex", [i]) for i in good_ids]
    batch = fuzzed + good
    seed.shuffle(batch)
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(batch)

    response = driver.deliver_once()

    # nothing is left for SQS to retry: every message was applied or dead-lettered on its first receive
    assert response == {"batchItemFailures": []}
    letters = dead_letters(pipeline)
    codes = Counter(m["MessageAttributes"]["error_code"]["StringValue"] for m in letters)
    expected = Counter(code for code in (first_code(parse_write_message, b) for b in fuzzed) if code is not None)
    assert codes == expected
    assert all(code in ERROR_CODES for code in codes)
    assert all(m["MessageAttributes"]["error_detail"]["StringValue"].strip() for m in letters)
    assert set(pipeline.fetch("globex", good_ids)) == set(good_ids)  # batch-mates unaffected


@FUZZ
@given(fuzzed=st.lists(bodies([query_skeleton()]), min_size=1, max_size=8), seed=st.randoms())
def test_every_query_is_answered_or_dead_lettered_and_batch_mates_are_answered(
    pipeline: Pipeline, fuzzed: list[str], seed: Any
) -> None:
    good_ids = [f"good-{next(_ids)}" for _ in range(10 - len(fuzzed))]
    good = [
        json.dumps({**query_skeleton(), "tenant": "globex", "correlation_id": correlation_id})
        for correlation_id in good_ids
    ]
    batch = fuzzed + good
    seed.shuffle(batch)
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish(batch)

    response = driver.deliver_once()

    assert response == {"batchItemFailures": []}
    replies = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    letters = dead_letters(pipeline)
    expected_letters: Counter[str] = Counter()
    expected_error_replies: Counter[str] = Counter()
    for body in fuzzed:
        code = first_code(parse_query_message, body)
        if code is None:
            continue
        usable_reply_to = isinstance(raw := _loads(body), dict) and raw.get("reply_to") == SAMPLE_REPLY_QUEUE
        (expected_error_replies if usable_reply_to else expected_letters)[code] += 1
    assert Counter(m["MessageAttributes"]["error_code"]["StringValue"] for m in letters) == expected_letters
    error_replies = Counter(r["error"]["code"] for r in replies if "error" in r)
    assert error_replies - Counter({"pinecone_rejected": error_replies["pinecone_rejected"]}) == expected_error_replies
    assert len(replies) + len(letters) == len(batch)  # one answer or one dead letter each
    answered = {r.get("correlation_id") for r in replies if "error" not in r}
    assert set(good_ids) <= answered  # batch-mates unaffected


def _loads(body: str) -> Any:
    """The body as the relay reads it for a reply_to: nothing when its parser cannot read the body."""
    try:
        return read_json(body)
    except ValueError:
        return None


ATTACK_LEVELS = 10_000  # issue #29: ~60 KB, never answered, retried 5 times over 16 minutes, no error_code


def nest(levels: int, inner: str, opening: str = '{"a":', closing: str = "}") -> str:
    """JSON text ``levels`` deep around ``inner``, built as text: json.dumps itself cannot write it."""
    return opening * levels + inner + closing * levels


def attack_bodies(handler: str) -> dict[str, str]:
    """Bodies 10,000 levels deep: whole, in a filter, in a vector or metadata; the messages around them are valid."""
    if handler == "query":
        skeleton = json.dumps(query_skeleton())[:-1]  # the valid query's fields, reply_to among them, then one more
        return {
            "objects": nest(ATTACK_LEVELS, "1"),
            "arrays": nest(ATTACK_LEVELS, "", "[", "]"),
            "filter": skeleton + ', "filter": ' + nest(ATTACK_LEVELS, '{"genre": "x"}', '{"$and": [', "]}") + "}",
            "sparse_vector": skeleton + ', "sparse_vector": ' + nest(ATTACK_LEVELS, "", "[", "]") + "}",
        }
    upsert, _, by_filter = (json.dumps(m) for m in ingest_skeletons())
    return {
        "objects": nest(ATTACK_LEVELS, "1"),
        "arrays": nest(ATTACK_LEVELS, "", "[", "]"),
        "filter": by_filter[:-1] + ', "confirm": ' + nest(ATTACK_LEVELS, '"acme"', '{"$or": [', "]}") + "}",
        "metadata": upsert.replace('"genre": "x"', '"genre": ' + nest(ATTACK_LEVELS, '"x"', '{"$in": [', "]}")),
    }


@pytest.mark.parametrize(
    ("handler", "where"),
    [(handler, where) for handler in ("ingest", "query") for where in attack_bodies(handler)],
)
def test_a_body_nested_far_deeper_than_the_parser_reads_is_dead_lettered_on_first_receive(
    pipeline: Pipeline, handler: str, where: str
) -> None:
    deep = attack_bodies(handler)[where]
    if handler == "ingest":
        driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
        mate = upsert_body("globex", ["mate"])
    else:
        driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
        mate = json.dumps({**query_skeleton(), "tenant": "globex", "correlation_id": "mate"})
    driver.publish([deep, mate])

    # WHEN the batch is delivered once
    response = driver.deliver_once()

    # THEN nothing is left for SQS to retry: the deep body is in the DLQ with its code, unchanged, and unanswered
    assert response == {"batchItemFailures": []}
    [letter] = dead_letters(pipeline)
    assert letter["Body"] == deep
    assert letter["MessageAttributes"]["error_code"]["StringValue"] == "json_too_deep"
    assert letter["MessageAttributes"]["receive_count"]["StringValue"] == "1"
    # AND the batch-mate was carried out
    if handler == "ingest":
        assert set(pipeline.fetch("globex", ["mate"])) == {"mate"}
    else:
        assert [
            r["correlation_id"] for r in (json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url))
        ] == ["mate"]


@pytest.mark.parametrize("reply_to", [[], {}, 5, None, [SAMPLE_REPLY_QUEUE]])
def test_a_reply_to_of_the_wrong_type_is_dead_lettered_alone(pipeline: Pipeline, reply_to: Any) -> None:
    # the body that took down whole batches: reply_to an unhashable list, with a valid batch-mate
    bad = json.dumps({**query_skeleton(), "reply_to": reply_to})
    good = json.dumps({**query_skeleton(), "correlation_id": "mate"})
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([bad, good])

    assert driver.deliver_once() == {"batchItemFailures": []}

    [letter] = dead_letters(pipeline)
    assert letter["Body"] == bad
    assert [r["correlation_id"] for r in (json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url))] == [
        "mate"
    ]


@pytest.mark.parametrize("handler", ["ingest", "query"])
def test_a_defect_while_validating_one_message_retries_that_message_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, handler: str
) -> None:
    # GIVEN a parser with a defect that raises (not PoisonMessageError) for one body
    module, parse_name = (ingest, "parse_write_message") if handler == "ingest" else (querying, "parse_query_message")
    real = getattr(module, parse_name)

    def defective(body: str, context: ValidationContext) -> Any:
        if "defect" in body:
            raise TypeError("a defect in the validation code")
        return real(body, context)

    monkeypatch.setattr(module, parse_name, defective)
    if handler == "ingest":
        driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
        driver.publish([upsert_body("acme", ["defect"]), upsert_body("acme", ["mate"])])
    else:
        driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
        driver.publish([json.dumps({**query_skeleton(), "correlation_id": c}) for c in ("defect", "mate")])

    # WHEN the batch is delivered
    response = driver.deliver_once()

    # THEN only that message is returned to the queue (transient: SQS retries it, then its DLQ), the other is done
    assert response is not None
    assert len(response["batchItemFailures"]) == 1
    if handler == "ingest":
        assert set(pipeline.fetch("acme", ["defect", "mate"])) == {"mate"}
    else:
        replies = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
        assert [r["correlation_id"] for r in replies] == ["mate"]
    assert dead_letters(pipeline) == []
