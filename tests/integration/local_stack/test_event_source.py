"""The poller imitates Lambda's SQS event source mapping against moto's server: partial batch responses,
the queue's visibility timeout, redrive by receive count, function timeouts, batch size and window."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from relay_local.event_source import EnvironmentPool, EventSourceConfig, EventSourcePoller
from relay_local.runtime import InProcessEnvironment
from tests.conftest import FakeLambdaContext, wait_until

VISIBILITY_TIMEOUT = 2
MAX_RECEIVE_COUNT = 2


class Queues:
    def __init__(self) -> None:
        self.sqs = boto3.client("sqs")
        self.dlq_url = self.sqs.create_queue(QueueName="poller-dlq")["QueueUrl"]
        dlq_arn = self._arn(self.dlq_url)
        self.url = self.sqs.create_queue(
            QueueName="poller-source",
            Attributes={
                "VisibilityTimeout": str(VISIBILITY_TIMEOUT),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
            },
        )["QueueUrl"]
        self.arn = self._arn(self.url)

    def _arn(self, url: str) -> str:
        return str(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])

    def send(self, *bodies: str) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def bodies(self, url: str) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return sorted(m["Body"] for m in messages)


class Recorder:
    """A handler that records each delivery (body, receive count, time) and answers as told."""

    def __init__(self, answer: Callable[[dict[str, Any]], bool], *, hang_on_first: str = "") -> None:
        self.answer = answer  # record -> succeeded?
        self.hang_on_first = hang_on_first
        self.release = threading.Event()  # a hung first delivery returns when this is set (the test's end)
        self.deliveries: list[tuple[str, int, float]] = []
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        records = event["Records"]
        with self.lock:
            self.batches.append([r["body"] for r in records])
            for r in records:
                self.deliveries.append((r["body"], int(r["attributes"]["ApproximateReceiveCount"]), time.monotonic()))
        for r in records:
            if r["body"] == self.hang_on_first and r["attributes"]["ApproximateReceiveCount"] == "1":
                self.release.wait(120)  # past the function timeout however slow the machine is
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if not self.answer(r)]}

    def receives(self, body: str) -> list[int]:
        return [count for b, count, _ in self.deliveries if b == body]

    def times(self, body: str) -> list[float]:
        return [at for b, _, at in self.deliveries if b == body]


@pytest.fixture
def queues(aws: str) -> Queues:
    return Queues()


def start_poller(queues: Queues, handler: Recorder, **config: Any) -> EventSourcePoller:
    settings: dict[str, Any] = {
        "function": "test",
        "queue_url": queues.url,
        "queue_arn": queues.arn,
        "batch_size": 10,
        "batching_window_seconds": 0,
        "maximum_concurrency": 2,
        "function_timeout_seconds": 5,
        "poll_wait_seconds": 1,
        **config,
    }
    pool = EnvironmentPool(lambda: InProcessEnvironment(handler, lambda _timeout: FakeLambdaContext()), 2)
    return EventSourcePoller(EventSourceConfig(**settings), pool, boto3.client("sqs")).start()


@pytest.fixture
def pollers() -> Iterator[list[EventSourcePoller]]:
    started: list[EventSourcePoller] = []
    yield started
    for poller in started:
        poller.stop()


def test_reported_failures_stay_until_redriven_and_successes_are_deleted(
    queues: Queues, pollers: list[EventSourcePoller]
) -> None:
    # GIVEN a handler that reports one message of its batch as failed, every time
    handler = Recorder(lambda record: record["body"] != "fails")
    queues.send("ok-1", "fails", "ok-2")

    # WHEN the poller consumes the queue until SQS moves the failure to the DLQ
    pollers.append(start_poller(queues, handler))
    wait_until(lambda: queues.depth(queues.dlq_url) == 1, "the failure reached the DLQ")
    pollers[0].stop()

    # THEN the successes were delivered once and deleted; the failure was delivered maxReceiveCount times ...
    assert handler.receives("ok-1") == [1]
    assert handler.receives("ok-2") == [1]
    assert handler.receives("fails") == [1, 2]
    # ... each redelivery only after the queue's visibility timeout (the poller never shortened it) ...
    first, second = handler.times("fails")
    assert second - first >= VISIBILITY_TIMEOUT - 0.2
    # ... and the redrive policy moved it, untouched, to the DLQ
    assert queues.bodies(queues.dlq_url) == ["fails"]
    assert queues.depth(queues.url) == 0


def test_an_invocation_over_the_function_timeout_leaves_its_whole_batch(
    queues: Queues, pollers: list[EventSourcePoller]
) -> None:
    # GIVEN a batch whose invocation overruns the 1 s function timeout on its first delivery only
    handler = Recorder(lambda record: True, hang_on_first="slow")
    queues.send("slow", "fine")

    # WHEN the poller consumes it
    poller = start_poller(queues, handler, function_timeout_seconds=1, batching_window_seconds=1)
    pollers.append(poller)
    try:
        wait_until(
            lambda: queues.depth(queues.url) == 0 and poller.idle and poller.counters.invocations == 2,
            "the batch came back and was consumed",
        )
    finally:
        handler.release.set()

    # THEN the first invocation counts as a timeout and nothing of its batch was deleted: both came back
    outcomes = [o.result.outcome for o in poller.counters.outcomes]
    assert outcomes == ["timeout", "ok"]
    assert poller.counters.outcomes[0].left == poller.counters.outcomes[0].message_ids
    assert sorted(handler.receives("fine")) == [1, 2]
    assert queues.depth(queues.dlq_url) == 0


def test_batches_fill_up_to_the_batch_size_within_the_window(queues: Queues, pollers: list[EventSourcePoller]) -> None:
    # GIVEN 25 messages on the queue and an event source with batch size 20 and a 5 s window (long enough
    # for the poller's two receives of 10 on a busy machine; the second batch waits the window out), and a
    # visibility timeout longer than the window, as AWS requires of a real event source mapping
    handler = Recorder(lambda record: True)
    queues.sqs.set_queue_attributes(QueueUrl=queues.url, Attributes={"VisibilityTimeout": "60"})
    for start in range(0, 25, 10):
        queues.sqs.send_message_batch(
            QueueUrl=queues.url,
            Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(start + 10, 25))],
        )

    # WHEN the poller consumes them with one invocation at a time
    poller = start_poller(queues, handler, batch_size=20, batching_window_seconds=5, maximum_concurrency=1)
    pollers.append(poller)
    wait_until(
        lambda: sum(map(len, handler.batches)) >= 25 and queues.depth(queues.url) == 0 and poller.idle,
        "the queue was consumed",
    )

    # THEN the first batch is full and the rest comes in the second
    assert [len(batch) for batch in handler.batches] == [20, 5]
    assert sorted(body for batch in handler.batches for body in batch) == sorted(f"m{i}" for i in range(25))


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        ({"batchItemFailures": []}, set()),
        (None, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "unknown"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"wrongKey": "a"}]}, {"a", "b"}),
        ("not an object", {"a", "b"}),
    ],
)
def test_a_malformed_partial_batch_response_fails_the_whole_batch(response: Any, failed: set[str]) -> None:
    config = EventSourceConfig(function="f", queue_url="u", queue_arn="a")
    poller = EventSourcePoller(config, EnvironmentPool(lambda: None, 1), sqs=None)  # type: ignore[arg-type, return-value]
    assert poller.reported_failures(("a", "b"), response) == failed


def test_messages_over_the_payload_limit_wait_for_the_next_batch_and_never_reach_the_dlq(
    queues: Queues, pollers: list[EventSourcePoller]
) -> None:
    # GIVEN ten ~900 KB messages (six fit Lambda's 6 MB payload), a long window, and a redrive policy of
    # 2 receives: taking the overflow again and again within one window would send it to the DLQ unread
    handler = Recorder(lambda record: True)
    queues.sqs.set_queue_attributes(QueueUrl=queues.url, Attributes={"VisibilityTimeout": "60"})
    bodies = [f"{i}:" + "x" * 900_000 for i in range(10)]
    for body in bodies:
        queues.sqs.send_message(QueueUrl=queues.url, MessageBody=body)

    # WHEN one poller consumes them, one invocation at a time
    poller = start_poller(queues, handler, batch_size=10, batching_window_seconds=5, maximum_concurrency=1)
    pollers.append(poller)
    wait_until(lambda: sum(map(len, handler.batches)) >= 10 and poller.idle, "every message was delivered")

    # THEN a batch ends when the next message does not fit, and nothing went to the DLQ
    assert [len(batch) for batch in handler.batches] == [6, 4]
    assert queues.depth(queues.dlq_url) == 0
    assert sorted(b for batch in handler.batches for b in batch) == sorted(bodies)
