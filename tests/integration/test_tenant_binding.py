"""Tenant binding: a tenant's own queues speak only for it, and it is reached through no other queue.

The registry binds acme to its own ingest and query queues (each with its own DLQ) and its own
reply queue; globex stays in shared-queue mode. Messages are delivered the way Lambda delivers
them, with the source queue's ARN, to the real handlers (moto's server and the emulator over HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import SAMPLE_REPLY_QUEUE
from tests.integration.conftest import Pipeline, SqsDriver, parametrize_transports
from tests.integration.test_ingest import upsert_body, vector
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str


@dataclass(frozen=True)
class AcmeQueues:
    ingest: Queue
    ingest_dlq: Queue
    query: Queue
    query_dlq: Queue
    replies: Queue


def make_queue(name: str, dead_letter: Queue | None = None) -> Queue:
    sqs = boto3.client("sqs")
    attributes = {"VisibilityTimeout": "420"}
    if dead_letter is not None:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dead_letter.arn, "maxReceiveCount": "5"})
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Queue(url, arn)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test on the pipeline runs over REST and over gRPC


@pytest.fixture
def acme(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[AcmeQueues]:
    """What templates/tenant.yaml deploys for acme, and the registry entry that binds acme to it."""
    ingest_dlq = make_queue("relay-tenant-acme-ingest-dlq")
    query_dlq = make_queue("relay-tenant-acme-query-dlq")
    queues = AcmeQueues(
        ingest=make_queue("relay-tenant-acme-ingest", ingest_dlq),
        ingest_dlq=ingest_dlq,
        query=make_queue("relay-tenant-acme-query", query_dlq),
        query_dlq=query_dlq,
        replies=make_queue("relay-tenant-acme-replies"),
    )
    registry = {
        "acme": {
            "namespace": "tenant-acme",
            "queues": [queues.ingest.arn, queues.query.arn],
            "reply_queues": [queues.replies.url],
        },
        "globex": "tenant-globex",
    }
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    get_settings.cache_clear()
    reset_worker_dependencies()
    yield queues
    reset_worker_dependencies()


def drain(pipeline: Pipeline, queue: Queue | str) -> list[dict[str, Any]]:
    return pipeline.drain(queue if isinstance(queue, str) else queue.url)


def codes(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["MessageAttributes"]["error_code"]["StringValue"] for m in messages)


def test_ingest_through_a_tenant_s_own_queue_and_the_shared_one(pipeline: Pipeline, acme: AcmeQueues) -> None:
    # GIVEN batches on acme's own queue and on the shared queue, each mixing allowed and refused tenants
    own = SqsDriver(acme.ingest.url, acme.ingest.arn, ingest_app.lambda_handler)
    own.publish([upsert_body("acme", ["a-own"]), upsert_body("globex", ["g-via-acme"])])
    shared = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    shared.publish([upsert_body("acme", ["a-via-shared"]), upsert_body("globex", ["g-shared"])])

    # WHEN each batch is delivered once
    assert own.deliver_once() == {"batchItemFailures": []}
    assert shared.deliver_once() == {"batchItemFailures": []}

    # THEN each queue speaks only for whom it may, the refused are dead-lettered on first receive in
    # their own queue's DLQ, and their batch-mates land
    assert set(pipeline.fetch("acme", ["a-own", "a-via-shared"])) == {"a-own"}
    assert set(pipeline.fetch("globex", ["g-via-acme", "g-shared"])) == {"g-shared"}
    in_acme_dlq = drain(pipeline, acme.ingest_dlq)
    assert codes(in_acme_dlq) == ["tenant_not_bound"]
    assert (
        "this queue is bound to tenant 'acme'; the message names another"
        in (in_acme_dlq[0]["MessageAttributes"]["error_detail"]["StringValue"])
    )
    in_shared_dlq = drain(pipeline, pipeline.dlq_url)
    assert codes(in_shared_dlq) == ["tenant_not_bound"]
    assert json.loads(in_shared_dlq[0]["Body"])["tenant"] == "acme"


def query_body(tenant: str, reply_to: str, correlation_id: str, **extra: Any) -> str:
    body = {
        "schema_version": 1,
        "op": "query",
        "tenant": tenant,
        "reply_to": reply_to,
        "correlation_id": correlation_id,
        "vector": vector(3),
        "top_k": 2,
    }
    return json.dumps(body | extra)


def test_queries_are_answered_only_on_their_tenant_s_reply_queues(pipeline: Pipeline, acme: AcmeQueues) -> None:
    own = SqsDriver(acme.query.url, acme.query.arn, query_app.lambda_handler)
    own.publish(
        [
            query_body("acme", acme.replies.url, "acme-ok"),
            query_body("acme", SAMPLE_REPLY_QUEUE, "acme-to-global"),  # not acme's reply queue
            query_body("globex", SAMPLE_REPLY_QUEUE, "globex-via-acme"),  # acme's queue acting for globex
            query_body("globex", SAMPLE_REPLY_QUEUE, "bad-via-acme", top_k=0),  # invalid too: still no reply
        ]
    )
    shared = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    shared.publish(
        [
            query_body("acme", acme.replies.url, "acme-via-shared"),
            query_body("globex", SAMPLE_REPLY_QUEUE, "globex-ok"),
            query_body("globex", acme.replies.url, "globex-to-acme-replies"),  # another tenant's reply queue
        ]
    )

    assert own.deliver_once() == {"batchItemFailures": []}
    assert shared.deliver_once() == {"batchItemFailures": []}

    acme_replies = [json.loads(m["Body"]) for m in drain(pipeline, acme.replies)]
    assert [(r["correlation_id"], "error" in r) for r in acme_replies] == [("acme-ok", False)]
    global_replies = [json.loads(m["Body"]) for m in drain(pipeline, pipeline.reply_queue_url)]
    assert [(r["correlation_id"], "error" in r) for r in global_replies] == [("globex-ok", False)]
    # the invalid one from acme's queue for globex is dead-lettered with its own code, and answered nowhere
    assert codes(drain(pipeline, acme.query_dlq)) == ["reply_to_not_allowed", "tenant_not_bound", "top_k_out_of_range"]
    assert codes(drain(pipeline, pipeline.dlq_url)) == ["reply_to_not_allowed", "tenant_not_bound"]
