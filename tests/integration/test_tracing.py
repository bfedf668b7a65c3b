"""One invocation's trace, as X-Ray would get it: the handlers traced as in Lambda, against moto's server and
the Pinecone emulator, their subsegments collected over the X-Ray daemon's UDP protocol on loopback
(relay_local.xray_collector). The trace shows what the invocation did, and nothing of what it carried.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from functions.receipts import app as receipts_app
from relay_local.xray_collector import TraceNode, XRayCollector, trace_tree
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_REPLY_QUEUE
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_receipt_retry import a_receipt, create_queue
from tests.xray_tracing import Invocations, lambda_tracing
from vector_relay.dependencies import reset_worker_dependencies

SECRET_WORDS = "never-in-a-trace-7f3a"


def vector(seed: int, dimension: int = SAMPLE_DIMENSION) -> list[float]:
    """Values with 12 decimals: none can be part of a trace's timestamps (7 decimals at most) by chance."""
    rng = random.Random(seed)
    return [round(rng.uniform(-1, 1), 12) for _ in range(dimension)]


@pytest.fixture
def xray(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[XRayCollector, Invocations]]:
    """Tracing on for the functions in this process, sending to a collector as they would to the daemon."""
    with XRayCollector() as collector:
        monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", collector.address)
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
        with lambda_tracing(monkeypatch, emitter=UDPEmitter(collector.address)) as invocations:
            yield collector, invocations


def collected(collector: XRayCollector, invocations: Invocations, trace_id: str) -> TraceNode:
    """The trace's handler subsegment, once it arrived (it is sent last, when the handler returns)."""
    documents = collector.wait_for(
        lambda docs: any(d.get("trace_id") == trace_id and d.get("name") == "## lambda_handler" for d in docs),
        timeout=60,  # a verdict, not a race: loopback UDP read by another thread of a busy machine
    )
    [handler] = trace_tree(documents, trace_id)
    assert handler.name == "## lambda_handler"
    assert handler.parent_id == invocations.facade_ids[trace_id]  # under the segment the Lambda service writes
    return handler


@pytest.fixture
def acme_receipts(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> str:
    """acme's registry entry names a receipt queue (globex's does not); its URL."""
    queue = boto3.client("sqs").create_queue(QueueName="acme-receipts")["QueueUrl"]
    registry = {"acme": {"namespace": "tenant-acme", "receipts": queue}, "globex": "tenant-globex"}
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(registry))
    reset_worker_dependencies()
    return str(queue)


def assert_carries_nothing_of(collector: XRayCollector, secrets: list[str]) -> None:
    text = json.dumps(collector.documents()) + "".join(d.decode(errors="replace") for d in collector.rejected)
    assert collector.documents()
    found = [secret for secret in secrets if secret in text]
    assert found == [], f"a trace carries {found[:3]}"


