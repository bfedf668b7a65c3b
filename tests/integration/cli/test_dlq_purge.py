"""``vector-relay dlq purge`` against moto: it deletes exactly the messages selected by code and by age (the
clock injected), says how many of which codes before it asks, and deletes nothing when the answer is no or
when there is no terminal to ask on and no --yes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from tests.conftest import SAMPLE_TENANTS, wait_until
from tests.integration.cli.test_dlq_commands import bodies_in, dead_letter_three, plant
from tests.integration.conftest import Pipeline
from tests.integration.test_ingest import upsert_body
from vector_relay_cli.dlq_commands import PURGE_NOW_MS
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"
HOUR_MS = 3_600_000


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path) -> Path:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(SAMPLE_TENANTS), Type="String")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "IngestQueueUrl": pipeline.queue_url,
                "IngestDeadLetterQueueUrl": pipeline.dlq_url,
                "TenantRegistryParameterName": PARAMETER,
            }
        )
    )
    return path


def purge(outputs: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dlq", "purge", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_purge_by_code_deletes_only_that_code(pipeline: Pipeline, outputs: Path) -> None:
    bodies = dead_letter_three(pipeline)  # unknown_tenant x 2, zero_vector x 1

    code, output = purge(outputs, "--code", "unknown_tenant", "--yes", "--json")

    report = json.loads(output)
    assert code == 0
    assert (report["looked_at"], report["selected"], report["deleted"]) == (
        3,
        {"unknown_tenant": 2},
        {"unknown_tenant": 2},
    )
    assert bodies_in(pipeline.dlq_url) == [bodies[2]]  # the zero vector stays


def sent_at_ms(dlq_url: str) -> dict[str, int]:
    """Each message's SentTimestamp, by body; the messages stay visible."""
    messages = boto3.client("sqs").receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["SentTimestamp"]
    )["Messages"]
    return {m["Body"]: int(m["Attributes"]["SentTimestamp"]) for m in messages}


def test_purge_by_age_deletes_only_the_older_messages(pipeline: Pipeline, outputs: Path) -> None:
    # GIVEN two dead letters, the second sent at least a millisecond after the first
    old, new = upsert_body("acme", ["old"]), upsert_body("acme", ["new"])
    plant(pipeline.dlq_url, old, source_queue=pipeline.queue_arn)
    first = sent_at_ms(pipeline.dlq_url)[old]
    wait_until(lambda: time.time() * 1000 > first + 1, "the clock moved on")
    plant(pipeline.dlq_url, new, source_queue=pipeline.queue_arn)
    second = sent_at_ms(pipeline.dlq_url)[new]
    assert second > first

    # WHEN the clock says the newer one is a millisecond short of an hour old
    code, output = purge(outputs, "--older-than", "1h", "--yes", env={PURGE_NOW_MS: str(second + HOUR_MS - 1)})

    # THEN only the older one, an hour old or more, is deleted
    assert code == 0
    assert "looked at 2; deleted 1 (retries_exhausted 1)" in output
    assert bodies_in(pipeline.dlq_url) == [new]


def test_without_a_terminal_and_without_yes_nothing_is_deleted(pipeline: Pipeline, outputs: Path) -> None:
    dead_letter_three(pipeline)

    code, output = purge(outputs)  # CliRunner's stdin is no terminal

    assert code == 2
    said = " ".join(output.split())
    assert f"purge would delete 3 messages from {pipeline.dlq_url} (unknown_tenant 2, zero_vector 1)" in said
    assert "give --yes to delete them (nothing was deleted)" in said
    assert len(bodies_in(pipeline.dlq_url)) == 3


def test_a_bad_age_is_a_usage_error(outputs: Path) -> None:
    code, output = purge(outputs, "--older-than", "7 days", "--yes")
    assert code == 2
    assert "a whole number and a unit, s m h or d" in output


def on_a_terminal(command: list[str], answer: str) -> tuple[int, str]:
    """Run ``command`` with a terminal for stdin and its output; answer its question with ``answer``."""
    parent, child = pty.openpty()
    process = subprocess.Popen(command, stdin=child, stdout=child, stderr=child, env=dict(os.environ))
    os.close(child)
    seen = b""
    answered = False
    deadline = time.monotonic() + 120  # a ceiling, not a wait
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([parent], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(parent, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"for good? [y/N]" in seen:
                os.write(parent, answer.encode() + b"\n")
                answered = True
            if not ready and process.poll() is not None:
                break
        return process.wait(timeout=60), seen.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(parent)


@pytest.mark.parametrize(("answer", "exit_code", "left"), [("n", 1, 3), ("y", 0, 0)])
def test_the_question_shows_the_counts_and_a_no_deletes_nothing(
    pipeline: Pipeline, outputs: Path, answer: str, exit_code: int, left: int
) -> None:
    dead_letter_three(pipeline)
    command = [str(Path(sys.executable).parent / "vector-relay"), "--outputs", str(outputs), "dlq", "purge"]

    code, seen = on_a_terminal(command, answer)

    said = " ".join(seen.split())
    assert f"{pipeline.dlq_url}: 3 of 3 messages selected: unknown_tenant 2, zero_vector 1" in said
    assert "Delete these 3 messages for good? [y/N]" in said
    assert code == exit_code, seen
    assert ("nothing was deleted" in said) == (answer == "n")
    assert len(bodies_in(pipeline.dlq_url)) == left
