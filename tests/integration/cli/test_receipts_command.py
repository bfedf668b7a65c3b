"""``vector-relay receipts wait`` against moto: it prints the receipts of the message ids given as JSON lines, once
each, deletes them and leaves every other message on the receipt queue visible; a message whose latest receipt is a
dead letter is exit 1 with its code; a receipt that does not come is exit 2 naming the message, after printing the
receipts that did come."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from tests.integration.test_producer_receipts import AT, applied, dead_lettered, left_on, put
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"


@pytest.fixture
def receipt_queue(aws: str) -> str:
    return str(boto3.client("sqs").create_queue(QueueName="relay-tenant-acme-receipts")["QueueUrl"])


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["receipts", "wait", *args], input=input)


def test_each_wanted_receipt_is_printed_once_as_a_json_line_and_the_others_stay_visible(receipt_queue: str) -> None:
    mine, theirs = applied("m-1"), applied("someone-else").body()
    put(receipt_queue, mine.body(), theirs, mine.body(), applied("m-2", lsn=11).body())

    done = run("--queue", receipt_queue, "m-1", "m-2")

    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == [mine.body(), applied("m-2", lsn=11).body()]
    assert [json.loads(line)["lsn"] for line in done.stdout.splitlines()] == [10, 11]
    assert left_on(receipt_queue) == (1, 0, [theirs])


def test_a_message_whose_latest_receipt_is_a_dead_letter_is_exit_1_with_its_code(receipt_queue: str) -> None:
    put(
        receipt_queue, dead_lettered("m-1").body(), dead_lettered("m-2", at=AT).body(), applied("m-2", at=AT + 1).body()
    )

    done = run("--queue", receipt_queue, "m-1", "m-2")

    assert done.exit_code == 1, done.output
    assert [json.loads(line)["fate"] for line in done.stdout.splitlines()] == [
        "dead_lettered",
        "dead_lettered",
        "applied",
    ]
    assert done.stderr.splitlines() == [
        "message m-1 was dead-lettered: dimension_mismatch (vector-relay dlq inspect; once fixed, a redrive sends an "
        "applied receipt)"
    ]  # m-2 was redriven and applied since


def test_a_receipt_that_does_not_come_is_exit_2_naming_its_message_after_printing_those_that_came(
    receipt_queue: str,
) -> None:
    put(receipt_queue, applied("m-1").body())

    done = run("--queue", receipt_queue, "--timeout", "1", "m-1", "m-never")

    assert done.exit_code == 2
    assert done.stdout.splitlines() == [applied("m-1").body()]
    said = " ".join(done.stderr.split())
    assert "no receipt within 1 s for 1 of 2 messages: m-never. Is the ingest worker running" in said
    assert left_on(receipt_queue) == (0, 0, [])


def test_ids_come_from_a_file_and_the_queue_from_the_tenants_registry_entry(receipt_queue: str, tmp_path: Path) -> None:
    registry = {"acme": {"namespace": "tenant-acme", "receipts": receipt_queue}, "globex": "tenant-globex"}
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(registry), Type="String")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"TenantRegistryParameterName": PARAMETER}))
    ids = tmp_path / "ids.txt"
    ids.write_text("m-1\n\nm-2\n")
    put(receipt_queue, applied("m-1").body(), applied("m-2").body(), applied("m-3").body())

    done = CliRunner().invoke(
        cli, ["--outputs", str(outputs), "receipts", "wait", "--tenant", "acme", "--ids-file", str(ids), "m-3"]
    )
    no_receipts = CliRunner().invoke(cli, ["--outputs", str(outputs), "receipts", "wait", "--tenant", "globex", "m-1"])

    assert done.exit_code == 0, done.output
    assert [json.loads(line)["message_id"] for line in done.stdout.splitlines()] == ["m-3", "m-1", "m-2"]
    assert no_receipts.exit_code == 2
    assert "tenant 'globex' has no receipt queue: its registry entry names none" in " ".join(no_receipts.output.split())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["m-1"], "give exactly one of --queue and --tenant"),
        (["--queue", "https://sqs.us-east-1.amazonaws.com/123456789012/r", "--tenant", "acme", "m-1"], "exactly one"),
        (["--queue", "https://sqs.us-east-1.amazonaws.com/123456789012/r"], "give the message ids to wait for"),
    ],
)
def test_usage_errors_are_exit_2_and_read_nothing(receipt_queue: str, args: list[str], said: str) -> None:
    put(receipt_queue, applied("m-1").body())

    done = run(*args)

    assert done.exit_code == 2
    assert said in done.output
    assert left_on(receipt_queue)[:2] == (1, 0)