def test_an_ingest_invocation_traces_its_claim_pinecone_request_and_dead_letter_and_nothing_it_carried(
    pipeline: Pipeline, xray: tuple[XRayCollector, Invocations], acme_receipts: str
) -> None:
    collector, invocations = xray
    # GIVEN a batch of one upsert and one poison message (a vector of the wrong dimension), both acme's,
    # whose fates acme is told on its receipt queue
    values, wrong = vector(1), vector(2, dimension=3)
    metadata = {"owner": SECRET_WORDS, "weight": 271828.182818}
    upsert = {"id": "doc-trace#0", "version": 1, "values": values, "metadata": metadata}
    good = json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [upsert]})
    poison = json.dumps(
        {"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [{**upsert, "values": wrong}]}
    )
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([good, poison])

    # WHEN one invocation handles it, traced as Lambda traces it
    trace_id = invocations.new_trace()
    assert driver.deliver_once() == {"batchItemFailures": []}

    # THEN the batch did what it always does ...
    assert set(pipeline.fetch("acme", ["doc-trace#0"])) == {"doc-trace#0"}
    [dead] = pipeline.drain()
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "dimension_mismatch"
    # ... and its trace says so: the handler's subsegment, annotated with the tenant and the outcome
    handler = collected(collector, invocations, trace_id)
    tree = handler.render()
    assert handler.annotations["tenant"] == "acme", tree
    assert handler.annotations["outcome"] == "dead_lettered", tree
    assert handler.annotations["Service"] == "ingest"
    assert handler.metadata["vector_relay"]["batch"] == {
        "messages": 2,
        "valid": 1,
        "dead_lettered": 1,
        "retried": 0,
        "tenants": ["acme"],
    }
    # under it: one claim of the guard, the Pinecone upsert it admitted, the release, the dead-letter send,
    # and the receipts sent after the batch
    names = sorted(child.name for child in handler.children)
    assert names == ["dead-letter send", "guard claim", "guard release", "pinecone upsert", "receipt send"], tree
    [claim], [request], [sent] = (
        handler.find("guard claim"),
        handler.find("pinecone upsert"),
        handler.find("dead-letter send"),
    )
    assert claim.metadata["vector_relay"] == {
        "namespace": "tenant-acme",
        "records": 1,
        "claimed": 1,
        "stale": 0,
        "busy": 0,
    }
    assert request.document["namespace"] == "remote"
    assert request.metadata["vector_relay"]["namespace"] == "tenant-acme"
    assert request.metadata["vector_relay"]["records"] == 1
    assert claim.document["end_time"] <= request.document["start_time"]  # the request waited for its claim
    assert sent.annotations == {"error_code": "dimension_mismatch"}
    assert sent.metadata["vector_relay"]["message_id"] == dead["MessageAttributes"]["source_message_id"]["StringValue"]
    [told] = handler.find("receipt send")
    assert told.metadata["vector_relay"] == {"receipts": 2, "sent": 2, "retried": 0, "lost": 0}
    assert sorted(json.loads(m["Body"])["fate"] for m in pipeline.drain(acme_receipts)) == [
        "applied",
        "dead_lettered",
    ]
    assert [node.name for node in handler.walk() if node.document.get("error") or node.document.get("fault")] == []
    # and no trace document carries the key, a vector value, a metadata value or a message body
    assert_carries_nothing_of(
        collector,
        [pipeline.emulator.api_key, good, poison, SECRET_WORDS, "271828.18", *map(repr, values + wrong)],
    )


def test_a_query_invocation_traces_its_pinecone_query_and_reply_and_not_the_vector(
    pipeline: Pipeline, xray: tuple[XRayCollector, Invocations], monkeypatch: pytest.MonkeyPatch
) -> None:
    collector, invocations = xray
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "query")
    probe = vector(3)
    query: dict[str, Any] = {
        "schema_version": 1,
        "op": "query",
        "tenant": "globex",
        "reply_to": SAMPLE_REPLY_QUEUE,
        "vector": probe,
        "top_k": 3,
        "filter": {"owner": {"$eq": SECRET_WORDS}},
        "correlation_id": "c-trace",
    }
    driver = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    driver.publish([json.dumps(query)])

    trace_id = invocations.new_trace()
    assert driver.deliver_once() == {"batchItemFailures": []}

    [reply] = [json.loads(m["Body"]) for m in pipeline.drain(pipeline.reply_queue_url)]
    assert (reply["status"], reply["correlation_id"]) == ("ok", "c-trace")
    handler = collected(collector, invocations, trace_id)
    tree = handler.render()
    assert (handler.annotations["tenant"], handler.annotations["outcome"]) == ("globex", "ok"), tree
    assert sorted(child.name for child in handler.children) == ["pinecone query", "reply send"], tree
    [asked], [replied] = handler.find("pinecone query"), handler.find("reply send")
    assert asked.annotations == {"tenant": "globex"}
    assert asked.metadata["vector_relay"]["namespace"] == "tenant-globex"
    assert asked.metadata["vector_relay"]["top_k"] == 3
    assert replied.metadata["vector_relay"] == {"replies": 1, "refused": 0}
    assert_carries_nothing_of(
        collector, [pipeline.emulator.api_key, json.dumps(query), SECRET_WORDS, *map(repr, probe)]
    )


def test_the_receipts_function_traces_each_resend_with_its_tenant(
    pipeline: Pipeline, xray: tuple[XRayCollector, Invocations], acme_receipts: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector, invocations = xray
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "receipts")
    retry_url, retry_arn = create_queue("receipt-retry")
    receipt = a_receipt("acme")
    driver = SqsDriver(retry_url, retry_arn, receipts_app.lambda_handler)
    driver.publish([receipt])

    trace_id = invocations.new_trace()
    assert driver.deliver_once() == {"batchItemFailures": []}

    assert [m["Body"] for m in pipeline.drain(acme_receipts)] == [receipt]
    handler = collected(collector, invocations, trace_id)
    assert [(child.name, child.annotations) for child in handler.children] == [
        ("receipt resend", {"tenant": "acme"})
    ], handler.render()
    assert_carries_nothing_of(collector, [receipt])
