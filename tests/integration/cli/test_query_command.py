"""``vector-relay query`` against moto and the emulator, answered by the real query function: it prints the
matches of its own reply (read from S3 when the reply is large), leaves every other reply on the reply queue,
exits 1 on an error reply and 2, with what to check, when no reply comes or the query cannot be asked.

With ``--after-receipts`` (the receipts ``vector-relay receipts wait`` printed), the query waits for the highest LSN
of the applied ones: a fresh answer is exit 0, one the relay could not bring up to it exit 1, and receipts it cannot
wait for (an applied one without an LSN) are refused before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE, SAMPLE_TENANTS, wait_until
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body
from tests.integration.test_producer_receipts import applied, dead_lettered
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.producer import Publisher
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"
BUCKET = "vector-relay-query-results"  # the pipeline's QUERY_RESULTS_BUCKET


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path) -> Path:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(SAMPLE_TENANTS), Type="String")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "QueryQueueUrl": pipeline.query_queue_url,
                "QueryQueueArn": pipeline.query_queue_arn,
                "ExampleReplyQueueUrl": SAMPLE_REPLY_QUEUE,
                "ReplyQueueAllowList": SAMPLE_REPLY_QUEUE,  # the workers' REPLY_QUEUE_ALLOW_LIST (sample_settings)
                "TenantRegistryParameterName": PARAMETER,
                "QueryResultsBucketName": BUCKET,
            }
        )
    )
    return path


def upsert(pipeline: Pipeline, *bodies: str) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(list(bodies))
    driver.run_until_empty()


def ask(pipeline: Pipeline, outputs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``vector-relay query ARGS`` in its own process, its query answered by the query function here."""
    command = [str(Path(sys.executable).parent / "vector-relay"), "--outputs", str(outputs), "query", *args]
    process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
        wait_until(lambda: worker.deliver_once() is not None or process.poll() is not None, "the query was answered")
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def queue_counts(url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue, as SQS counts them."""
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_query_by_id_prints_the_record_first_with_its_score_and_metadata(pipeline: Pipeline, outputs: Path) -> None:
    upsert(pipeline, upsert_body("acme", ["doc-1#0", "doc-2#0", "doc-3#0"], year=2024))

    done = ask(pipeline, outputs, "--tenant", "acme", "--id", "doc-2#0", "--top-k", "2")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tenant acme: 2 matches")
    assert lines[1].split()[:3] == ["1.", "1.0000", "doc-2#0"]
    assert 'version 1  {"v": 1, "year": 2024}' in lines[1]
    assert len(lines) == 3
    assert queue_counts(pipeline.reply_queue_url) == (0, 0)  # its reply was read and deleted


def test_json_prints_the_reply_as_the_contract_shapes_it(pipeline: Pipeline, outputs: Path, tmp_path: Path) -> None:
    body = upsert_body("acme", ["doc-1#0", "doc-2#0"], year=2024)
    upsert(pipeline, body)
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"values": json.loads(body)["records"][1]["values"]}))

    done = ask(
        pipeline, outputs, "--tenant", "acme", "--vector-file", str(probe), "--filter", '{"year": 2024}', "--json"
    )

    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert set(reply) == {"schema_version", "correlation_id", "status", "tenant", "matches", "usage", "lsn"}
    assert isinstance(reply["lsn"], int)  # the indexed LSN it was read at (over REST)
    assert (reply["schema_version"], reply["status"], reply["tenant"]) == (1, "ok", "acme")
    assert reply["matches"][0]["id"] == "doc-2#0"
    assert reply["matches"][0]["metadata"] == {"v": 1, "year": 2024, "_relay_version": "1"}
    assert set(reply["matches"][0]) == {"id", "score", "metadata"}


def test_replies_to_other_queries_are_left_on_the_reply_queue(pipeline: Pipeline, outputs: Path) -> None:
    # GIVEN twelve replies to other queries (more than one receive returns) and a body that is no reply
    sqs = boto3.client("sqs")
    others = [
        json.dumps(
            {"schema_version": 1, "correlation_id": f"other-{n}", "status": "ok", "tenant": "acme", "matches": []}
        )
        for n in range(12)
    ] + ["not a reply"]
    for body in others:
        sqs.send_message(QueueUrl=pipeline.reply_queue_url, MessageBody=body)
    upsert(pipeline, upsert_body("acme", ["doc-1#0"]))

    # WHEN a query is asked and answered on the same queue
    done = ask(pipeline, outputs, "--tenant", "acme", "--id", "doc-1#0", "--json")

    # THEN its own reply was read, and every other one is still there, visible at once
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["matches"][0]["id"] == "doc-1#0"
    assert queue_counts(pipeline.reply_queue_url) == (len(others), 0)
    assert sorted(m["Body"] for m in pipeline.drain(pipeline.reply_queue_url)) == sorted(others)


def test_a_large_reply_is_read_from_s3(pipeline: Pipeline, outputs: Path) -> None:
    upsert(pipeline, *[upsert_body("acme", [f"big{n}-{i}" for i in range(100)]) for n in range(4)])

    done = ask(pipeline, outputs, "--tenant", "acme", "--id", "big0-0", "--top-k", "400", "--values", "--json")

    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert "result_location" not in reply
    assert len(reply["matches"]) == 400
    assert len(reply["matches"][0]["values"]) == SAMPLE_DIMENSION
    stored = boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert len(stored) == 1  # it did travel through S3
    assert queue_counts(pipeline.reply_queue_url) == (0, 0)


def test_an_error_reply_is_printed_with_its_code_and_exits_1(pipeline: Pipeline, outputs: Path, tmp_path: Path) -> None:
    probe = tmp_path / "short.json"
    probe.write_text("[0.1, 0.2, 0.3]")

    done = ask(pipeline, outputs, "--tenant", "acme", "--vector-file", str(probe))

    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("the relay answered with an error: [dimension_mismatch]")


def run(outputs: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--outputs", str(outputs), "query", *args])


def test_no_reply_within_the_timeout_is_exit_2_with_what_to_check(pipeline: Pipeline, outputs: Path) -> None:
    result = run(outputs, "--tenant", "acme", "--id", "doc-1#0", "--timeout", "1")  # no worker runs

    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert "no reply to query" in said
    assert "within 1 s. Is the query worker running" in said
    assert "vector-relay dlq inspect --queue query" in said
    assert queue_counts(pipeline.query_queue_url) == (1, 0)  # it was asked


def test_a_query_the_relay_would_not_answer_is_refused_before_it_is_sent(pipeline: Pipeline, outputs: Path) -> None:
    misspelt = run(outputs, "--tenant", "acmee", "--id", "doc-1#0")
    elsewhere = run(outputs, "--tenant", "acme", "--id", "doc-1#0", "--reply-queue", pipeline.queue_url)
    both = run(outputs, "--tenant", "acme")

    assert misspelt.exit_code == 2
    assert "tenant 'acmee' is not in the tenant registry (acme, globex); did you mean 'acme'?" in misspelt.output
    assert elsewhere.exit_code == 2
    assert f"is not a reply queue tenant 'acme' may name: {SAMPLE_REPLY_QUEUE}" in " ".join(elsewhere.output.split())
    assert both.exit_code == 2
    assert "give exactly one of --vector-file and --id" in both.output
    assert queue_counts(pipeline.query_queue_url) == (0, 0)  # nothing was sent


# ---------------------------------------------------------------- read-your-writes: --after-receipts


def test_a_query_after_the_receipts_of_an_upsert_sees_it_and_says_fresh(
    pipeline: Pipeline, outputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a tenant whose registry entry names a receipt queue, and an upsert the real ingest worker applied
    receipt_queue = boto3.client("sqs").create_queue(QueueName="acme-receipts")["QueueUrl"]
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps({"acme": {"namespace": "tenant-acme", "receipts": receipt_queue}}))
    reset_worker_dependencies()
    sent = Publisher(pipeline.queue_url, sqs=boto3.client("sqs")).publish_bodies([upsert_body("acme", ["doc-7#0"])])
    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty()

    # WHEN its receipt is waited for and the query is asked after it
    waited = CliRunner().invoke(cli, ["receipts", "wait", "--queue", receipt_queue, *sent.message_ids])
    assert waited.exit_code == 0, waited.output
    receipts = tmp_path / "receipts.jsonl"
    receipts.write_text(waited.stdout)
    done = ask(pipeline, outputs, "--tenant", "acme", "--id", "doc-7#0", "--after-receipts", str(receipts), "--json")

    # THEN the answer has the record, and says it reflects the write
    assert done.returncode == 0, done.stderr
    (receipt,) = [json.loads(line) for line in waited.stdout.splitlines()]
    reply = json.loads(done.stdout)
    assert (receipt["fate"], receipt["message_id"]) == ("applied", sent.message_ids[0])
    assert reply["matches"][0]["id"] == "doc-7#0"
    assert reply["fresh"] is True
    assert reply["lsn"] >= receipt["lsn"] >= 1


def answered_by_hand(pipeline: Pipeline, outputs: Path, *args: str, **reply: Any) -> tuple[Any, dict[str, Any]]:
    """``vector-relay query ARGS`` in its own process, its query answered with ``reply`` by the test: the CLI's exit,
    and the query message as it was sent."""
    command = [str(Path(sys.executable).parent / "vector-relay"), "--outputs", str(outputs), "query", *args]
    process = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sqs = boto3.client("sqs")
    asked: list[dict[str, Any]] = []
    try:

        def answer() -> bool:
            messages = sqs.receive_message(QueueUrl=pipeline.query_queue_url, WaitTimeSeconds=1).get("Messages", [])
            for message in messages:
                asked.append(json.loads(message["Body"]))
                body = {"schema_version": 1, "correlation_id": asked[-1]["correlation_id"], "status": "ok"}
                sqs.send_message(QueueUrl=asked[-1]["reply_to"], MessageBody=json.dumps(body | reply))
                sqs.delete_message(QueueUrl=pipeline.query_queue_url, ReceiptHandle=message["ReceiptHandle"])
            return bool(messages) or process.poll() is not None

        wait_until(answer, "the query was asked")
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr), asked[0] if asked else {}


def test_an_answer_the_relay_could_not_bring_up_to_the_receipts_is_exit_1_and_says_so(
    pipeline: Pipeline, outputs: Path, tmp_path: Path
) -> None:
    receipts = tmp_path / "receipts.jsonl"
    lines = [applied("m-1", lsn=7), applied("m-2", lsn=12), dead_lettered("m-3")]
    receipts.write_text("".join(receipt.body() + "\n" for receipt in lines))
    late = {"tenant": "acme", "matches": [], "lsn": 9, "fresh": False}

    done, asked = answered_by_hand(
        pipeline, outputs, "--tenant", "acme", "--id", "doc-1#0", "--after-receipts", str(receipts), **late
    )

    assert asked["min_lsn"] == 12  # the highest LSN of the applied receipts
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("tenant acme: 0 matches; indexed LSN 9 (not fresh)")
    assert "not fresh: the relay answered at indexed LSN 9, below the receipts' LSN 12" in done.stderr


def test_receipts_a_query_cannot_wait_for_are_refused_before_it_is_sent(
    pipeline: Pipeline, outputs: Path, tmp_path: Path
) -> None:
    no_lsn = applied("m-9", lsn=None)
    without = tmp_path / "grpc.jsonl"
    without.write_text(applied("m-1").body() + "\n" + no_lsn.body() + "\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(applied("m-1").body() + "\n" + '{"schema_version": 1, "type": "reply"}\n')
    others = tmp_path / "globex.jsonl"
    others.write_text(applied("m-1", tenant="globex").body() + "\n")

    refused = [
        run(outputs, "--tenant", "acme", "--id", "doc-1#0", "--after-receipts", str(path))
        for path in (without, broken, others)
    ]

    assert [result.exit_code for result in refused] == [2, 2, 2]
    said = [" ".join(result.output.split()) for result in refused]
    assert f"receipt {no_lsn.receipt_id} (message m-9) was applied without an LSN" in said[0]
    assert f"line 2 of --after-receipts {broken} is not a write receipt" in said[1]
    assert "belongs to tenant 'globex': a query of tenant 'acme' cannot wait for it" in said[2]
    assert queue_counts(pipeline.query_queue_url) == (0, 0)  # nothing was sent
