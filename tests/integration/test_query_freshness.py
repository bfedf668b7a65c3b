"""Read-your-writes through the query function: a query with min_lsn waits for the index, and says if it got there.

The query handler runs on real SQS events against moto's server and the Pinecone emulator. A write's
LSN is the one Pinecone's SDK reads from the upsert's response (``response_info.lsn_committed``), as
a producer's receipt carries it. No verdict here depends on the wall clock: the indexing lag is one
hour, so nothing becomes readable by waiting; only the emulator's flush makes the write readable, and
the test flushes from a helper thread once the emulator has answered the handler's first query.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from pinecone_emulator.control import EmulatorControl
from tests.conftest import SAMPLE_TENANTS, FakeLambdaContext, load_event, wait_until
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from tests.integration.test_query import query_body, replies

LAG_MS = 3_600_000  # one hour: only flush_indexing() makes a write readable
NAMESPACE = SAMPLE_TENANTS["acme"]
# A short invocation: the function's DEADLINE_MARGIN_MS (5 s) plus 10 s for Pinecone, far more than a
# query takes even on a loaded machine (its first attempt must end in time, or the batch is retried).
SHORT = FakeLambdaContext(remaining_ms=5_000 + 10_000)


def write(pipeline: Pipeline, record_id: str, seed: int) -> int:
    """Upsert one record of acme with Pinecone's SDK; the LSN the write was committed at."""
    response = pipeline.index.upsert(vectors=[(record_id, vector(seed), {"kind": "late"})], namespace=NAMESPACE)
    assert response.response_info is not None
    lsn = response.response_info.lsn_committed
    assert isinstance(lsn, int)
    return lsn


def queries(pipeline: Pipeline) -> SqsDriver:
    return SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)


