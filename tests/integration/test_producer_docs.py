"""The snippet of docs/producer.md's "Waiting for a receipt" runs as a producer would run it, in its own process,
against moto and the emulator, while the real ingest and query functions work the queues, so the guide cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import ROOT, SAMPLE_REPLY_QUEUE, wait_until
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import vector
from vector_relay.dependencies import reset_worker_dependencies

GUIDE = ROOT / "docs" / "producer.md"


def snippet(heading: str) -> str:
    """The first Python block under ``heading`` in docs/producer.md."""
    text = GUIDE.read_text()
    section = text[text.index(f"\n{heading}\n") :]
    found = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert found is not None, f"no Python snippet under {heading}"
    return found.group(1)


def test_waiting_for_a_receipt_then_asking_after_it_runs_as_written(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a tenant whose registry entry names its receipt queue, and the names the snippet leaves to its reader
    receipt_queue = boto3.client("sqs").create_queue(QueueName="relay-tenant-acme-receipts")["QueueUrl"]
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps({"acme": {"namespace": "tenant-acme", "receipts": receipt_queue}}))
    reset_worker_dependencies()
    given = {
        "ingest_queue_url": pipeline.queue_url,
        "receipt_queue_url": receipt_queue,
        "query_queue_url": pipeline.query_queue_url,
        "reply_queue_url": SAMPLE_REPLY_QUEUE,
        "embedding": vector(42),
    }
    script = tmp_path / "snippet.py"
    script.write_text(
        "".join(f"{name} = {value!r}\n" for name, value in given.items()) + snippet("## Waiting for a receipt")
    )

    # WHEN it runs while the functions work their queues
    process = subprocess.Popen(
        [sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ingest = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    queries = SqsDriver(pipeline.query_queue_url, pipeline.query_queue_arn, query_app.lambda_handler)
    try:

        def step() -> bool:
            ingest.deliver_once()
            queries.deliver_once()
            return process.poll() is not None

        wait_until(step, "the snippet finished")
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    # THEN its own asserts held, its receipt says applied with an LSN, and the answer after it is fresh
    assert process.returncode == 0, stderr
    receipt_line, reply_line = stdout.splitlines()
    _, fate, record_count, lsn = receipt_line.split()
    assert (fate, record_count) == ("applied", "1")
    fresh, indexed, matches = reply_line.split(" ", 2)
    assert fresh == "True"
    assert int(indexed) >= int(lsn) >= 1
    assert matches == "['doc-42#0']"
    assert pipeline.fetch("acme", ["doc-42#0"])  # it did land
