"""Lambda's SQS event source mapping, for one machine.

:class:`EventSourcePoller` consumes one queue for one function as the event source mapping does
(facts in ``shared/research/aws-tooling.md`` §12):

* **long polling**: ``ReceiveMessage`` with ``WaitTimeSeconds`` (shorter than Lambda's 20 s, so
  Ctrl-C is prompt), 10 messages per call;
* **batch size and batching window**: receives until ``BatchSize`` messages are gathered or
  ``MaximumBatchingWindowInSeconds`` has passed since the first one (window 0: one receive), and
  never more than Lambda's 6 MB invocation payload (the overflow is released at once);
* **maximum concurrency**: at most ``ScalingConfig.MaximumConcurrency`` invocations at once, each in
  its own execution environment; environments are created on demand (cold starts) and reused warm;
* **visibility timeout**: the queue's own (the poller never changes it); a message not deleted
  becomes visible again when it expires, and SQS counts every receive;
* **partial batch responses** (``ReportBatchItemFailures``): the messages the function reports in
  ``batchItemFailures`` are left on the queue, the others deleted; a response naming an unknown or
  empty ``itemIdentifier`` fails the whole batch; without ``ReportBatchItemFailures`` any answer is
  success;
* **function errors and timeouts**: the whole batch is left on the queue (an invocation that
  overruns the function timeout is stopped and its environment discarded);
* **redrive**: done by SQS itself (moto moves a message to the queue's DLQ on the receive after
  ``maxReceiveCount``), as in AWS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from relay_local.runtime import ExecutionEnvironment, InvocationResult, close_quietly

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation payload limit
SQS_MAX_MESSAGES_PER_RECEIVE = 10


@dataclass(frozen=True)
class EventSourceConfig:
    """One SQS event of one function, as the template configures it."""

    function: str  # the function's name, for progress lines
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    batching_window_seconds: float = 0
    maximum_concurrency: int = 2
    function_timeout_seconds: float = 3
    report_batch_item_failures: bool = True
    poll_wait_seconds: int = 1  # long-poll length; Lambda uses 20
    region: str = "us-east-1"


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one batch: for progress lines and tests."""

    function: str
    message_ids: tuple[str, ...]
    deleted: tuple[str, ...]
    left: tuple[str, ...]  # stay on the queue; visible again after the visibility timeout
    result: InvocationResult

    def describe(self) -> str:
        start = "cold start" if self.result.cold_start else "warm"
        what = {
            "ok": f"{len(self.deleted)} deleted, {len(self.left)} left for retry",
            "error": f"function error {self.result.error_type}: whole batch left for retry",
            "timeout": "timed out: whole batch left for retry, environment stopped",
            "crashed": f"runtime failed ({self.result.error_type}): whole batch left for retry",
        }[self.result.outcome]
        return (
            f"{self.function}: batch of {len(self.message_ids)} ({start}, {self.result.duration_ms:.0f} ms) -> {what}"
        )


@dataclass
class PollerCounters:
    invocations: int = 0
    messages: int = 0
    deleted: int = 0
    left: int = 0
    errors: int = 0
    timeouts: int = 0
    cold_starts: int = 0
    outcomes: list[BatchOutcome] = field(default_factory=list)


class EnvironmentPool:
    """Execution environments of one function: reused warm, created on demand up to a maximum."""

    def __init__(self, factory: Callable[[], ExecutionEnvironment], maximum: int) -> None:
        self._factory = factory
        self._maximum = maximum
        self._idle: list[ExecutionEnvironment] = []
        self._all: list[ExecutionEnvironment] = []
        self._busy = 0
        self._condition = threading.Condition()

    def reserve(self, stop: threading.Event) -> bool:
        """Wait until one more invocation may run (False if stopping)."""
        with self._condition:
            while self._busy >= self._maximum:
                if stop.is_set():
                    return False
                self._condition.wait(0.2)
            self._busy += 1
            return True

    def acquire_reserved(self) -> ExecutionEnvironment:
        """A warm environment if one is idle, else a new one (a cold start) - for a reserved slot."""
        with self._condition:
            while self._idle:
                environment = self._idle.pop()
                if environment.alive:
                    return environment
                self._all.remove(environment)
        environment = self._factory()
        with self._condition:
            self._all.append(environment)
        return environment

    def release(self, environment: ExecutionEnvironment | None) -> None:
        with self._condition:
            self._busy -= 1
            if environment is not None:
                if environment.alive:
                    self._idle.append(environment)
                else:
                    with contextlib.suppress(ValueError):
                        self._all.remove(environment)
                    close_quietly(environment)
            self._condition.notify_all()

    @property
    def busy(self) -> int:
        with self._condition:
            return self._busy

    @property
    def size(self) -> int:
        with self._condition:
            return len(self._all)

    def close(self) -> None:
        with self._condition:
            environments, self._all, self._idle = list(self._all), [], []
        for environment in environments:
            close_quietly(environment)


