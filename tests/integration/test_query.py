"""The query function end to end: every query is answered on its reply queue, with matches or a coded error.

Which failures are which: a query with no usable ``reply_to`` is **poison** (DLQ); any other
invalid query gets an **error reply** and is acknowledged; throttling and outages are
**transient** (SQS redelivers; the last delivery answers ``retries_exhausted``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE, FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline, SqsDriver, parametrize_transports
from tests.integration.test_ingest import upsert_body, vector
from tests.unit.test_events import documented_poison
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.query import replies as reply_building


def query_body(**fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "query", "tenant": "acme", "reply_to": SAMPLE_REPLY_QUEUE} | fields)


def replies(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def loaded(pipeline: Pipeline, lambda_context: FakeLambdaContext) -> dict[str, dict[str, list[float]]]:
    """30 records for acme and 10 for globex, written through the ingest function."""
    bodies = [upsert_body("acme", [f"a{i}" for i in range(15 * n, 15 * n + 15)]) for n in range(2)]
    bodies.append(upsert_body("globex", [f"g{i}" for i in range(10)], secret="globex-only"))
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(bodies)
    driver.run_until_empty()
    data: dict[str, dict[str, list[float]]] = {"acme": {}, "globex": {}}
    for body in bodies:
        message = json.loads(body)
        data[message["tenant"]].update({r["id"]: r["values"] for r in message["records"]})
    return data


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test here runs over REST and over gRPC


def test_matches_equal_a_brute_force_reference(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]], lambda_context: FakeLambdaContext
) -> None:
    probe = vector(4242)
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([query_body(vector=probe, top_k=5, include_metadata=True, correlation_id="c-1")])

    assert driver.deliver_once() == {"batchItemFailures": []}

    [reply] = replies(pipeline)
    expected = sorted(loaded["acme"], key=lambda i: cosine(probe, loaded["acme"][i]), reverse=True)[:5]
    assert reply["status"] == "ok"
    assert reply["correlation_id"] == "c-1"
    assert [m["id"] for m in reply["matches"]] == expected
    for match in reply["matches"]:
        assert match["score"] == pytest.approx(cosine(probe, loaded["acme"][match["id"]]), abs=1e-4)
        assert match["metadata"] == {"v": 1, "_relay_version": "1"}
        assert "values" not in match
    assert reply["usage"]["read_units"] >= 1


def test_a_tenant_never_sees_another_tenants_records(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]], lambda_context: FakeLambdaContext
) -> None:
    bodies = [
        query_body(vector=vector(1), top_k=100),
        query_body(vector=vector(2), top_k=100, filter={"secret": "globex-only"}),
        query_body(id="g1", top_k=10),
    ]
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish(bodies)
    driver.run_until_empty()
    answers = replies(pipeline)
    assert len(answers) == 3
    returned = {m["id"] for answer in answers for m in answer.get("matches", [])}
    assert returned <= set(loaded["acme"])
    assert len(returned) == 30


def test_sample_query_event_runs_through_the_handler(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]], lambda_context: FakeLambdaContext
) -> None:
    event = load_event("query")
    assert query_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    by_correlation = {r["correlation_id"]: r for r in replies(pipeline)}
    assert set(by_correlation) == {"c-123", "c-124"}
    assert by_correlation["c-123"]["status"] == "ok"
    assert all(m["metadata"] for m in by_correlation["c-123"]["matches"])
    # the sample queries id "doc-42#0", which this tenant does not hold: an ok reply with no matches
    assert by_correlation["c-124"]["matches"] == []


def test_every_invalid_query_gets_its_error_reply_and_a_bad_reply_to_goes_to_the_dlq(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    elsewhere = boto3.client("sqs").create_queue(QueueName="elsewhere")["QueueUrl"]
    event = load_event("query-mixed-with-poison")
    poison = documented_poison()["query-mixed-with-poison"]

    assert query_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    answers = replies(pipeline)
    assert sorted(a["error"]["code"] for a in answers if a["status"] == "error") == sorted(
        code for code in poison.values() if code != "reply_to_not_allowed"
    )
    assert [a["status"] for a in answers].count("ok") == 1
    [dead] = pipeline.drain()
    assert DeadLetterAttributes.from_message_attributes(dead["MessageAttributes"]).error_code == "reply_to_not_allowed"
    assert pipeline.drain(elsewhere) == []  # nothing was sent to the queue off the allow-list


def test_a_reply_too_large_for_sqs_is_stored_in_s3(pipeline: Pipeline, lambda_context: FakeLambdaContext) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", [f"big{n}-{i}" for i in range(100)]) for n in range(4)])
    driver.run_until_empty()
    queries = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    queries.publish([query_body(vector=vector(7), top_k=400, include_values=True, correlation_id="big")])

    assert queries.deliver_once() == {"batchItemFailures": []}

    [reply] = replies(pipeline)
    assert reply["status"] == "ok"
    assert "matches" not in reply
    location = reply["result_location"]
    stored = boto3.client("s3").get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
    assert len(stored) > 1_048_576
    full = json.loads(stored)
    assert full["correlation_id"] == "big"
    assert len(full["matches"]) == 400
    assert len(full["matches"][0]["values"]) == SAMPLE_DIMENSION


def results_stored() -> list[str]:
    s3 = boto3.client("s3")
    return [o["Key"] for o in s3.list_objects_v2(Bucket="vector-relay-query-results").get("Contents", [])]


def test_a_query_over_pinecone_s_4_mb_result_limit_gets_an_error_reply_not_a_retry(pipeline: Pipeline) -> None:
    # GIVEN 120 records of ~33 KB of metadata each: with values and metadata, all of them are ~4.4 MB of result
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    padding = "x" * 33_000
    driver.publish([upsert_body("acme", [f"wide{n}-{i}" for i in range(20)], pad=padding) for n in range(6)])
    driver.run_until_empty()
    queries = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    everything = {"vector": vector(1), "top_k": 10_000, "include_values": True, "include_metadata": True}
    queries.publish(
        [
            query_body(**everything, correlation_id="everything"),
            query_body(**everything | {"include_metadata": False}, correlation_id="no-metadata"),
        ]
    )

    # WHEN the queries are delivered
    response = queries.deliver_once()

    # THEN the one over the limit is answered with an error at once (Pinecone refuses it the same way every
    # time: no retry, nothing stored), and the other is answered in full
    assert response == {"batchItemFailures": []}
    answers = {reply["correlation_id"]: reply for reply in replies(pipeline)}
    assert answers["everything"]["status"] == "error"
    assert answers["everything"]["error"]["code"] == "pinecone_rejected"
    assert "exceeds the limit of 4194304 bytes" in answers["everything"]["error"]["message"]
    assert len(answers["no-metadata"]["matches"]) == 120
    assert results_stored() == []
    assert pipeline.drain() == []


def test_a_reply_over_the_relay_s_bound_is_answered_result_too_large(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the relay's bound on one reply lowered from 4 MiB to 100,000 bytes (30 matches with values are
    # ~110 KB), far below what Pinecone refuses: the relay's bound holds whatever Pinecone returns
    monkeypatch.setattr(reply_building, "MAX_REPLY_BYTES", 100_000)
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish(
        [
            query_body(vector=vector(1), top_k=30, include_values=True, correlation_id="large"),
            query_body(vector=vector(1), top_k=3, include_values=True, correlation_id="small"),
        ]
    )

    # WHEN delivered THEN the large one gets an error reply with its code, once, and the small one its matches
    assert driver.deliver_once() == {"batchItemFailures": []}
    answers = {reply["correlation_id"]: reply for reply in replies(pipeline)}
    assert answers["large"]["error"]["code"] == "result_too_large"
    assert "at most 100000 bytes" in answers["large"]["error"]["message"]
    assert len(answers["small"]["matches"]) == 3
    assert results_stored() == []
    assert pipeline.drain() == []


def test_throttling_ends_in_results_after_redelivery(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]]
) -> None:
    pipeline.emulator.control.script("query", *([{"status": 429, "retry_after": "0"}] * 8))
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([query_body(vector=vector(i), top_k=3, correlation_id=f"q{i}") for i in range(4)])

    driver.run_until_empty(max_invocations=20)

    answers = replies(pipeline)
    assert sorted(a["correlation_id"] for a in answers) == ["q0", "q1", "q2", "q3"]
    assert all(a["status"] == "ok" for a in answers)
    assert pipeline.emulator.control.count("query", status=429) == 8
    assert pipeline.drain() == []


def test_a_query_that_keeps_failing_is_answered_on_its_last_delivery(pipeline: Pipeline) -> None:
    pipeline.emulator.control.add_fault("query", status=503, retry_after="0")
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([query_body(vector=vector(1), correlation_id="doomed")])

    driver.run_until_empty(max_invocations=10)

    assert driver.invocations == 5  # maxReceiveCount
    [answer] = replies(pipeline)
    assert answer["status"] == "error"
    assert answer["error"]["code"] == "retries_exhausted"
    assert answer["correlation_id"] == "doomed"
    [dead] = pipeline.drain()
    assert DeadLetterAttributes.from_message_attributes(dead["MessageAttributes"]).error_code == "retries_exhausted"


def test_a_reply_queue_that_refuses_the_send_keeps_the_query(
    pipeline: Pipeline, loaded: dict[str, dict[str, list[float]]], lambda_context: FakeLambdaContext
) -> None:
    boto3.client("sqs").delete_queue(QueueUrl=pipeline.reply_queue_url)
    event = load_event("query")
    with pytest.raises(BatchProcessingError, match="All records failed"):
        query_app.lambda_handler(event, lambda_context)
    assert pipeline.drain() == []
