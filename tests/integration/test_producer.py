"""The producer library against moto's SQS: every message arrives once, in the fewest SendMessageBatch calls,
too-large upserts are split, failed entries are retried, and what finally failed is returned."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from tests.integration.test_ingest import vector
from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.parsing import parse_query_message, parse_write_message
from vector_relay.producer import Publisher, VersionClock, delete, delete_by_filter, purge_tenant, query, upsert


@pytest.fixture
def queue(aws: str) -> str:
    return str(boto3.client("sqs").create_queue(QueueName="relay-ingest")["QueueUrl"])


def received(queue_url: str) -> list[str]:
    sqs = boto3.client("sqs")
    bodies: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def test_every_kind_arrives_once_in_the_fewest_requests_and_parses_as_the_relay_parses_it(queue: str) -> None:
    versions = VersionClock()
    messages = [
        upsert("acme", [{"id": f"d{i}", "version": versions.next(), "values": vector(i), "metadata": {"n": i}}])
        for i in range(25)
    ]
    messages += [
        delete("acme", [("d1", versions.next())]),
        delete_by_filter("acme", {"n": {"$gte": 20}}),
        purge_tenant("globex"),
    ]

    result = Publisher(queue, sqs=boto3.client("sqs")).publish(messages)

    assert (result.sent, result.failed, result.requests) == (28, [], math.ceil(28 / 10))
    bodies = received(queue)
    assert len(bodies) == 28
    parsed = [parse_write_message(b, ValidationContext()) for b in bodies]
    assert sorted(m.op for m in parsed) == sorted(["upsert"] * 25 + ["delete", "delete_by_filter", "purge_tenant"])


def test_an_upsert_too_large_for_one_message_is_split_and_every_record_arrives_once(queue: str) -> None:
    records = [{"id": f"r{i}", "version": 1, "values": vector(i)} for i in range(40)]

    result = Publisher(queue, sqs=boto3.client("sqs"), max_bytes=60_000).publish([upsert("acme", records)])

    assert result.failed == []
    assert result.split > 0
    arrived = [r["id"] for b in received(queue) for r in json.loads(b)["records"]]
    assert sorted(arrived) == sorted(r["id"] for r in records)
    assert all(len(b.encode()) <= 60_000 for b in received(queue))


class FlakySqs:
    """moto's client, with SendMessageBatch failing chosen entries as SQS does (partial failures)."""

    def __init__(self, failures: list[dict[str, tuple[str, bool]]]) -> None:
        self.real = boto3.client("sqs")
        self.failures = failures  # per call: body -> (code, sender_fault)
        self.calls = 0

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        plan = self.failures[self.calls] if self.calls < len(self.failures) else {}
        self.calls += 1
        failed = [e for e in Entries if e["MessageBody"] in plan]
        passing = [e for e in Entries if e["MessageBody"] not in plan]
        response = self.real.send_message_batch(QueueUrl=QueueUrl, Entries=passing) if passing else {}
        response["Failed"] = [
            {"Id": e["Id"], "Code": plan[e["MessageBody"]][0], "SenderFault": plan[e["MessageBody"]][1], "Message": "x"}
            for e in failed
        ]
        return response


def test_failed_entries_are_retried_with_back_off_and_sender_faults_are_returned(queue: str) -> None:
    messages = [purge_tenant(f"t{i}") for i in range(5)]
    bodies = [m.model_dump_json(exclude_none=True) for m in messages]
    flaky = FlakySqs(
        [
            {bodies[1]: ("ServiceUnavailable", False), bodies[2]: ("InvalidMessageContents", True)},
            {bodies[1]: ("ServiceUnavailable", False)},
        ]
    )
    sleeps: list[float] = []

    result = Publisher(queue, sqs=flaky, sleep=sleeps.append, base_delay=0.5).publish(messages)  # type: ignore[arg-type]

    assert sleeps == [0.5, 1.0]
    assert (result.sent, result.retried, result.requests) == (4, 2, 3)
    assert [(f.body, f.code) for f in result.failed] == [(bodies[2], "InvalidMessageContents")]
    assert sorted(received(queue)) == sorted(b for i, b in enumerate(bodies) if i != 2)


def test_builders_check_the_contract_and_queries_get_a_correlation_id() -> None:
    with pytest.raises(ValidationError, match="records"):
        upsert("acme", [])
    with pytest.raises(ValidationError):
        upsert("acme", [{"id": "a", "version": -1, "values": [0.1]}])
    built = query("acme", reply_to="https://sqs.us-east-1.amazonaws.com/1/replies", vector=[0.1, 0.2], top_k=3)
    assert built.correlation_id
    assert parse_query_message(built.model_dump_json(exclude_none=True), ValidationContext()).top_k == 3


def test_versions_from_the_clock_never_repeat_or_go_back() -> None:
    readings = iter([5_000_000, 5_000_000, 4_000_000, 9_000_000])
    clock = VersionClock(now_ns=lambda: next(readings))
    assert [clock.next() for _ in range(4)] == [5000, 5001, 5002, 9000]


def test_the_library_imports_without_the_lambda_libraries() -> None:
    code = (
        "import sys, vector_relay.producer; sys.exit(any(m.startswith('aws_lambda_powertools') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
