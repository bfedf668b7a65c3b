"""The AWS/SQS age the local stack publishes follows SQS's documented rules, read from moto's state without a
receive: a message received three times or more is left out, and a message in a DLQ counts from its move."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from relay_local import aws_metrics
from relay_local.aws_metrics import oldest_message_age, remember_enqueue_times

REGION = "us-east-1"


class Clock:
    """What the patched queues stamp a message with when it enters them (milliseconds)."""

    def __init__(self) -> None:
        self.now_ms = 1_000_000.0

    def __call__(self) -> float:
        return self.now_ms


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(aws_metrics, "unix_time_millis", fake)
    remember_enqueue_times()
    return fake


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def receive(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    return [m["Body"] for m in messages]


def test_a_message_received_three_times_is_left_out_of_the_age(sqs: Any, clock: Clock) -> None:
    url = sqs.create_queue(QueueName="source")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")  # entered at 1,000 s
    for _ in range(3):
        assert receive(sqs, url) == ["poison"]
    clock.now_ms += 100_000
    sqs.send_message(QueueUrl=url, MessageBody="fresh")  # entered at 1,100 s

    assert oldest_message_age(url, REGION, now_ms=clock.now_ms + 7_000) == 7.0


def test_a_queue_of_nothing_but_poison_reports_its_oldest(sqs: Any, clock: Clock) -> None:
    url = sqs.create_queue(QueueName="source")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(3):
        receive(sqs, url)

    assert oldest_message_age(url, REGION, now_ms=clock.now_ms + 42_000) == 42.0


def test_a_message_moved_to_the_dead_letter_queue_counts_from_the_move(sqs: Any, clock: Clock) -> None:
    dlq_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName="source", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="doomed")  # entered the source at 1,000 s
    assert receive(sqs, url) == ["doomed"]
    clock.now_ms += 600_000
    assert receive(sqs, url) == []  # this receive moves it to the DLQ, at 1,600 s

    assert oldest_message_age(dlq_url, REGION, now_ms=clock.now_ms + 5_000) == 5.0
    assert oldest_message_age(url, REGION, now_ms=clock.now_ms) is None  # empty: no age


def test_a_queue_moto_does_not_hold_here_has_no_age(sqs: Any) -> None:
    assert oldest_message_age("http://127.0.0.1:9/123456789012/nowhere", REGION) is None
    assert oldest_message_age("not a queue url", REGION) is None
