"""The local stack for integration tests: moto's server and the Pinecone emulator, both over real HTTP.

``pipeline`` sets up what a deployed stack has: an ingest queue with a DLQ and redrive policy, the
API-key secret, the sample tenants, and an index in the emulator. ``SqsDriver`` delivers queue
messages to a handler the way Lambda's event source mapping does (batches shaped as Lambda
builds them, successes deleted, failures made visible again, redrive by receive count).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from pinecone import Admin, Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle, pinecone_emulator, pinecone_emulator_server
from relay_local.dynamodb_faults import DynamoDBFaultProxy
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE, SAMPLE_TENANTS, FakeLambdaContext
from tests.lambda_events import lambda_sqs_record
from vector_relay import aws_clients
from vector_relay.aws_clients import clear_client_caches
from vector_relay.dependencies import reset_worker_dependencies

__all__ = [
    "Pipeline",
    "SqsDriver",
    "debug_logging",
    "dynamodb_faults",
    "log_level",
    "pinecone_emulator",
    "pinecone_emulator_server",
    "pipeline",
]


@pytest.fixture(autouse=True)
def guard_calls_outlast_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The version guard's DynamoDB calls in this process wait up to 60 s for moto, not 1.5 s.

    As deployed a guard call has one attempt of 0.5 s to connect and 1.5 s to answer (GUARD_PROFILE):
    DynamoDB answers in milliseconds. moto's server on a loaded 2-core machine can take longer, and a
    test here judges what the guard decides, not how fast moto answers (a reconciler test failed in a
    repeat run with two CPU burners on a 1.5 s read timeout). The deployed timeouts are held by
    tests/unit/test_version_guard_timing.py and test_aws_time_box.py; functions run as processes
    (the chaos run, the local stack) keep them.
    """
    monkeypatch.setattr(
        aws_clients, "GUARD_CONFIG", aws_clients.GUARD_CONFIG.merge(Config(read_timeout=60, connect_timeout=10))
    )
    clear_client_caches()


INDEX_NAME = "relay-test"
REGION = "us-east-1"


@dataclass
class Pipeline:
    emulator: EmulatorHandle
    index: Any  # the SDK's sync Index on the emulator, for reading back what landed
    queue_url: str
    queue_arn: str
    dlq_url: str
    secret_arn: str
    reply_queue_url: str
    query_queue_url: str
    query_queue_arn: str

    def fetch(self, tenant: str, ids: list[str]) -> dict[str, Any]:
        response = self.index.fetch(ids=ids, namespace=SAMPLE_TENANTS[tenant])
        return dict(response.vectors)

    def admin(self) -> Admin:
        """The emulator's Admin API as the service account (to mint and revoke keys)."""
        e = self.emulator
        return Admin(client_id=e.client_id, client_secret=e.client_secret, host=e.url, oauth_url=e.oauth_url)

    def put_key(self, value: str, key_id: str = "") -> None:
        """Make ``value`` the API-key secret's current version, as an operator or rotation would."""
        secret = {"api_key": value, "key_id": key_id} if key_id else {"api_key": value}
        boto3.client("secretsmanager").put_secret_value(SecretId=self.secret_arn, SecretString=json.dumps(secret))

    def namespace_count(self, tenant: str) -> int:
        stats = self.index.describe_index_stats()
        namespace = stats.namespaces.get(SAMPLE_TENANTS[tenant])
        return int(namespace.vector_count) if namespace else 0

    def drain(self, queue_url: str | None = None) -> list[dict[str, Any]]:
        """Every message on the queue (the DLQ by default), removed."""
        sqs = boto3.client("sqs")
        url = queue_url or self.dlq_url
        messages: list[dict[str, Any]] = []
        while batch := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
        ).get("Messages", []):
            messages.extend(batch)
            sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
            )
        return messages


@pytest.fixture
def debug_logging(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Every log level a deployment can turn to DEBUG, at DEBUG, with every record captured by ``caplog``.

    Lambda's advanced logging controls (``ApplicationLogLevel=DEBUG``) set ``AWS_LAMBDA_LOG_LEVEL``
    and the runtime sets the root logger from it; the template's ``LogLevel`` is Powertools'
    ``POWERTOOLS_LOG_LEVEL``. The functions' Powertools loggers were built when their modules were
    imported, so their level is set here as the environment would have set it. The Pinecone SDK's
    own switch for logging requests (``PINECONE_DEBUG_CURL``) is on too.
    """
    from functions.ingest import app as ingest_app
    from functions.query import app as query_app
    from functions.rotate_key import app as rotate_app

    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("PINECONE_DEBUG_CURL", "1")
    caplog.set_level(logging.DEBUG)  # the root logger, as Lambda's runtime sets it from AWS_LAMBDA_LOG_LEVEL
    for app in (ingest_app, query_app, rotate_app):
        caplog.set_level(logging.DEBUG, logger=app.logger.name)


@pytest.fixture(params=["default", "DEBUG"])
def log_level(request: pytest.FixtureRequest) -> str:
    """Runs a test at the functions' default log level and again with every level at DEBUG (``debug_logging``)."""
    if request.param == "DEBUG":
        request.getfixturevalue("debug_logging")
    return str(request.param)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """The workers' PINECONE_TRANSPORT: "rest" unless a test module parametrizes it (see TRANSPORTS)."""
    return str(getattr(request, "param", "rest"))


TRANSPORTS = ["rest", "grpc"]


def parametrize_transports(metafunc: pytest.Metafunc) -> None:
    """Run each test of a module that uses the pipeline once per transport (call from pytest_generate_tests)."""
    if "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", TRANSPORTS, indirect=True)


