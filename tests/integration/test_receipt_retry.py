"""Write receipts a tenant's queue did not take: to the relay's retry queue, and from there to the tenant again.

The ingest handler sends a receipt its tenant's receipt queue refuses to the retry queue
(``RECEIPT_RETRY_QUEUE_URL``) and still acknowledges the message whose write landed, once.
ReceiptsFunction (``functions/receipts/app.py``), driven from a moto retry queue as Lambda's event
source mapping drives it (``SqsDriver``), sends each receipt to the queue the registry names now:
taken, it is acknowledged; for a tenant with no receipt queue now, dropped and acknowledged; when
that queue is missing, a batch item failure, retried by SQS until the queue is back or the redrive
policy parks it in the DLQ; a body that is not a receipt is acknowledged and counted, never logged.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.ingest import app as ingest_app
from functions.receipts import app as receipts_app
from tests.conftest import SAMPLE_DIMENSION, FakeLambdaContext
from tests.integration.conftest import Pipeline, SqsDriver
from tests.receipt_samples import applied_receipt
from vector_relay.contract.receipts import Receipt
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings

RETRY_MAX_RECEIVE_COUNT = 10  # template.yaml, ReceiptRetryQueue's redrive policy
FUNCTION_TIMEOUT_MS = 30_000  # template.yaml, ReceiptsFunction's Timeout
NOT_TO_BE_LOGGED = "do-not-log-this-body"


def create_queue(name: str, **attributes: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def retry_queues() -> tuple[str, str, str]:
    """The template's ReceiptRetryQueue and its DLQ: (queue URL, queue ARN, DLQ URL)."""
    dlq_url, dlq_arn = create_queue("receipt-retry-dlq", MessageRetentionPeriod="1209600")
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(RETRY_MAX_RECEIVE_COUNT)}
    url, arn = create_queue("receipt-retry", VisibilityTimeout="180", RedrivePolicy=json.dumps(redrive))
    return url, arn, dlq_url


def a_receipt(tenant: str = "acme", message_id: str = "1f0c7d52-9a55-4a0e-9d4e-52c0a6a1b001") -> str:
    """An ``applied`` receipt body, as the ingest worker writes one (the contract's model)."""
    return Receipt.model_validate(applied_receipt(message_id, tenant=tenant, lsn=7)).body()


