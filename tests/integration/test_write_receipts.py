"""Write receipts through the real queues: one per message once its fate is final, to its tenant's queue only.

The ingest handler against moto's server and the Pinecone emulator, with messages delivered as
Lambda's event source mapping does (``SqsDriver``). Each fate: ``applied`` (ids, versions and the
LSN Pinecone gave, over REST; null over gRPC, where the SDK reads none), ``stale`` (a newer version
is recorded), ``dead_lettered`` (its code; a body that names no tenant gets none). A duplicate
delivery sends the same receipt again (same ``receipt_id``: one after de-duplication), and a
message dead-lettered then redriven gets its ``applied`` receipt under the producer's original id.
No receipt reaches another tenant's queue; none carries values or metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_DIMENSION, FakeLambdaContext
from tests.integration.conftest import Pipeline, SqsDriver, parametrize_transports
from tests.lambda_events import lambda_sqs_record
from vector_relay.contract.receipts import Receipt
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.operations.redrive import read_all, send_back


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)


METADATA_MARK = "do-not-echo-this-metadata"


@pytest.fixture
def receipt_queues(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A receipt queue for each sample tenant, named in the registry as a deployment's would be."""
    sqs = boto3.client("sqs")
    queues = {tenant: sqs.create_queue(QueueName=f"{tenant}-receipts")["QueueUrl"] for tenant in ("acme", "globex")}
    registry = {
        "acme": {"namespace": "tenant-acme", "receipts": queues["acme"]},
        "globex": {"namespace": "tenant-globex", "receipts": queues["globex"]},
    }
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    reset_worker_dependencies()
    yield queues
    reset_worker_dependencies()


def upsert(version: int, *ids: str, tenant: str = "acme", dimension: int = SAMPLE_DIMENSION) -> str:
    records = [
        {"id": i, "version": version, "values": [0.5] * dimension, "metadata": {"note": METADATA_MARK}} for i in ids
    ]
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": records})


def publish(pipeline: Pipeline, body: str) -> str:
    """Send one message; the id SendMessage gave it (what a producer keeps to match its receipt)."""
    return str(boto3.client("sqs").send_message(QueueUrl=pipeline.queue_url, MessageBody=body)["MessageId"])


def receipts(pipeline: Pipeline, queue_url: str) -> list[dict[str, Any]]:
    """The receipts on ``queue_url``, removed; each one valid by the receipt contract."""
    bodies = [message["Body"] for message in pipeline.drain(queue_url)]
    for body in bodies:
        Receipt.model_validate_json(body)
        assert METADATA_MARK not in body  # never the records' metadata
        assert "values" not in json.loads(body)
        assert "metadata" not in json.loads(body)
    return [json.loads(body) for body in bodies]


@pytest.fixture
def driver(pipeline: Pipeline) -> SqsDriver:
    return SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)


def test_an_applied_message_gets_one_receipt_with_its_records_and_lsn_on_its_tenants_queue_only(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver, transport: str
) -> None:
    message_id = publish(pipeline, upsert(3, "a", "b"))

    driver.run_until_empty()

    [receipt] = receipts(pipeline, receipt_queues["acme"])
    assert receipt["message_id"] == message_id
    assert receipt["fate"] == "applied"
    assert receipt["tenant"] == "acme"
    assert receipt["op"] == "upsert"
    assert receipt["namespace"] == "tenant-acme"
    assert sorted((r["id"], r["version"]) for r in receipt["records"]) == [("a", 3), ("b", 3)]
    assert receipt["record_count"] == 2
    assert receipt["stale_count"] == 0
    if transport == "rest":  # the LSN the emulator gave the write: a query whose indexed LSN reaches it sees a and b
        assert isinstance(receipt["lsn"], int)
        [index] = [i for i in pipeline.emulator.control.state()["indexes"] if i["name"] == "relay-test"]
        assert index["lsns"]["tenant-acme"] == receipt["lsn"]  # the namespace's last write is this one
    else:
        assert receipt["lsn"] is None  # the SDK's gRPC client reads no LSN: unknown, never a number
    assert receipts(pipeline, receipt_queues["globex"]) == []
    assert set(pipeline.fetch("acme", ["a", "b"])) == {"a", "b"}


