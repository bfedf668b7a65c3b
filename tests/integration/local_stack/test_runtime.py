"""Functions under the real awslambdaric, in their own process, against the local Runtime API."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3

from relay_local.cloudformation import ROOT
from relay_local.runtime import FunctionRuntimeConfig, RuntimeEnvironment
from tests.conftest import load_event
from tests.integration.conftest import Pipeline
from tests.unit.test_events import documented_poison

FUNCTION_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "PINECONE_SECRET_ARN",
    "PINECONE_INDEX_HOST",
    "PINECONE_INDEX_NAME",
    "PINECONE_INDEX_DIMENSION",
    "PINECONE_INDEX_METRIC",
    "PINECONE_CONTROL_HOST",
    "TENANT_REGISTRY",
    "DEAD_LETTER_QUEUE_URL",
    "SOURCE_QUEUE_MAX_RECEIVE_COUNT",
)


def runtime_config(code_dir: Path, timeout: float = 30, handler: str = "app.lambda_handler") -> FunctionRuntimeConfig:
    return FunctionRuntimeConfig(
        name="vector-relay-test-ingest",
        arn="arn:aws:lambda:us-east-1:123456789012:function:vector-relay-test-ingest",
        code_dir=code_dir,
        handler=handler,
        timeout_seconds=timeout,
        memory_mb=512,
        environment={name: os.environ[name] for name in FUNCTION_VARIABLES if name in os.environ}
        | {"POWERTOOLS_SERVICE_NAME": "ingest"},
        layer_dirs=(ROOT / "shared",),
        python=sys.executable,
    )


def test_ingest_under_awslambdaric_answers_a_batch_and_its_writes_land(pipeline: Pipeline, tmp_path: Path) -> None:
    # GIVEN the ingest function in its own awslambdaric process, configured like the deployed one
    log = (tmp_path / "ingest.log").open("w")
    environment = RuntimeEnvironment(runtime_config(ROOT / "functions" / "ingest"), log=log)
    try:
        # WHEN the mixed batch (valid upserts around every kind of poison) is invoked, then invoked again warm
        event = load_event("ingest-mixed-with-poison")
        first = environment.invoke(event)
        second = environment.invoke(load_event("ingest-delete"))
    finally:
        environment.close()
        log.close()

    # THEN the runtime answered Lambda's partial batch response, cold then warm ...
    assert (first.outcome, first.payload, first.cold_start) == ("ok", {"batchItemFailures": []}, True)
    assert (second.outcome, second.payload, second.cold_start) == ("ok", {"batchItemFailures": []}, False)
    # ... the poison went to the DLQ and the valid writes reached the emulator (then doc-42#1 was deleted)
    assert len(pipeline.drain()) == len(documented_poison()["ingest-mixed-with-poison"])
    assert set(pipeline.fetch("acme", ["doc-42#0", "doc-42#1"])) == {"doc-42#0"}
    assert set(pipeline.fetch("globex", ["kb-7#0"])) == {"kb-7#0"}
    # ... and the function's own logs (Powertools JSON) came out of the runtime process
    assert '"service":"ingest"' in (tmp_path / "ingest.log").read_text().replace(" ", "")


def test_the_runtime_passes_lambdas_context_and_reports_errors_and_timeouts(aws: str, tmp_path: Path) -> None:
    # GIVEN a handler that answers with its context, raises on request, or sleeps far past its 3 s timeout
    # (3 s: the quick answers fit however busy the machine; 600 s: the sleeper never finishes in time)
    (tmp_path / "probe.py").write_text(
        "import time\n"
        "def handler(event, context):\n"
        "    if event.get('raise'):\n"
        "        raise ValueError('asked to fail')\n"
        "    if event.get('sleep'):\n"
        "        time.sleep(event['sleep'])\n"
        "    return {'name': context.function_name, 'arn': context.invoked_function_arn,\n"
        "            'request_id': context.aws_request_id, 'remaining_ms': context.get_remaining_time_in_millis(),\n"
        "            'memory': context.memory_limit_in_mb}\n"
    )
    environment = RuntimeEnvironment(runtime_config(tmp_path, timeout=3, handler="probe.handler"))
    try:
        answer = environment.invoke({})
        error = environment.invoke({"raise": True})
        timeout = environment.invoke({"sleep": 600})
        alive_after_timeout = environment.alive
    finally:
        environment.close()

    assert answer.outcome == "ok"
    assert answer.payload["name"] == "vector-relay-test-ingest"
    assert answer.payload["arn"].endswith(":function:vector-relay-test-ingest")
    assert answer.payload["request_id"] == answer.request_id
    assert 0 < answer.payload["remaining_ms"] <= 3000
    assert answer.payload["memory"] == "512"
    assert error.outcome == "error"
    assert (error.payload["errorType"], error.payload["errorMessage"]) == ("ValueError", "asked to fail")
    assert timeout.outcome == "timeout"
    assert timeout.error_type == "Sandbox.Timedout"
    assert not alive_after_timeout  # Lambda stops a timed-out environment
    # no AWS call was made: the moto fixture is only here for a clean environment
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []
