"""The local stack's CloudWatch has real series after traffic, as a deployed stack's has: the functions' EMF
metrics (extracted from their output as CloudWatch Logs does), and what Lambda and SQS publish themselves."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from relay_local.provisioning import aws_client
from relay_local.runtime import FunctionRuntimeConfig, RuntimeEnvironment
from relay_local.stack import LocalStack, StackOptions
from tests.conftest import SAMPLE_DIMENSION, reset_moto, wait_until

CEILING = 180.0  # seconds: a verdict, not a race (a busy 2-core machine starts a stack in ~10 s)


def series(cloudwatch: Any, since: datetime, namespace: str, name: str, dimensions: dict[str, str]) -> list[float]:
    """The metric's sums per minute since ``since``, as GetMetricData answers."""
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
    )
    return [float(v) for v in answer["MetricDataResults"][0]["Values"]]


def test_an_upsert_through_the_stack_shows_in_cloudwatch_as_relay_lambda_and_sqs_metrics(
    tmp_path: Path, moto_server_url: str
) -> None:
    reset_moto(moto_server_url)  # in-process moto: nothing an earlier test left may count here
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    options = StackOptions(
        state_dir=tmp_path, parameters={"IngestBatchingWindowSeconds": "1"}, queue_metrics_seconds=1.0
    )
    with LocalStack(options, progress=lambda line: None) as stack:
        info = stack.info
        assert info is not None
        cloudwatch = aws_client("cloudwatch", info.aws_endpoint, info.region)
        ingest_function = str(info.functions["ingest"]["name"])
        ingest_queue = info.queues["IngestQueue"].rsplit("/", 1)[-1]

        # GIVEN one upsert of three records on the ingest queue
        records = [{"id": f"cw-{i}", "version": 1, "values": [0.5 + i] * SAMPLE_DIMENSION} for i in range(3)]
        upsert = {"schema_version": 1, "op": "upsert", "tenant": "acme", "records": records}
        stack.sqs().send_message(QueueUrl=info.queues["IngestQueue"], MessageBody=json.dumps(upsert))

        def upserted() -> float:
            return sum(series(cloudwatch, since, "VectorRelay", "RecordsUpserted", {"service": "ingest"}))

        def invocations() -> list[float]:
            return series(cloudwatch, since, "AWS/Lambda", "Invocations", {"FunctionName": ingest_function})

        def visible() -> list[float]:
            return series(
                cloudwatch, since, "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": ingest_queue}
            )

        # THEN CloudWatch has the function's EMF metric, Lambda's invocation and the queue's depth
        wait_until(
            lambda: upserted() >= len(records) and bool(invocations()) and bool(visible()),
            "RecordsUpserted, AWS/Lambda Invocations and AWS/SQS ApproximateNumberOfMessagesVisible in CloudWatch",
            ceiling=CEILING,
            poll=0.5,
        )
        feed, queue_metrics = stack.metrics_feed, stack.queue_metrics
        assert feed is not None
        assert queue_metrics is not None
        assert feed.counters.invalid_lines == 0, feed.counters.last_invalid
        assert feed.counters.failed_calls == 0, feed.counters.last_failure

    # AND its threads end with the stack
    assert not feed.alive
    assert not queue_metrics.alive


def test_every_line_a_function_writes_reaches_its_log_unchanged_and_the_line_reader(tmp_path: Path) -> None:
    # GIVEN a handler that writes text, bytes that are no UTF-8, an EMF line, and to stderr
    (tmp_path / "probe.py").write_text(
        "import sys\n"
        "def handler(event, context):\n"
        "    print('plain line', flush=True)\n"
        "    sys.stdout.buffer.write(b'not utf-8: \\xff\\xfe\\n'); sys.stdout.buffer.flush()\n"
        '    print(\'{"_aws": {}, "M": 1}\', flush=True)\n'
        "    print('to stderr', file=sys.stderr, flush=True)\n"
        "    return 'done'\n"
    )
    config = FunctionRuntimeConfig(
        name="probe",
        arn="arn:aws:lambda:us-east-1:123456789012:function:probe",
        code_dir=tmp_path,
        handler="probe.handler",
        timeout_seconds=30,
        memory_mb=128,
        environment={},
        python=sys.executable,
    )
    seen: list[str] = []
    log_path = tmp_path / "probe.log"
    with log_path.open("a", buffering=1) as log:
        environment = RuntimeEnvironment(config, log=log, on_line=seen.append)
        try:
            result = environment.invoke({})
        finally:
            environment.close()  # returns once the process's output is copied

    assert (result.outcome, result.payload) == ("ok", "done")
    written = log_path.read_bytes()
    for line in (b"plain line\n", b"not utf-8: \xff\xfe\n", b'{"_aws": {}, "M": 1}\n', b"to stderr\n"):
        assert line in written
    assert {"plain line\n", '{"_aws": {}, "M": 1}\n', "to stderr\n"} <= set(seen)
    assert written.decode(errors="replace").splitlines(keepends=True) == seen