def test_a_write_older_than_the_recorded_version_gets_a_stale_receipt(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver
) -> None:
    publish(pipeline, upsert(5, "a"))
    driver.run_until_empty()
    receipts(pipeline, receipt_queues["acme"])  # the first one's, applied

    old = publish(pipeline, upsert(4, "a"))
    driver.run_until_empty()

    [receipt] = receipts(pipeline, receipt_queues["acme"])
    assert receipt["message_id"] == old
    assert receipt["fate"] == "stale"
    assert receipt["records"] == []
    assert receipt["stale"] == [{"id": "a", "version": 4}]
    assert receipt["lsn"] is None


def test_a_dead_lettered_message_gets_a_receipt_with_its_code_and_a_body_naming_no_tenant_gets_none(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver
) -> None:
    wrong = publish(pipeline, upsert(1, "a", dimension=SAMPLE_DIMENSION + 1))
    publish(pipeline, "not json at all")
    publish(pipeline, json.dumps({"schema_version": 1, "op": "upsert", "tenant": "nobody", "records": []}))

    driver.run_until_empty()

    assert len(pipeline.drain()) == 3  # all three in the DLQ
    [receipt] = receipts(pipeline, receipt_queues["acme"])
    assert receipt["message_id"] == wrong
    assert receipt["fate"] == "dead_lettered"
    assert receipt["error_code"] == "dimension_mismatch"
    assert receipts(pipeline, receipt_queues["globex"]) == []


def test_a_duplicate_delivery_sends_the_same_receipt_again_which_deduplicates_to_one(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver, lambda_context: FakeLambdaContext
) -> None:
    message_id = publish(pipeline, upsert(2, "a"))
    sqs = boto3.client("sqs")
    [message] = sqs.receive_message(
        QueueUrl=pipeline.queue_url, AttributeNames=["All"], MessageAttributeNames=["All"], VisibilityTimeout=0
    )["Messages"]
    assert message["MessageId"] == message_id
    driver.run_until_empty()  # the same message again: SQS delivers at least once

    event = {"Records": [lambda_sqs_record(message, pipeline.queue_arn, "us-east-1")]}
    assert ingest_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}  # the first copy, late

    copies = receipts(pipeline, receipt_queues["acme"])
    assert len(copies) == 2
    assert {receipt["fate"] for receipt in copies} == {"applied"}
    assert len({receipt["receipt_id"] for receipt in copies}) == 1  # a consumer keeps one


def test_a_message_dead_lettered_then_redriven_gets_its_applied_receipt_under_the_producers_id(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver
) -> None:
    control = pipeline.emulator.control
    control.add_fault("upsert", status=503, retry_after="0")
    original = publish(pipeline, upsert(7, "a"))
    while driver.held():  # every delivery fails; the fifth dead-letters it as retries_exhausted
        driver.deliver_once()
    [dead] = receipts(pipeline, receipt_queues["acme"])
    assert (dead["fate"], dead["error_code"], dead["message_id"]) == ("dead_lettered", "retries_exhausted", original)

    control.clear_faults()
    sqs = boto3.client("sqs")
    for letter in list(read_all(sqs, pipeline.dlq_url)):
        send_back(sqs, pipeline.queue_url, letter)
    driver.run_until_empty()

    [applied] = receipts(pipeline, receipt_queues["acme"])
    assert applied["fate"] == "applied"
    assert applied["message_id"] == original  # the redriven copy's own id is not what the producer knows
    assert applied["records"] == [{"id": "a", "version": 7}]


def test_each_applied_message_is_one_value_of_its_tenants_write_applied_after_whether_or_not_it_gets_receipts(
    pipeline: Pipeline, receipt_queues: dict[str, str], driver: SqsDriver, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=receipt_queues["globex"])  # globex's receipts will fail: its metric still counts
    publish(pipeline, upsert(1, "a"))
    publish(pipeline, upsert(1, "b"))
    publish(pipeline, upsert(1, "x", tenant="globex"))
    capsys.readouterr()

    driver.run_until_empty()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values: dict[str, list[float]] = {}  # by tenant, over however many batches the driver made
    for line in lines:
        if "WriteAppliedAfter" in line:
            values.setdefault(line["tenant"], []).extend(line["WriteAppliedAfter"])
    assert sorted(values) == ["acme", "globex"]
    assert {tenant: len(v) for tenant, v in values.items()} == {"acme": 2, "globex": 1}  # one per applied message
