"""``vector-relay dlq inspect|redrive`` against moto and the emulator: inspect consumes nothing; redrive moves
exactly the messages valid today and leaves the rest with their codes; a crash between send and delete loses
nothing (a duplicate at most)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings
from vector_relay_cli.dlq_commands import CRASH_AFTER_SENDS
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(SAMPLE_TENANTS), Type="String")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "IngestQueueUrl": pipeline.queue_url,
                "IngestDeadLetterQueueUrl": pipeline.dlq_url,
                "QueryDeadLetterQueueUrl": pipeline.dlq_url,
                "TenantRegistryParameterName": PARAMETER,
                "PineconeIndexName": "relay-test",
                "PineconeApiKeySecretArn": pipeline.secret_arn,
            }
        )
    )
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pipeline.emulator.url)
    return path


def dead_letter_three(pipeline: Pipeline) -> list[str]:
    """Two messages for a tenant not registered yet, one with a zero vector: all three in the DLQ."""
    zero = json.dumps(
        {
            "schema_version": 1,
            "op": "upsert",
            "tenant": "acme",
            "records": [{"id": "z", "version": 1, "values": [0.0] * len(vector(1))}],
        }
    )
    bodies = [upsert_body("initech", ["i1"]), upsert_body("initech", ["i2"]), zero]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(bodies)
    assert driver.deliver_once() == {"batchItemFailures": []}
    return bodies


def register_initech(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {**SAMPLE_TENANTS, "initech": "tenant-initech"}
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(registry), Type="String", Overwrite=True)
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))  # the workers' copy
    get_settings.cache_clear()
    reset_worker_dependencies()


def run(outputs: Path, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dlq", *args, "--json"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.output)


def bodies_in(url: str) -> list[str]:
    sqs = boto3.client("sqs")
    found: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
        "Messages", []
    ):
        found += [m["Body"] for m in messages]
    return found


def test_inspect_counts_by_code_and_consumes_nothing(pipeline: Pipeline, outputs: Path) -> None:
    dead_letter_three(pipeline)

    code, report = run(outputs, "inspect")

    assert code == 0
    assert report["messages"] == 3
    assert {c: e["count"] for c, e in report["codes"].items()} == {"unknown_tenant": 2, "zero_vector": 1}
    assert "the tenant is not in the tenant registry" in report["codes"]["unknown_tenant"]["samples"][0]["error_detail"]
    assert len(bodies_in(pipeline.dlq_url)) == 3  # all still there, visible at once


def test_redrive_moves_exactly_what_is_valid_today_and_it_lands(
    pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = dead_letter_three(pipeline)
    register_initech(monkeypatch)

    code, dry = run(outputs, "redrive", "--dry-run")
    assert (code, dry["valid_now"], dry["moved"], dry["still_poison"]) == (1, 2, 0, {"zero_vector": 1})

    code, report = run(outputs, "redrive")
    assert (code, report["moved"], report["still_poison"]) == (1, 2, {"zero_vector": 1})  # 1: poison is left

    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty()
    assert set(pipeline.index.fetch(ids=["i1", "i2"], namespace="tenant-initech").vectors) == {"i1", "i2"}
    assert bodies_in(pipeline.dlq_url) == [bodies[2]]  # the zero vector stays, still poison


def test_redrive_says_when_another_reader_held_dead_letters_it_could_not_see(
    pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN three dead letters, one of them hidden by another reader (as `vector-relay top` hides what it reads)
    dead_letter_three(pipeline)
    register_initech(monkeypatch)
    boto3.client("sqs").receive_message(QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=300)

    # WHEN redrive runs meanwhile
    code, report = run(outputs, "redrive", "--dry-run")

    # THEN it says it could not look at one, and exits 1 (something is left that it did not judge)
    assert (code, report["looked_at"], report["held_by_another_reader"]) == (1, 2, 1)


def test_a_redriven_copy_carries_when_its_write_was_first_sent(
    pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redrive restarts SQS's SentTimestamp; the copy must not look younger than its write (write_expired)."""
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert_body("initech", ["i1"]))
    [original] = sqs.receive_message(QueueUrl=pipeline.queue_url, AttributeNames=["All"], VisibilityTimeout=0)[
        "Messages"
    ]
    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty()  # unknown tenant
    register_initech(monkeypatch)

    code, report = run(outputs, "redrive")

    assert (code, report["moved"]) == (0, 1)
    [copy] = sqs.receive_message(QueueUrl=pipeline.queue_url, MessageAttributeNames=["All"])["Messages"]
    assert copy["MessageAttributes"]["first_sent_at"]["StringValue"] == original["Attributes"]["SentTimestamp"]


def test_redrive_of_the_query_dlq_is_refused(outputs: Path) -> None:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dlq", "redrive", "--queue", "query"])
    assert result.exit_code == 2
    assert "queries are not redriven: whoever asked has stopped waiting" in result.output