class EventSourcePoller:
    """Polls one queue and invokes one function's environments with Lambda's batch semantics."""

    def __init__(
        self,
        config: EventSourceConfig,
        pool: EnvironmentPool,
        sqs: Any,
        *,
        on_batch: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.sqs = sqs
        self.on_batch = on_batch
        self.counters = PollerCounters()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=config.maximum_concurrency, thread_name_prefix=f"invoke-{config.function}"
        )
        self._invoking = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EventSourcePoller:
        self._thread = threading.Thread(target=self._run, name=f"poller-{self.config.function}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling, let running invocations finish, then stop the environments."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.poll_wait_seconds + 5)
        self._executor.shutdown(wait=True)
        self.pool.close()

    @property
    def running(self) -> int:
        """Invocations running or being settled (Lambda's ConcurrentExecutions of this event source)."""
        with self._lock:
            return self._invoking

    @property
    def idle(self) -> bool:
        """No invocation running or being settled (messages being gathered count as in flight on the queue)."""
        with self._lock:
            return self._invoking == 0

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.pool.reserve(self._stop):
                return
            try:
                batch = self.gather()
            except Exception as error:  # SQS unreachable (e.g. shutting down): back off, try again
                self.pool.release(None)
                if not self._stop.wait(1.0):
                    print(f"{self.config.function}: receive failed: {error}")
                continue
            if not batch:
                self.pool.release(None)
                continue
            with self._lock:
                self._invoking += 1
            self._executor.submit(self._invoke_and_settle, batch)

    def gather(self) -> list[dict[str, Any]]:
        """One batch: up to ``batch_size`` messages within the batching window (empty if the queue is idle)."""
        c = self.config
        batch: list[dict[str, Any]] = []
        size = 0
        window_ends: float | None = None
        while len(batch) < c.batch_size and not self._stop.is_set():
            if window_ends is None:
                wait = c.poll_wait_seconds
            else:
                remaining = window_ends - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(c.poll_wait_seconds, max(0, int(remaining + 0.999)))
            messages = self.sqs.receive_message(
                QueueUrl=c.queue_url,
                MaxNumberOfMessages=min(SQS_MAX_MESSAGES_PER_RECEIVE, c.batch_size - len(batch)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            full = False
            for message in messages:
                record = self.record(message)
                record_size = len(json.dumps(record))
                if size + record_size > MAX_PAYLOAD_BYTES:  # over the payload limit: back to the queue now
                    self.sqs.change_message_visibility(
                        QueueUrl=c.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                    full = True
                    continue
                batch.append(record)
                size += record_size
            if not batch:
                return []
            if window_ends is None:
                window_ends = time.monotonic() + c.batching_window_seconds
            # Full when the next message did not fit: receiving again would only take and release it again,
            # and every receive counts toward the redrive policy's maxReceiveCount (it would reach the DLQ unread).
            if c.batching_window_seconds <= 0 or full or size >= MAX_PAYLOAD_BYTES:
                break
        return batch

    def _invoke_and_settle(self, batch: list[dict[str, Any]]) -> None:
        environment: ExecutionEnvironment | None = None
        try:
            try:
                environment = self.pool.acquire_reserved()
                result = environment.invoke({"Records": batch}, self.config.function_timeout_seconds)
                outcome = self.settle(batch, result)
            except Exception as error:  # the environment could not start: the batch stays, retried later
                result = InvocationResult("crashed", {"errorType": type(error).__name__, "errorMessage": str(error)})
                ids = tuple(r["messageId"] for r in batch)
                outcome = BatchOutcome(self.config.function, ids, (), ids, result)
            finally:
                self.pool.release(environment)
            self._count(outcome)
            if self.on_batch is not None:
                self.on_batch(outcome)
        finally:
            with self._lock:
                self._invoking -= 1

    def settle(self, batch: list[dict[str, Any]], result: InvocationResult) -> BatchOutcome:
        """Delete what succeeded; leave the rest for SQS to redeliver after the visibility timeout."""
        ids = tuple(r["messageId"] for r in batch)
        failed = set(ids) if result.outcome != "ok" else self.reported_failures(ids, result.payload)
        succeeded = [r for r in batch if r["messageId"] not in failed]
        for start in range(0, len(succeeded), 10):
            chunk = succeeded[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.config.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
        left = tuple(i for i in ids if i in failed)
        return BatchOutcome(self.config.function, ids, tuple(r["messageId"] for r in succeeded), left, result)

    def reported_failures(self, ids: tuple[str, ...], response: Any) -> set[str]:
        """The messages a partial batch response names; all of them if the response is malformed."""
        if not self.config.report_batch_item_failures or response is None:
            return set()
        if not isinstance(response, dict):
            return set(ids)
        items = response.get("batchItemFailures")
        if items is None:
            return set()
        if not isinstance(items, list):
            return set(ids)
        failed: set[str] = set()
        for item in items:
            identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
            if not identifier or identifier not in ids:  # Lambda: the whole batch failed
                return set(ids)
            failed.add(str(identifier))
        return failed

    def _count(self, outcome: BatchOutcome) -> None:
        with self._lock:
            c = self.counters
            c.invocations += 1
            c.messages += len(outcome.message_ids)
            c.deleted += len(outcome.deleted)
            c.left += len(outcome.left)
            c.errors += outcome.result.outcome in {"error", "crashed"}
            c.timeouts += outcome.result.outcome == "timeout"
            c.cold_starts += outcome.result.cold_start
            c.outcomes.append(outcome)

    # ------------------------------------------------------------------ event shape
    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        """One SQS message as Lambda puts it in ``event["Records"]``."""
        attributes = message.get("Attributes", {})
        lambda_attributes = {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
            "ApproximateFirstReceiveTimestamp": attributes.get(
                "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
            ),
        }
        for optional in ("AWSTraceHeader", "MessageGroupId", "MessageDeduplicationId", "SequenceNumber"):
            if optional in attributes:
                lambda_attributes[optional] = attributes[optional]
        message_attributes: dict[str, dict[str, Any]] = {}
        for name, value in message.get("MessageAttributes", {}).items():
            converted: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
            if "StringValue" in value:
                converted["stringValue"] = value["StringValue"]
            if "BinaryValue" in value:  # Lambda passes binary attributes base64-encoded
                converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
            message_attributes[name] = converted
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": lambda_attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.get("MD5OfBody")
            or hashlib.md5(message["Body"].encode(), usedforsecurity=False).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.config.queue_arn,
            "awsRegion": self.config.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record