@pytest.fixture
def pipeline(
    aws: str,
    sample_settings: None,
    pinecone_emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> Iterator[Pipeline]:
    sqs = boto3.client("sqs")
    dlq_url = sqs.create_queue(QueueName="ingest-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName="ingest",
        Attributes={
            "VisibilityTimeout": "420",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    query_queue_url = sqs.create_queue(
        QueueName="query",
        Attributes={
            "VisibilityTimeout": "190",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    query_queue_arn = sqs.get_queue_attributes(QueueUrl=query_queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    reply_queue_url = sqs.create_queue(QueueName=SAMPLE_REPLY_QUEUE.rsplit("/", 1)[1])["QueueUrl"]
    bucket = "vector-relay-query-results"
    boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("QUERY_RESULTS_BUCKET", bucket)
    create_version_table("relay-write-versions")
    monkeypatch.setenv("WRITE_VERSION_TABLE", "relay-write-versions")
    secret = {"api_key": pinecone_emulator.api_key, "key_id": "initial", "project_id": pinecone_emulator.project_id}
    secret_arn = boto3.client("secretsmanager").create_secret(Name="pinecone-api-key", SecretString=json.dumps(secret))[
        "ARN"
    ]
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index(
        name=INDEX_NAME, dimension=SAMPLE_DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region=REGION)
    )
    host = pinecone_emulator.index_host(INDEX_NAME)
    monkeypatch.setenv("PINECONE_SECRET_ARN", secret_arn)
    monkeypatch.setenv("PINECONE_INDEX_HOST", host)
    monkeypatch.setenv("PINECONE_INDEX_NAME", INDEX_NAME)
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pinecone_emulator.url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", dlq_url)
    monkeypatch.setenv("SOURCE_QUEUE_MAX_RECEIVE_COUNT", "5")
    monkeypatch.setenv("PINECONE_TRANSPORT", transport)
    if transport == "grpc":
        monkeypatch.setenv("PINECONE_GRPC_HOST", pinecone_emulator.control.grpc_host(INDEX_NAME))
    index = client.Index(host=host)
    yield Pipeline(
        pinecone_emulator,
        index,
        queue_url,
        queue_arn,
        dlq_url,
        secret_arn,
        reply_queue_url,
        query_queue_url,
        query_queue_arn,
    )
    index.close()
    client.close()


@pytest.fixture
def dynamodb_faults(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBFaultProxy]:
    """Every DynamoDB client of the test talks to moto through a fault proxy (relay_local.dynamodb_faults).

    Only DynamoDB (``AWS_ENDPOINT_URL_DYNAMODB``): the other services still go to moto directly. No
    rule is in force until the test adds one; held and delayed requests are forgotten at the end.
    """
    with DynamoDBFaultProxy(aws, seed=DYNAMODB_FAULT_SEED) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        clear_client_caches()  # clients built before this point would still talk to moto directly
        reset_worker_dependencies()
        yield proxy


DYNAMODB_FAULT_SEED = 20261127


def create_version_table(name: str) -> None:
    """The WriteVersionTable of template.yaml, in moto."""
    boto3.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "namespace", "AttributeType": "S"},
            {"AttributeName": "record_id", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "namespace", "KeyType": "HASH"},
            {"AttributeName": "record_id", "KeyType": "RANGE"},
        ],
    )


Handler = Callable[[dict[str, Any], Any], Any]


class SqsDriver:
    """Delivers a queue's messages to a handler as Lambda's SQS event source mapping does."""

    def __init__(self, queue_url: str, queue_arn: str, handler: Handler, *, batch_size: int = 10) -> None:
        self.sqs = boto3.client("sqs")
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.batch_size = batch_size
        self.invocations = 0

    def publish(self, bodies: list[str]) -> None:
        """Send in batches of at most 10 messages and 1 MiB, as SQS requires."""
        batch: list[str] = []
        for body in [*bodies, None]:
            full = body is None or len(batch) == 10 or sum(map(len, batch)) + len(body) > 1_000_000
            if full and batch:
                entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]
                self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
                batch = []
            if body is not None:
                batch.append(body)

    def deliver_once(self, context: FakeLambdaContext | None = None) -> dict[str, Any] | None:
        """One invocation with up to ``batch_size`` messages; None when the queue had nothing visible."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.batch_size, 10),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return None
        event = {"Records": [lambda_sqs_record(m, self.queue_arn, REGION) for m in messages]}
        self.invocations += 1
        try:
            response = self.handler(event, context or FakeLambdaContext())
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:  # a function error: Lambda returns the whole batch to the queue
            response = None
            failed = {m["MessageId"] for m in messages}
        for message in messages:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return response or {"batchItemFailures": [{"itemIdentifier": m} for m in sorted(failed)]}

    def held(self) -> int:
        """Messages the queue still holds: visible, in flight, or delayed (a copy requeued on its last delivery)."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
        return sum(int(attributes.get(name, 0)) for name in names)

    def run_until_empty(self, max_invocations: int = 100) -> None:
        for _ in range(max_invocations):
            if self.deliver_once() is None:
                return
        raise AssertionError(f"queue not drained after {max_invocations} invocations")
