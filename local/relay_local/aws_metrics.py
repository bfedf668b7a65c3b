"""The metrics AWS itself publishes for the relay's functions and queues, published by the local stack.

In AWS, Lambda and SQS put metrics into CloudWatch that no code of the relay writes, and the
dashboards and alarms read them beside the relay's own (``VectorRelay``, from the functions' EMF
lines: :mod:`relay_local.metrics_feed`). moto publishes none, so the local stack does, into moto's
CloudWatch through the stack's :class:`~relay_local.metrics_feed.MetricsFeed`:

* ``AWS/Lambda``, dimension ``FunctionName`` (the deployed name), one data point of each per
  invocation, stamped with its start (:func:`invocation_metrics`): ``Invocations`` (1),
  ``Errors`` (1 for a function error, a timeout or a runtime that died, else 0), ``Duration`` (ms,
  from the runtime's pick-up of the event to its answer: init is not in it, as in AWS) and
  ``ConcurrentExecutions`` (the function's invocations running as this one ended, itself
  included). No ``Throttles``: nothing is throttled here (the poller waits for a free slot before
  it receives, as the event source mapping does under ``MaximumConcurrency``; there is no account
  or reserved concurrency limit).
* ``AWS/SQS``, dimension ``QueueName``, every ``period_seconds`` (AWS: every minute) for every queue
  of the stack (:class:`QueueMetrics`): ``ApproximateNumberOfMessagesVisible`` and
  ``ApproximateNumberOfMessagesNotVisible`` from ``GetQueueAttributes`` (which changes nothing),
  and ``ApproximateAgeOfOldestMessage`` (seconds) read from moto's own state in this process
  (:func:`oldest_message_age`): receiving a message to see its age would raise its receive count
  and so move it toward the dead-letter queue.

The age follows what the SQS documentation says of the metric: the oldest message not deleted,
counted from when it entered the queue; on a standard queue a message received three times or more
and still there is left out (SQS moves such a message to the back), unless every message is such
(the documentation does not say; the oldest of them is taken); a message moved to a dead-letter
queue counts from the move, not from its first send. moto keeps only the first send's time, so
:func:`remember_enqueue_times` makes its queues note when each message entered them. Nothing is
published for an empty queue (SQS reports the age only while the queue holds a message).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from moto.core.utils import unix_time_millis
from moto.sqs.models import Message, Queue, sqs_backends

from relay_local.metrics_feed import MetricPoint, MetricsFeed
from relay_local.runtime import InvocationResult

LAMBDA_NAMESPACE = "AWS/Lambda"
SQS_NAMESPACE = "AWS/SQS"
DEFAULT_QUEUE_PERIOD_SECONDS = 15.0
POISON_PILL_RECEIVES = 3  # SQS leaves a message received this often out of ApproximateAgeOfOldestMessage

_ENQUEUED_MS = "relay_local_enqueued_ms"  # set on moto's Message objects by remember_enqueue_times
_patch_lock = threading.Lock()
_moto_add_message: Callable[[Queue, Message], None] | None = None


def invocation_metrics(
    function_name: str, result: InvocationResult, *, concurrent: int, at: datetime | None = None
) -> list[MetricPoint]:
    """The AWS/Lambda data points Lambda publishes for one invocation of ``function_name``.

    Time-stamped when the invocation started (``at``; by default its duration before now), as
    Lambda's are: "the timestamp on an error metric reflects when the function was invoked".
    """
    when = at or datetime.now(UTC) - timedelta(milliseconds=result.duration_ms)
    dimensions = (("FunctionName", function_name),)
    errors = 0.0 if result.outcome == "ok" else 1.0
    return [
        MetricPoint(LAMBDA_NAMESPACE, "Invocations", dimensions, when, 1.0, "Count"),
        MetricPoint(LAMBDA_NAMESPACE, "Errors", dimensions, when, errors, "Count"),
        MetricPoint(LAMBDA_NAMESPACE, "Duration", dimensions, when, round(result.duration_ms, 3), "Milliseconds"),
        MetricPoint(LAMBDA_NAMESPACE, "ConcurrentExecutions", dimensions, when, float(concurrent), "Count"),
    ]


# ---------------------------------------------------------------------------- SQS
def remember_enqueue_times() -> None:
    """From now on moto's queues note on each message when it entered them (sent, or moved to a DLQ)."""
    global _moto_add_message
    with _patch_lock:
        if _moto_add_message is not None:
            return
        original = Queue.add_message
        _moto_add_message = original

        def add_message(queue: Queue, message: Message) -> None:
            setattr(message, _ENQUEUED_MS, unix_time_millis())
            original(queue, message)

        Queue.add_message = add_message  # type: ignore[method-assign,assignment]