def by_correlation(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    return {reply["correlation_id"]: reply for reply in replies(pipeline)}


def flush_once_queried(control: EmulatorControl, pool: ThreadPoolExecutor) -> Future[int]:
    """In a helper thread: once the emulator has answered a query, make every waiting write readable."""

    def flush() -> int:
        wait_until(lambda: control.count("query", status=200) >= 1, "the handler's first query", ceiling=45)
        return control.flush_indexing()

    return pool.submit(flush)


def test_a_query_with_min_lsn_waits_for_a_lagging_index_then_answers_fresh_with_the_write(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    # GIVEN a write the index will not show for an hour
    control = pipeline.emulator.control
    control.set_indexing_lag(LAG_MS)
    written = write(pipeline, "late", seed=1)
    control.clear_counters()
    driver = queries(pipeline)
    driver.publish([query_body(vector=vector(1), top_k=1, min_lsn=written, correlation_id="ryw")])

    # WHEN the query is delivered, and the index catches up only after the emulator has answered it once
    with ThreadPoolExecutor(max_workers=1) as pool:
        flushed = flush_once_queried(control, pool)
        response = driver.deliver_once(lambda_context)
        waiting_writes = flushed.result(timeout=60)

    # THEN the first answer was behind (the write was still waiting when it came), and the reply is the
    # answer after the index caught up: the write's record, fresh, at an LSN that reflects the write
    assert response == {"batchItemFailures": []}
    assert waiting_writes == 1
    [reply] = replies(pipeline)
    assert reply["status"] == "ok"
    assert reply["fresh"] is True
    assert reply["lsn"] >= written
    assert [match["id"] for match in reply["matches"]] == ["late"]
    assert pipeline.drain() == []


def test_when_the_invocation_ends_first_the_reply_says_not_fresh_with_the_lsn_seen_and_its_batch_mate_is_answered(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    # GIVEN a warm worker (its key and client ready), then a write the index will not show for an hour
    control = pipeline.emulator.control
    driver = queries(pipeline)
    driver.publish([query_body(vector=vector(2), top_k=1, correlation_id="warm-up")])
    assert driver.deliver_once(lambda_context) == {"batchItemFailures": []}
    assert by_correlation(pipeline)["warm-up"]["matches"] == []
    control.set_indexing_lag(LAG_MS)
    written = write(pipeline, "late", seed=1)

    # WHEN a read-your-writes query and a plain one come in one batch of a short invocation
    driver.publish(
        [
            query_body(vector=vector(1), top_k=1, min_lsn=written, correlation_id="ryw"),
            query_body(vector=vector(1), top_k=1, correlation_id="plain"),
        ]
    )
    response = driver.deliver_once(SHORT)

    # THEN the waiting one is answered, within the invocation, with what the index showed: not fresh, at an
    # LSN below min_lsn, without the write; the plain one is answered too, with its LSN and no "fresh"
    assert response == {"batchItemFailures": []}
    answers = by_correlation(pipeline)
    assert set(answers) == {"ryw", "plain"}
    ryw, plain = answers["ryw"], answers["plain"]
    assert (ryw["status"], ryw["fresh"], ryw["matches"]) == ("ok", False, [])
    assert isinstance(ryw["lsn"], int)
    assert ryw["lsn"] < written
    assert (plain["status"], plain["matches"]) == ("ok", [])
    assert isinstance(plain["lsn"], int)
    assert plain["lsn"] < written
    assert "fresh" not in plain
    assert pipeline.drain() == []


def test_every_ok_reply_carries_the_lsn_it_was_read_at_and_fresh_only_when_asked(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    written = write(pipeline, "now", seed=3)  # no lag: readable at once
    driver = queries(pipeline)
    driver.publish(
        [
            query_body(vector=vector(3), top_k=1, correlation_id="plain"),
            query_body(vector=vector(3), top_k=1, min_lsn=written, correlation_id="ryw"),
            query_body(vector=vector(3), top_k=1, min_lsn=0, correlation_id="zero"),
        ]
    )

    assert driver.deliver_once(lambda_context) == {"batchItemFailures": []}

    answers = by_correlation(pipeline)
    assert {name: (a["lsn"], a.get("fresh")) for name, a in answers.items()} == {
        "plain": (written, None),
        "ryw": (written, True),
        "zero": (written, True),
    }
    assert "fresh" not in answers["plain"]
    assert all([m["id"] for m in a["matches"]] == ["now"] for a in answers.values())


@pytest.mark.parametrize("transport", ["grpc"], indirect=True)
def test_over_grpc_no_lsn_is_known_so_a_min_lsn_query_is_answered_not_fresh_with_a_null_lsn(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, transport: str
) -> None:
    written = write(pipeline, "now", seed=4)  # over REST: the SDK's gRPC client reads no LSN
    driver = queries(pipeline)
    driver.publish(
        [
            query_body(vector=vector(4), top_k=1, min_lsn=written, correlation_id="ryw"),
            query_body(vector=vector(4), top_k=1, correlation_id="plain"),
        ]
    )

    assert driver.deliver_once(lambda_context) == {"batchItemFailures": []}

    answers = by_correlation(pipeline)
    assert (answers["ryw"]["lsn"], answers["ryw"]["fresh"]) == (None, False)
    assert answers["plain"]["lsn"] is None
    assert "fresh" not in answers["plain"]
    # the matches are Pinecone's answer all the same: the relay cannot say whether they reflect the write
    assert [m["id"] for m in answers["ryw"]["matches"]] == ["now"]


def test_the_sample_read_your_writes_event_is_answered_fresh_after_ingest(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    ingest.publish([upsert_body("acme", [f"a{i}" for i in range(5)])])
    ingest.run_until_empty()

    assert query_app.lambda_handler(load_event("query-fresh"), lambda_context) == {"batchItemFailures": []}

    [reply] = replies(pipeline)
    body = json.loads(load_event("query-fresh")["Records"][0]["body"])
    assert (reply["correlation_id"], reply["fresh"]) == ("c-125", True)
    assert reply["lsn"] >= body["min_lsn"]
    assert len(reply["matches"]) == 3


def emf_values(text: str, metric: str) -> list[tuple[str, list[float]]]:
    """(tenant, values) of every EMF line in ``text`` that carries ``metric``."""
    lines = [json.loads(line) for line in text.splitlines() if '"_aws"' in line]
    return [(line.get("tenant", ""), line[metric]) for line in lines if metric in line]


def test_a_fresh_answer_counts_the_time_since_its_writes_were_sent_per_tenant(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a write the index shows only after the flush, and a query that says it was sent 5 s ago
    control = pipeline.emulator.control
    control.set_indexing_lag(LAG_MS)
    written = write(pipeline, "late", seed=1)
    sent_at = int(time.time() * 1000) - 5_000
    control.clear_counters()
    driver = queries(pipeline)
    driver.publish([query_body(vector=vector(1), top_k=1, min_lsn=written, writes_sent_at=sent_at)])
    capsys.readouterr()

    with ThreadPoolExecutor(max_workers=1) as pool:
        flushed = flush_once_queried(control, pool)
        assert driver.deliver_once(lambda_context) == {"batchItemFailures": []}
        flushed.result(timeout=60)

    # THEN the fresh reply's freshness is one value of acme's WritesIndexedAfter: at least the 5 s since
    # the write was sent (time only moves on), in the tenant's own series
    [reply] = replies(pipeline)
    assert reply["fresh"] is True
    [(tenant, values)] = emf_values(capsys.readouterr().out, "WritesIndexedAfter")
    assert tenant == "acme"
    assert len(values) == 1
    assert values[0] >= 5_000
