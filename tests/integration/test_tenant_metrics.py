"""Per-tenant metrics: what each tenant's messages did, in lines whose `tenant` the registry bounds.

The handlers run on the sample events against moto's server and the Pinecone emulator; the EMF lines
they print are read back as CloudWatch Logs would read them.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline
from tests.unit.test_events import documented_poison
from vector_relay.metrics import TENANT_DIMENSIONS, UNREGISTERED_TENANT


def tenant_lines(output: str) -> list[dict[str, Any]]:
    """The EMF lines written with the tenant dimension."""
    lines = [json.loads(text) for text in output.splitlines() if '"_aws"' in text]
    return [line for line in lines if line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [list(TENANT_DIMENSIONS)]]


def summed(lines: list[dict[str, Any]], metric: str) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for line in lines:
        if metric in line:
            totals[line["tenant"]] += sum(line[metric])
    return dict(totals)


def test_an_ingest_batch_counts_each_tenants_records_and_dead_letters_by_code(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a batch of valid upserts for two tenants and poison of every kind, one naming no registered tenant
    event = load_event("ingest-mixed-with-poison")
    poison = documented_poison()["ingest-mixed-with-poison"]
    capsys.readouterr()

    # WHEN the ingest function handles it
    assert ingest_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    # THEN each tenant's records are counted under it ...
    lines = tenant_lines(capsys.readouterr().out)
    assert summed(lines, "RecordsUpserted") == {"acme": 2, "globex": 1}
    # ... every dead letter under its tenant, with its code as a property (one line per tenant and code) ...
    dead = [line for line in lines if "PoisonMessages" in line]
    assert sum(line["dead_letters"] for line in dead) == sum(summed(dead, "PoisonMessages").values()) == len(poison)
    by_code = {line["error_code"]: line["tenant"] for line in dead}
    assert set(by_code) == set(poison.values())
    # ... and a message whose tenant the registry does not have (or whose body cannot be read) counts as `-`:
    # a dimension value never comes from a message alone
    assert by_code["unknown_tenant"] == by_code["invalid_json"] == UNREGISTERED_TENANT
    assert by_code["schema_violation"] == by_code["dimension_mismatch"] == "acme"
    assert {line["tenant"] for line in lines} <= {"acme", "globex", UNREGISTERED_TENANT}


def test_a_query_batch_counts_each_tenants_replies_latency_and_read_units(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN records in the index and a batch of queries of them
    assert ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context) == {"batchItemFailures": []}
    event = load_event("query")
    tenants = Counter(json.loads(record["body"])["tenant"] for record in event["Records"])
    capsys.readouterr()

    # WHEN the query function answers them
    assert query_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    # THEN each tenant's replies, their latencies and the read units Pinecone reported are counted under it
    lines = tenant_lines(capsys.readouterr().out)
    assert summed(lines, "QueryReplies") == dict(tenants)
    assert {tenant: len(line["QueryLatency"]) for line in lines for tenant in [line["tenant"]]} == dict(tenants)
    replies = [json.loads(message["Body"]) for message in pipeline.drain(pipeline.reply_queue_url)]
    read_units: Counter[str] = Counter()
    for reply in replies:
        read_units[reply["tenant"]] += reply["usage"]["read_units"]
    assert summed(lines, "QueryReadUnits") == dict(read_units)