def test_a_crash_between_send_and_delete_loses_nothing(
    pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = dead_letter_three(pipeline)[:2]
    register_initech(monkeypatch)
    script = Path(sys.executable).parent / "vector-relay"

    crashed = subprocess.run(
        [str(script), "--outputs", str(outputs), "dlq", "redrive", "--code", "unknown_tenant"],
        env={**os.environ, CRASH_AFTER_SENDS: "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert crashed.returncode == 75  # died after the second send, before its delete
    assert sorted(bodies_in(pipeline.queue_url)) == sorted(bodies)  # both were sent
    # the second is still in the DLQ too (hidden until the scan's visibility timeout ends, then back):
    # a duplicate, which the version guard makes harmless; nothing is lost
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.dlq_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    in_dlq = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    assert in_dlq == 2  # the duplicate, and the zero-vector message that --code did not select


# ---------------------------------------------------------------- where a redrive may send (docs/security.md)


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str


def make_queue(name: str, dead_letter: Queue | None = None) -> Queue:
    """A real moto queue; with ``dead_letter``, SQS's redrive policy moves a message there after 2 receives."""
    sqs = boto3.client("sqs")
    attributes = {}
    if dead_letter is not None:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Queue(url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


@pytest.fixture
def acme_bound(pipeline: Pipeline, outputs: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Queue, Queue]:
    """acme bound to an ingest queue of its own with its own DLQ (templates/tenant.yaml), in the registry the CLI
    reads and in the workers'; globex stays on the shared queues."""
    dlq = make_queue("relay-tenant-acme-ingest-dlq")
    ingest = make_queue("relay-tenant-acme-ingest", dlq)
    registry = {**SAMPLE_TENANTS, "acme": {"namespace": "tenant-acme", "queues": [ingest.arn]}}
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(registry), Type="String", Overwrite=True)
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    get_settings.cache_clear()
    reset_worker_dependencies()
    return ingest, dlq


def plant(dlq_url: str, body: str, source_queue: str) -> None:
    """A message in a DLQ whose attributes claim it came from ``source_queue`` (anyone who may send can write them)."""
    attributes = DeadLetterAttributes(
        error_code="retries_exhausted",
        error_detail="[retries_exhausted] : Pinecone unavailable",
        source_queue=source_queue,
        source_message_id="m-1",
        receive_count=5,
    )
    boto3.client("sqs").send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes=attributes.to_message_attributes(),  # type: ignore[arg-type]
    )


def test_a_forged_source_queue_cannot_send_a_shared_dlq_message_into_a_bound_tenant_s_queue(
    pipeline: Pipeline, outputs: Path, acme_bound: tuple[Queue, Queue]
) -> None:
    # GIVEN a message for acme planted in the shared ingest DLQ, claiming to come from acme's own queue
    acme_ingest, _ = acme_bound
    plant(pipeline.dlq_url, upsert_body("acme", ["forged"]), source_queue=acme_ingest.arn)

    # WHEN the operator redrives the shared DLQ (its source queues, as SQS lists them: ingest and query)
    code, report = run(outputs, "redrive")

    # THEN whatever the workers take from acme's queue and the shared one, nothing reaches acme's
    # namespace; the message stays in the DLQ, reported as naming none of its source queues
    SqsDriver(acme_ingest.url, acme_ingest.arn, ingest_app.lambda_handler).run_until_empty()
    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty()
    assert pipeline.fetch("acme", ["forged"]) == {}
    assert bodies_in(pipeline.dlq_url) == [upsert_body("acme", ["forged"])]
    assert (code, report["moved"], report.get("no_source_queue")) == (1, 0, 1)


def test_a_tenant_dlq_redrives_only_into_its_own_queue_whatever_a_message_claims(
    pipeline: Pipeline, outputs: Path, acme_bound: tuple[Queue, Queue]
) -> None:
    acme_ingest, acme_dlq = acme_bound
    sqs = boto3.client("sqs")
    # GIVEN acme's DLQ holding a write SQS's redrive policy moved there (no attributes) ...
    sqs.send_message(QueueUrl=acme_ingest.url, MessageBody=upsert_body("acme", ["a-retried"]))
    while sqs.receive_message(QueueUrl=acme_ingest.url, VisibilityTimeout=0).get("Messages"):
        pass  # received and never deleted, until the redrive policy moves it to acme's DLQ
    # ... and a globex write planted there, claiming to come from the shared ingest queue
    plant(acme_dlq.url, upsert_body("globex", ["g-forged"]), source_queue=pipeline.queue_arn)

    # WHEN the operator redrives acme's DLQ
    code, report = run(outputs, "redrive", "--url", acme_dlq.url)

    # THEN acme's write went back to acme's queue (its DLQ's one source queue) and lands; the globex
    # message, judged against acme's queue, is refused there and stays; the shared queue got nothing
    SqsDriver(acme_ingest.url, acme_ingest.arn, ingest_app.lambda_handler).run_until_empty()
    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty()
    assert set(pipeline.fetch("acme", ["a-retried"])) == {"a-retried"}
    assert pipeline.fetch("globex", ["g-forged"]) == {}
    assert bodies_in(acme_dlq.url) == [upsert_body("globex", ["g-forged"])]
    assert (code, report["moved"], report["still_poison"]) == (1, 1, {"tenant_not_bound": 1})


def test_target_url_must_be_one_of_the_dlq_s_source_queues(
    pipeline: Pipeline, outputs: Path, acme_bound: tuple[Queue, Queue]
) -> None:
    acme_ingest, _ = acme_bound
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dlq", "redrive", "--target-url", acme_ingest.url])
    assert result.exit_code == 2
    assert f"--target-url {acme_ingest.url} is not a source queue of {pipeline.dlq_url}" in result.output
