"""One chaos worker: a process that consumes the ingest queue like one Lambda container.

It long-polls the queue, hands each batch to the real ingest handler (as Lambda's event source
mapping builds it, with a context whose time runs down), deletes what succeeded and leaves the
rest for the visibility timeout, exactly like the event source mapping with partial batch
responses. The chaos test kills these processes at random (SIGKILL) to stand for containers that
die mid-batch. Each worker reports its counts through a multiprocessing queue after every batch.
"""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from typing import Any

from tests.lambda_events import lambda_sqs_record

INVOCATION_SECONDS = 4.0


class _Context:
    function_name = "chaos-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:chaos-ingest"
    aws_request_id = "chaos"

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def run_worker(worker_id: int, queue_url: str, queue_arn: str, stop_at: float, reports: Queue[Any]) -> None:
    """Consume until ``stop_at`` (time.time()); report ``(worker_id, invocations, redeliveries, stale)`` per batch."""
    import boto3

    import vector_relay.ingest as ingest
    from functions.ingest import app

    stale = 0
    original_report = ingest._report

    def counting_report(outcome: Any, deps: Any, valid: int, failed: int, dropped: int) -> None:
        nonlocal stale
        stale += dropped
        original_report(outcome, deps, valid, failed, dropped)

    ingest._report = counting_report  # type: ignore[assignment]  # count stale drops for the run's figures
    sqs = boto3.client("sqs")
    invocations = redeliveries = 0
    while time.time() < stop_at:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            continue
        invocations += 1
        redeliveries += sum(int(m["Attributes"]["ApproximateReceiveCount"]) > 1 for m in messages)
        event = {"Records": [lambda_sqs_record(m, queue_arn) for m in messages]}
        try:
            response = app.lambda_handler(event, _Context(INVOCATION_SECONDS))
            failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        except Exception:  # a function error: the whole batch goes back to the queue
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
            ]
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
        reports.put((worker_id, invocations, redeliveries, stale))
