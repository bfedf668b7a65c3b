"""Queries against a running `make up`, as a new user meets them: `make up` says which reply queues a query
may name, and `vector-relay query` (with the environment its export lines set) asks the running query
function about a record written through the relay and prints the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from relay_local.inspection import namespace_counts
from tests.conftest import SAMPLE_DIMENSION, wait_until
from tests.integration.local_stack.test_up_and_down import START_CEILING, Ups, cli
from vector_relay.producer import Publisher, upsert


@pytest.fixture
def stack_ups(tmp_path: Path) -> Iterator[Ups]:
    started = Ups(tmp_path)
    yield started
    started.stop_all()


def test_make_up_names_the_reply_queues_and_query_prints_a_record_written_through_the_relay(
    stack_ups: Ups, tmp_path: Path
) -> None:
    # GIVEN a running make up
    state_dir = tmp_path / "state"
    process = stack_ups.start(state_dir, "--aws-port", "0", "--pinecone-port", "0")
    info = stack_ups.running(process, state_dir)
    wait_until(lambda: "Try: make status" in stack_ups.output(process), "make up printed its summary", poll=0.2)

    # THEN what it printed names the reply queues the query function allows, as the stack's outputs do
    allowed = info.functions["query"]["environment"]["REPLY_QUEUE_ALLOW_LIST"].split(",")
    assert len(allowed) == 2  # the template's ExampleReplyQueue and the sample events' reply queue
    printed = stack_ups.output(process).split("Reply queues a query may name as reply_to", 1)[1].splitlines()
    assert [line.strip() for line in printed[1:3]] == allowed
    assert info.outputs["ReplyQueueAllowList"].split(",") == allowed

    # WHEN a producer writes a record through the relay, and vector-relay asks for it by id
    sqs = boto3.client("sqs", endpoint_url=info.aws_endpoint, region_name=info.region)
    record = {"id": "doc-7#0", "version": 1, "values": [0.5] * SAMPLE_DIMENSION, "metadata": {"year": 2024}}
    sent = Publisher(info.outputs["IngestQueueUrl"], sqs=sqs).publish([upsert("acme", [record])])
    assert (sent.sent, sent.failed) == (1, [])
    wait_until(
        lambda: namespace_counts(info.pinecone_url, info.index_name).get("tenant-acme") == 1,
        "the record lands",
        ceiling=START_CEILING,
        poll=0.5,
    )
    code, human = cli(info, "query", "--tenant", "acme", "--id", "doc-7#0", "--timeout", str(START_CEILING))
    json_code, document = cli(info, "query", "--tenant", "acme", "--id", "doc-7#0", "--json", "--timeout", "180")

    # THEN the running query function's answer is printed, for people and for scripts
    assert code == 0, human
    assert human.splitlines()[0].startswith("tenant acme: 1 match;")
    assert human.splitlines()[1].split()[:3] == ["1.", "1.0000", "doc-7#0"]
    assert json_code == 0, document
    reply = json.loads(document)
    assert (reply["status"], [m["id"] for m in reply["matches"]]) == ("ok", ["doc-7#0"])
    assert reply["matches"][0]["metadata"] == {"year": 2024, "_relay_version": "1"}