def _moto_queue(queue_url: str, region: str) -> Queue | None:
    """The queue in moto's state in this process (``.../<account>/<name>``), if moto runs here and has it."""
    parts = urlsplit(queue_url).path.strip("/").split("/")
    if len(parts) != 2:
        return None
    account, name = parts
    try:
        return sqs_backends[account][region].queues.get(name)
    except Exception:  # not an account or region moto knows
        return None


def oldest_message_age(queue_url: str, region: str, *, now_ms: float | None = None) -> float | None:
    """``ApproximateAgeOfOldestMessage`` in seconds, from moto's state; None if the queue is empty or not here."""
    found = _moto_queue(queue_url, region)
    if found is None:
        return None
    messages = list(found._messages)  # a copy: moto's threads change the list as they serve requests
    if not found.fifo_queue:
        messages = [m for m in messages if m.approximate_receive_count < POISON_PILL_RECEIVES] or messages
    entered = [getattr(m, _ENQUEUED_MS, None) or m.sent_timestamp for m in messages]
    known = [float(ms) for ms in entered if ms is not None]
    if not known:
        return None
    now = unix_time_millis() if now_ms is None else now_ms
    return float(max(0, int((now - min(known)) // 1000)))  # whole seconds


class QueueMetrics:
    """Publishes the AWS/SQS metrics of some queues every ``period_seconds`` from a thread, until :meth:`stop`."""

    def __init__(
        self,
        feed: MetricsFeed,
        sqs: Any,
        queue_urls: Sequence[str],
        region: str,
        *,
        period_seconds: float = DEFAULT_QUEUE_PERIOD_SECONDS,
    ) -> None:
        remember_enqueue_times()
        self.feed = feed
        self.sqs = sqs
        self.queue_urls = list(queue_urls)
        self.region = region
        self.period_seconds = period_seconds
        self.failed_samples = 0  # a queue that could not be read (moto stopping): nothing published for it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-metrics", daemon=True)

    def start(self) -> QueueMetrics:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Its thread is running (from :meth:`start` until :meth:`stop` has ended it)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def sample(self) -> list[MetricPoint]:
        """Each queue's metrics now; a queue that cannot be read is left out (and counted)."""
        points: list[MetricPoint] = []
        for url in self.queue_urls:
            try:
                points += self._queue_points(url)
            except Exception:
                self.failed_samples += 1
        return points

    def _queue_points(self, url: str) -> list[MetricPoint]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        when = datetime.now(UTC)
        dimensions = (("QueueName", url.rstrip("/").rsplit("/", 1)[-1]),)
        points = [
            MetricPoint(
                SQS_NAMESPACE,
                "ApproximateNumberOfMessagesVisible",
                dimensions,
                when,
                float(attributes["ApproximateNumberOfMessages"]),
                "Count",
            ),
            MetricPoint(
                SQS_NAMESPACE,
                "ApproximateNumberOfMessagesNotVisible",
                dimensions,
                when,
                float(attributes["ApproximateNumberOfMessagesNotVisible"]),
                "Count",
            ),
        ]
        age = oldest_message_age(url, self.region)
        if age is not None:
            points.append(MetricPoint(SQS_NAMESPACE, "ApproximateAgeOfOldestMessage", dimensions, when, age, "Seconds"))
        return points

    def _run(self) -> None:
        while not self._stop.is_set():
            self.feed.publish(self.sample())
            self._stop.wait(self.period_seconds)
