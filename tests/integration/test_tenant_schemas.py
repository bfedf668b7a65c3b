"""Tenant metadata schemas through the handlers (moto's server and the emulator over HTTP): a record that breaks
acme's schema is dead-lettered while its batch-mates land; a query with a filter the schema refuses is answered
with the reason and Pinecone is never asked; a valid filter returns exactly the brute-force matches.

(A string compared with $gte is Pinecone's own 400, so the contract calls it invalid_filter first; the schema
catches what Pinecone accepts and answers wrongly: {"year": {"$in": ["2021"]}} on numbers matches nothing.)"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_REPLY_QUEUE
from tests.integration.conftest import Pipeline, SqsDriver, parametrize_transports
from tests.integration.test_ingest import vector
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings

REGISTRY = {
    "acme": {
        "namespace": "tenant-acme",
        "schema": {
            "fields": {
                "year": {"type": "number", "required": True},
                "genre": {"type": "string"},
                "tags": {"type": "string_list", "filterable": False},
            },
            "extra": "forbid",
        },
    },
    "globex": "tenant-globex",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test on the pipeline runs over REST and over gRPC


@pytest.fixture(autouse=True)
def schemas(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(REGISTRY))
    get_settings.cache_clear()
    reset_worker_dependencies()


def upsert(tenant: str, records: list[dict[str, Any]]) -> str:
    full = [{"version": 1, "values": vector(hash(r["id"]) % 1000), **r} for r in records]
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": full})


def test_records_breaking_the_schema_are_dead_lettered_with_what_is_wrong_and_batch_mates_land(
    pipeline: Pipeline,
) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(
        [
            upsert("acme", [{"id": "ok", "metadata": {"year": 2021.0, "genre": "drama"}}]),
            upsert("acme", [{"id": "no-year", "metadata": {"genre": "drama"}}]),
            upsert("acme", [{"id": "str-year", "metadata": {"year": "2021"}}]),
            upsert("acme", [{"id": "extra", "metadata": {"year": 2020, "colour": "red"}}]),
            upsert("globex", [{"id": "free", "metadata": {"anything": "goes"}}]),  # no schema
            json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": {"tags": "x"}}),
        ]
    )

    assert driver.deliver_once() == {"batchItemFailures": []}

    assert set(pipeline.fetch("acme", ["ok", "no-year", "str-year", "extra"])) == {"ok"}
    assert set(pipeline.fetch("globex", ["free"])) == {"free"}
    letters = {
        json.loads(m["Body"]).get("records", [{"id": "by-filter"}])[0]["id"]: (
            m["MessageAttributes"]["error_code"]["StringValue"],
            m["MessageAttributes"]["error_detail"]["StringValue"],
        )
        for m in pipeline.drain(pipeline.dlq_url)
    }
    assert letters == {
        "no-year": (
            "metadata_schema_violation",
            "[metadata_schema_violation] records[0].metadata.year: required field 'year' (number) is missing",
        ),
        "str-year": (
            "metadata_schema_violation",
            "[metadata_schema_violation] records[0].metadata.year: field 'year' must be number, found a string",
        ),
        "extra": (
            "metadata_schema_violation",
            "[metadata_schema_violation] records[0].metadata.colour: field 'colour' is not declared,"
            " and the tenant's schema forbids undeclared fields",
        ),
        "by-filter": (
            "filter_field_not_declared",
            "[filter_field_not_declared] filter.tags: field 'tags' is declared not filterable in the tenant's schema;"
            " filters may use only its filterable fields",
        ),
    }


def query(filter_: dict[str, Any], correlation_id: str, top_k: int = 3) -> str:
    return json.dumps(
        {
            "schema_version": 1,
            "op": "query",
            "tenant": "acme",
            "reply_to": SAMPLE_REPLY_QUEUE,
            "correlation_id": correlation_id,
            "vector": vector(5),
            "top_k": top_k,
            "filter": filter_,
            "include_metadata": True,
        }
    )


def test_refused_filters_are_answered_with_the_field_and_pinecone_is_not_asked(pipeline: Pipeline) -> None:
    control = pipeline.emulator.control
    control.clear_counters()
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([query({"colour": "red"}, "undeclared"), query({"year": {"$in": ["2021", "2022"]}}, "mismatch")])

    assert driver.deliver_once() == {"batchItemFailures": []}

    replies = {
        r["correlation_id"]: r["error"]
        for r in (json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url))
    }
    assert replies["undeclared"]["code"] == "filter_field_not_declared"
    assert "field 'colour' is not declared" in replies["undeclared"]["message"]
    assert replies["mismatch"] == {
        "code": "filter_type_mismatch",
        "message": "[filter_type_mismatch] filter.year.$in: field 'year' is number; $in compares it with a string",
    }
    assert control.count(operation="query") == 0


def test_a_valid_filter_on_a_declared_field_returns_exactly_the_brute_force_matches(pipeline: Pipeline) -> None:
    records = [{"id": f"r{i}", "metadata": {"year": 2015 + i % 10, "genre": "g"}} for i in range(30)]
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    ingest.publish([upsert("acme", records)])
    ingest.run_until_empty()
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([query({"year": {"$gte": 2021}, "genre": {"$eq": "g"}}, "valid", top_k=30)])

    assert driver.deliver_once() == {"batchItemFailures": []}

    [reply] = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    expected = {r["id"] for r in records if r["metadata"]["year"] >= 2021}
    assert {m["id"] for m in reply["matches"]} == expected
    probe = vector(5)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    # ties (two ids whose hash gives the same vector, with some PYTHONHASHSEEDs) come by id, as the emulator sorts them
    reference = sorted(expected, key=lambda i: (-cosine(probe, vector(hash(i) % 1000)), i))
    assert [m["id"] for m in reply["matches"]] == reference


def test_a_malformed_schema_retries_the_whole_batch_and_says_what_is_wrong(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"acme": {"namespace": "tenant-acme", "schema": {"fields": {"year": {"type": "integer"}}}}}
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(broken))
    get_settings.cache_clear()
    reset_worker_dependencies()
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert("acme", [{"id": "a", "metadata": {"year": 1}}]), upsert("acme", [{"id": "b"}])])

    response = driver.deliver_once()

    assert response is not None
    assert len(response["batchItemFailures"]) == 2  # retried, not dead-lettered: the fix is configuration
    assert pipeline.drain(pipeline.dlq_url) == []
    assert "type must be one of string, number, boolean, string_list, got 'integer'" in caplog.text