def bodies(queue_url: str) -> list[str]:
    """Every message body on the queue, removed."""
    sqs = boto3.client("sqs")
    found: list[str] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found += [message["Body"] for message in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def metric_values(stdout: str, metric: str) -> list[float]:
    """The values of ``metric`` the receipts function wrote as embedded metrics (with its service dimension)."""
    values: list[float] = []
    for line in stdout.splitlines():
        if '"_aws"' in line and f'"{metric}"' in line:
            blob = json.loads(line)
            assert blob["service"] == "receipts"
            value = blob[metric]
            values += value if isinstance(value, list) else [value]
    return values


@pytest.fixture
def receipts_function(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The receipts handler, imported as Lambda would with the template's POWERTOOLS_SERVICE_NAME."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "receipts")
    yield importlib.reload(receipts_app).lambda_handler
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")
    importlib.reload(receipts_app)


@pytest.fixture
def tenants(aws: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """acme and globex with receipt queues, initech without one: the registry ReceiptsFunction reads."""
    queues = {tenant: create_queue(f"{tenant}-receipts")[0] for tenant in ("acme", "globex")}
    registry = {
        "acme": {"namespace": "tenant-acme", "receipts": queues["acme"]},
        "globex": {"namespace": "tenant-globex", "receipts": queues["globex"]},
        "initech": "tenant-initech",
    }
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    reset_worker_dependencies()
    return queues


@pytest.fixture
def retry(aws: str, receipts_function: Any) -> tuple[SqsDriver, str]:
    """The retry queue, delivered to ReceiptsFunction as its event source mapping would; and its DLQ's URL."""
    url, arn, dlq_url = retry_queues()
    return SqsDriver(url, arn, receipts_function), dlq_url


def deliver(driver: SqsDriver) -> dict[str, Any] | None:
    return driver.deliver_once(FakeLambdaContext(remaining_ms=FUNCTION_TIMEOUT_MS))


def test_a_retried_receipt_lands_on_its_tenant_s_receipt_queue_as_the_relay_wrote_it(
    tenants: dict[str, str], retry: tuple[SqsDriver, str], capsys: pytest.CaptureFixture[str]
) -> None:
    driver, dlq_url = retry
    receipt = a_receipt("acme")
    driver.publish([receipt])
    capsys.readouterr()

    assert deliver(driver) == {"batchItemFailures": []}

    assert bodies(tenants["acme"]) == [receipt]
    assert bodies(tenants["globex"]) == []
    assert driver.held() == 0
    assert bodies(dlq_url) == []
    assert metric_values(capsys.readouterr().out, "ReceiptsResent") == [1.0]


def test_a_receipt_whose_tenant_has_no_receipt_queue_now_is_dropped_and_acknowledged(
    tenants: dict[str, str], retry: tuple[SqsDriver, str], capsys: pytest.CaptureFixture[str]
) -> None:
    driver, dlq_url = retry
    driver.publish([a_receipt("initech"), a_receipt("hooli")])  # no receipt queue; no longer in the registry
    capsys.readouterr()

    assert deliver(driver) == {"batchItemFailures": []}

    assert driver.held() == 0
    assert bodies(dlq_url) == []
    assert bodies(tenants["acme"]) == bodies(tenants["globex"]) == []
    assert metric_values(capsys.readouterr().out, "ReceiptsDropped") == [1.0, 1.0]


def test_a_receipt_whose_queue_is_missing_is_a_batch_item_failure_sent_once_the_queue_is_back(
    tenants: dict[str, str], retry: tuple[SqsDriver, str]
) -> None:
    driver, dlq_url = retry
    sqs = boto3.client("sqs")
    sqs.delete_queue(QueueUrl=tenants["acme"])  # the registry still names it
    waiting, other = a_receipt("acme"), a_receipt("globex", message_id="7d3e1c2a-0000-4000-8000-000000000002")
    driver.publish([waiting, other, "not a receipt"])
    by_body = {
        message["Body"]: message["MessageId"]
        for message in sqs.receive_message(QueueUrl=driver.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)[
            "Messages"
        ]
    }

    response = deliver(driver)

    # only acme's is retried: the others in its batch are done
    assert response == {"batchItemFailures": [{"itemIdentifier": by_body[waiting]}]}
    assert bodies(tenants["globex"]) == [other]
    assert driver.held() == 1

    create_queue("acme-receipts")  # the tenant's queue is back under the same name
    assert deliver(driver) == {"batchItemFailures": []}

    assert bodies(tenants["acme"]) == [waiting]
    assert driver.held() == 0
    assert bodies(dlq_url) == []


def test_a_receipt_whose_queue_stays_missing_is_parked_in_the_dlq_after_the_redrive_limit(
    tenants: dict[str, str], retry: tuple[SqsDriver, str]
) -> None:
    driver, dlq_url = retry
    boto3.client("sqs").delete_queue(QueueUrl=tenants["acme"])
    receipt = a_receipt("acme")
    driver.publish([receipt])

    failures = 0
    while (response := deliver(driver)) is not None:  # SQS's redrive policy moves it on the next receive
        assert [item["itemIdentifier"] for item in response["batchItemFailures"]] != []
        failures += 1

    assert failures == RETRY_MAX_RECEIVE_COUNT
    assert bodies(dlq_url) == [receipt]  # parked as it was, for the operator (ReceiptRetryDeadLetterQueueNotEmptyAlarm)


def test_a_body_that_is_not_a_receipt_is_acknowledged_and_counted_and_never_logged(
    tenants: dict[str, str],
    retry: tuple[SqsDriver, str],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver, dlq_url = retry
    forged = json.loads(a_receipt("acme")) | {"note": NOT_TO_BE_LOGGED}  # a field the contract does not have
    driver.publish([f"not json {NOT_TO_BE_LOGGED}", json.dumps({"tenant": NOT_TO_BE_LOGGED}), json.dumps(forged)])
    capsys.readouterr()
    caplog.set_level(logging.DEBUG)

    assert deliver(driver) == {"batchItemFailures": []}

    out = capsys.readouterr()
    assert metric_values(out.out, "ReceiptsInvalid") == [1.0, 1.0, 1.0]
    warnings = [record for record in caplog.records if record.getMessage() == "not a write receipt; dropped"]
    assert [(record.levelname, getattr(record, "error", None)) for record in warnings] == [
        ("WARNING", "ValidationError")
    ] * 3
    logged = [repr(vars(record)) for record in caplog.records]  # messages, arguments and extra fields
    assert not [line for line in [*logged, out.out, out.err] if NOT_TO_BE_LOGGED in line]
    assert driver.held() == 0
    assert bodies(dlq_url) == []
    assert bodies(tenants["acme"]) == []  # nothing forged reached a tenant


# ---------------------------------------------------------------- the ingest side


def upsert(record_id: str, version: int) -> str:
    record = {"id": record_id, "version": version, "values": [0.5] * SAMPLE_DIMENSION}
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [record]})


def test_receipts_a_deleted_receipt_queue_refuses_go_to_the_retry_queue_and_the_write_is_not_redelivered(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, receipts_function: Any
) -> None:
    sqs = boto3.client("sqs")
    acme_receipts, _ = create_queue("acme-receipts")
    sqs.delete_queue(QueueUrl=acme_receipts)  # deleted; the registry still names it
    retry_url, retry_arn, retry_dlq_url = retry_queues()
    registry = {"acme": {"namespace": "tenant-acme", "receipts": acme_receipts}, "globex": "tenant-globex"}
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    monkeypatch.setenv("RECEIPT_RETRY_QUEUE_URL", retry_url)
    get_settings.cache_clear()
    reset_worker_dependencies()
    message_id = sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=upsert("a", 4))["MessageId"]
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)

    assert ingest.deliver_once() == {"batchItemFailures": []}

    # the write landed once and its message is done; only its receipt waits, on the retry queue
    assert ingest.held() == 0
    assert pipeline.drain() == []
    assert set(pipeline.fetch("acme", ["a"])) == {"a"}
    [waiting] = bodies(retry_url)
    receipt = Receipt.model_validate_json(waiting)
    assert (receipt.message_id, receipt.fate, receipt.records[0].id, receipt.records[0].version) == (
        message_id,
        "applied",
        "a",
        4,
    )

    # once the tenant's queue is back, ReceiptsFunction delivers it; nothing is written again
    create_queue("acme-receipts")
    sqs.send_message(QueueUrl=retry_url, MessageBody=waiting)
    assert SqsDriver(retry_url, retry_arn, receipts_function).deliver_once(FakeLambdaContext(remaining_ms=30_000)) == {
        "batchItemFailures": []
    }
    assert bodies(acme_receipts) == [waiting]
    assert bodies(retry_dlq_url) == []
    assert ingest.held() == 0  # the write's message was not sent again: its receipt went on alone
