"""What every ``vector-relay`` command does when it cannot run: exit 2 and one line saying why, never a
traceback, never exit 1 (which says the command ran and found a problem), never botocore's words where the
operator's are wanted (docs/operating.md, "Which relay" and "Exit codes and output")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from tests.integration.cli.test_reconcile_command import TABLE, record
from tests.integration.conftest import create_version_table
from vector_relay_cli import main as entry_point
from vector_relay_cli.main import cli

SCRIPT = Path(sys.executable).parent / "vector-relay"


def fresh_shell(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The console script in a shell that has not pasted `make up`'s export lines: no relay, no AWS region."""
    nowhere = tmp_path / "absent"
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(nowhere),  # no profile can supply a region
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
    }
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=120)


@pytest.mark.parametrize(
    "command",
    [
        ["tenant", "list"],
        ["tenant", "add", "acme", "--namespace", "tenant-acme"],
        ["dlq", "inspect"],  # made its SQS client first: "You must specify a region"
        ["dlq", "redrive"],
        ["reconcile"],
        ["load", "{corpus}", "--tenant", "acme"],
        ["receipts", "wait", "--tenant", "acme", "m-1"],
        ["dashboard", "--png", "pngs"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_without_the_export_lines_every_command_asks_which_relay_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"id": "a", "values": [0.1]}\n')

    ran = fresh_shell(tmp_path, *(part.format(corpus=corpus) for part in command))

    assert ran.returncode == 2
    assert ran.stdout == ""
    assert ran.stderr.splitlines() == [
        "Error: which relay? none is named: for the local stack, paste the export lines `make up` prints (or "
        "`source .local-stack/env`); for a deployed one, give --stack NAME (or VECTOR_RELAY_STACK), or its outputs "
        "with --outputs FILE (or VECTOR_RELAY_OUTPUTS)"
    ]


def test_without_a_key_or_a_relay_index_says_both_ways_and_a_named_relay_without_a_region_asks_for_one(
    tmp_path: Path,
) -> None:
    index = fresh_shell(tmp_path, "index", "describe", "docs")
    assert index.returncode == 2
    assert len(index.stderr.splitlines()) == 1
    assert index.stderr.startswith("Error: no Pinecone API key and no relay named: set PINECONE_API_KEY")
    assert "paste the export lines `make up` prints" in index.stderr

    stack = fresh_shell(tmp_path, "--stack", "vector-relay", "tenant", "list")
    assert stack.returncode == 2
    assert stack.stderr.splitlines() == [
        "Error: no AWS region: give --region, or set AWS_DEFAULT_REGION (or a region in your AWS profile)"
    ]


def test_an_unreachable_index_is_exit_2_not_the_exit_1_of_a_mismatch(aws: str, tmp_path: Path) -> None:
    # GIVEN a table with a settled record to compare, and an index host nothing listens on
    create_version_table(TABLE)
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=record("a", 1))
    secret = boto3.client("secretsmanager").create_secret(Name="key", SecretString=json.dumps({"api_key": "pcsk_x"}))
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "WriteVersionTableName": TABLE,
                "PineconeIndexHost": "http://127.0.0.1:9",
                "PineconeApiKeySecretArn": secret["ARN"],
                "TenantRegistryParameterName": "relay-tenant-registry",
            }
        )
    )

    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "reconcile", "--json"])

    assert isinstance(result.exception, SystemExit), result.exception  # not an uncaught error (exit 1)
    assert result.exit_code == 2
    assert result.output.startswith("Error: Pinecone: ")
    assert len(result.output.splitlines()) == 1


def test_an_unreadable_tenant_registry_is_exit_2_for_list_and_redrive(aws: str, tmp_path: Path) -> None:
    sqs = boto3.client("sqs")
    dead_letters = sqs.create_queue(QueueName="ingest-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
    sqs.create_queue(QueueName="ingest", Attributes={"RedrivePolicy": policy})
    boto3.client("ssm").put_parameter(Name="relay-tenant-registry", Value="{not json", Type="String")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"IngestDeadLetterQueueUrl": dead_letters, "TenantRegistryParameterName": "relay-tenant-registry"})
    )

    for command in (["tenant", "list"], ["dlq", "redrive"]):
        result = CliRunner().invoke(cli, ["--outputs", str(outputs), *command])

        assert isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == 2
        assert result.output.startswith(
            "Error: tenant registry from SSM parameter relay-tenant-registry is not JSON: "
        ), result.output


def test_a_bug_prints_its_traceback_and_exits_2_never_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(entry_point, "cli", broken)

    with pytest.raises(SystemExit) as exited:
        entry_point.main()

    assert exited.value.code == 2
    assert "RuntimeError: a bug" in capsys.readouterr().err
