"""``vector-relay top --once`` against moto's server and the emulator: a poisoned tenant's dead letters show up
by code with their reason (never their body), the tenants' rates come from the per-tenant series in CloudWatch,
and looking consumes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path) -> Path:
    """A deployment's six queues (the pipeline's ingest queue, its DLQ and query queue, and three more) and the
    registry, as `make up` writes the outputs."""
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(SAMPLE_TENANTS), Type="String")
    sqs = boto3.client("sqs")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "IngestQueueUrl": pipeline.queue_url,
                "IngestDeadLetterQueueUrl": pipeline.dlq_url,
                "QueryQueueUrl": pipeline.query_queue_url,
                "QueryDeadLetterQueueUrl": sqs.create_queue(QueueName="query-dlq")["QueueUrl"],
                "ReceiptRetryQueueUrl": sqs.create_queue(QueueName="receipt-retry")["QueueUrl"],
                "ReceiptRetryDeadLetterQueueUrl": sqs.create_queue(QueueName="receipt-retry-dlq")["QueueUrl"],
                "TenantRegistryParameterName": PARAMETER,
            }
        )
    )
    return path


def poison_acme(pipeline: Pipeline) -> list[str]:
    """acme (registered) sends two all-zero vectors and globex one good record: acme's two are dead-lettered."""
    zeros = [
        json.dumps(
            {
                "schema_version": 1,
                "op": "upsert",
                "tenant": "acme",
                "records": [{"id": f"z{i}", "version": 1, "values": [0.0] * len(vector(1))}],
            }
        )
        for i in range(2)
    ]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([*zeros, upsert_body("globex", ["g1"])])
    assert driver.deliver_once() == {"batchItemFailures": []}
    return zeros


def put_figures() -> None:
    """What the functions' EMF lines (and SQS) would have put in CloudWatch a minute ago."""
    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    cloudwatch = boto3.client("cloudwatch")

    def datum(name: str, value: float, **dimensions: str) -> Any:
        return {
            "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            "Timestamp": a_minute_ago,
            "Value": value,
            "Unit": "Count" if name != "ApproximateAgeOfOldestMessage" else "Seconds",
        }

    cloudwatch.put_metric_data(
        Namespace="VectorRelay",
        MetricData=[
            datum("PoisonMessages", 10, tenant="acme", service="ingest"),
            datum("RecordsUpserted", 600, tenant="globex", service="ingest"),
            datum("QueryReplies", 45, tenant="globex", service="query"),
        ],
    )
    cloudwatch.put_metric_data(
        Namespace="AWS/SQS", MetricData=[datum("ApproximateAgeOfOldestMessage", 754, QueueName="ingest-dlq")]
    )


def top(outputs: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "top", "--once", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def visible_in(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_a_poisoned_tenants_code_its_row_and_the_rates_are_in_the_json(pipeline: Pipeline, outputs: Path) -> None:
    poison_acme(pipeline)
    put_figures()

    code, out = top(outputs, "--json")
    frame = json.loads(out)

    assert code == 0
    assert [q["queue"] for q in frame["queues"]] == [
        "ingest",
        "ingest DLQ",
        "query",
        "query DLQ",
        "receipt retry",
        "receipt retry DLQ",
    ]
    dlq = frame["queues"][1]
    assert (dlq["name"], dlq["visible"], dlq["oldest_age_seconds"]) == ("ingest-dlq", 2, 754.0)
    assert frame["queues"][0]["oldest_age_seconds"] is None  # no datapoint for it
    assert frame["dead_letters"][0] == {
        "queue": "ingest DLQ",
        "held": 2,
        "sampled": 2,
        "partial": False,
        "codes": {"zero_vector": 2},
    }
    assert [d["held"] for d in frame["dead_letters"][1:]] == [0, 0]
    rates = {t["tenant"]: t["per_minute"] for t in frame["tenants"]}
    assert rates == {
        "acme": {"records_upserted": None, "records_deleted": None, "query_replies": None, "poison_messages": 2.0},
        "globex": {"records_upserted": 120.0, "records_deleted": None, "query_replies": 9.0, "poison_messages": None},
    }
    assert [(e["queue"], e["error_code"]) for e in frame["recent_errors"]] == [("ingest DLQ", "zero_vector")] * 2
    assert all(e["reason"] for e in frame["recent_errors"])
    assert '"values"' not in out  # no body
    assert visible_in(pipeline.dlq_url) == 2  # both still there, visible at once


def test_the_frame_shows_the_code_the_tenants_row_its_rates_and_the_reason(pipeline: Pipeline, outputs: Path) -> None:
    poison_acme(pipeline)
    put_figures()

    code, out = top(outputs)

    assert code == 0
    lines = out.splitlines()
    assert any(line.split()[:4] == ["ingest", "DLQ", "zero_vector", "2"] for line in lines)
    [acme] = [line.split() for line in lines if line.split()[:1] == ["acme"]]
    assert acme == ["acme", "-", "-", "-", "2.0"]
    [globex] = [line.split() for line in lines if line.split()[:1] == ["globex"]]
    assert globex == ["globex", "120.0", "-", "9.0", "-"]
    [dlq] = [line.split() for line in lines if "ingest-dlq" in line]
    assert dlq[-4:] == ["2", "0", "0", "12m"]
    errors = [line for line in lines if line.split()[1:4] == ["ingest", "DLQ", "zero_vector"]]
    assert len(errors) == 2  # the latest errors, each with its reason (taken literally: no markup)
    assert all("[zero_vector] records[0].values: a dense" in line for line in errors)


def test_a_dlq_holding_more_than_max_is_counted_from_a_sample(pipeline: Pipeline, outputs: Path) -> None:
    poison_acme(pipeline)

    code, out = top(outputs, "--max", "1")

    assert code == 0
    [counts] = [line for line in out.splitlines() if line.split()[:3] == ["ingest", "DLQ", "zero_vector"]]
    assert counts.split()[3:] == ["1", "sampled", "1", "of", "2"]
    assert visible_in(pipeline.dlq_url) == 2


def test_after_top_a_redrive_finds_every_dead_letter_as_before(
    pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking raised the messages' receive counts; the DLQ has no redrive policy, so nothing moved, and a
    redrive judges each exactly as it would have."""
    zeros = poison_acme(pipeline)
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pipeline.emulator.url)
    redrive_outputs = json.loads(outputs.read_text()) | {"PineconeApiKeySecretArn": pipeline.secret_arn}
    outputs.write_text(json.dumps(redrive_outputs))

    for _ in range(3):
        assert top(outputs)[0] == 0
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dlq", "redrive", "--dry-run", "--json"])

    report = json.loads(result.output)
    assert (report["looked_at"], report["still_poison"], report["valid_now"]) == (len(zeros), {"zero_vector": 2}, 0)


def test_without_the_export_lines_top_asks_which_relay(tmp_path: Path) -> None:
    nowhere = tmp_path / "absent"
    ran = subprocess.run(
        [str(Path(sys.executable).parent / "vector-relay"), "top", "--once"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_CONFIG_FILE": str(nowhere)},
        timeout=120,
    )

    assert ran.returncode == 2
    assert ran.stderr.startswith("Error: which relay? none is named:")
    assert len(ran.stderr.splitlines()) == 1
