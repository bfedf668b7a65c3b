"""`make up TRACING=1` as an operator runs it (its own process, TRACING in its environment): the stack deploys with
Tracing=true, gives each invocation Lambda's trace header, and collects what the ingest function sends to the X-Ray
daemon's address in its journal (<state dir>/traces.jsonl), which `make status` and `python -m relay_local traces`
show as trees. The journal carries nothing of what the message carried."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay_local.active_tracing import FUNCTION_ORIGIN
from relay_local.traces import Trace, last_traces, read_documents
from tests.conftest import ROOT, SAMPLE_DIMENSION, wait_until
from tests.integration.local_stack.test_up_and_down import START_CEILING, Ups, aws, down

SECRET_WORDS = "never-in-a-trace-5c1e"


@pytest.fixture
def ups(tmp_path: Path) -> Iterator[Ups]:
    started = Ups(tmp_path)
    yield started
    started.stop_all()


def vector(seed: int) -> list[float]:
    """Values with 12 decimals: none can be part of a trace's timestamps (7 decimals at most) by chance."""
    rng = random.Random(seed)
    return [round(rng.uniform(-1, 1), 12) for _ in range(SAMPLE_DIMENSION)]


def relay_local(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay_local", *args, "--state-dir", str(state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def traced_upsert(journal: Path, function: str) -> Trace | None:
    """The last trace of ``function`` in the journal with its claim and its Pinecone request, once complete."""
    for trace in reversed(last_traces(read_documents(journal), 50)):
        for root in trace.roots:
            if root.name == function and root.find("guard claim") and root.find("pinecone upsert"):
                return trace
    return None


def test_make_up_with_tracing_collects_the_ingest_trace_tree_and_nothing_the_message_carried(
    ups: Ups, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN make up with TRACING=1 (as `make up TRACING=1` passes it)
    monkeypatch.setenv("TRACING", "1")
    state_dir = tmp_path / "state"
    process = ups.start(state_dir, "--aws-port", "0", "--pinecone-port", "0")
    info = ups.running(process, state_dir)
    journal = state_dir / "traces.jsonl"
    assert info.traces_file == str(journal)
    ingest = info.functions["ingest"]
    assert (ingest["tracing"], ingest["environment"]["POWERTOOLS_TRACE_DISABLED"]) == ("Active", "false")
    assert ingest["xray_daemon_address"].startswith("127.0.0.1:")

    # WHEN one upsert goes through the ingest queue
    values = vector(35)
    record = {"id": "traced#0", "version": 1, "values": values, "metadata": {"owner": SECRET_WORDS}}
    body = json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [record]})
    aws(info, "sqs").send_message(QueueUrl=info.queues["IngestQueue"], MessageBody=body)
    function = str(ingest["name"])
    wait_until(
        lambda: traced_upsert(journal, function) is not None,
        "the ingest invocation's trace in the journal",
        ceiling=START_CEILING,
        poll=0.5,
    )

    # THEN its trace is the function's segment (Lambda's part), the handler's subsegment with the batch's
    # tenant and outcome, and the relay's subsegments under it
    trace = traced_upsert(journal, function)
    assert trace is not None
    [segment] = trace.roots
    assert (segment.document["origin"], segment.parent_id, segment.document.get("fault")) == (
        FUNCTION_ORIGIN,
        None,
        None,
    )
    [handler] = segment.children
    tree = segment.render()
    assert handler.name == "## lambda_handler", tree
    assert (handler.annotations["tenant"], handler.annotations["outcome"]) == ("acme", "ok"), tree
    assert sorted(child.name for child in handler.children) == ["guard claim", "guard release", "pinecone upsert"]
    [request] = handler.find("pinecone upsert")
    assert request.metadata["vector_relay"]["records"] == 1

    # AND make status shows it as a tree
    status = relay_local(state_dir, "status")
    assert status.returncode == 0, status.stderr
    assert "traces (the last" in status.stdout, status.stdout
    shown = status.stdout.split("traces (the last", 1)[1]
    assert f"trace {trace.trace_id}" in shown, status.stdout
    lines = [line.strip() for line in shown.splitlines()]
    assert any(line.startswith(f"{function}  ") and line.endswith(" ms") for line in lines), shown
    assert any(line.startswith("## lambda_handler") and "tenant=acme  outcome=ok" in line for line in lines), shown
    assert any(line.startswith("guard claim  ") for line in lines), shown
    assert any(line.startswith("pinecone upsert  ") for line in lines), shown

    # AND neither the journal nor what status printed carries the API key, a vector value or a metadata value
    secret = aws(info, "secretsmanager").get_secret_value(SecretId=info.resources["PineconeApiKeySecret"])
    api_key = json.loads(secret["SecretString"])["api_key"]
    written = journal.read_text()
    for text in (written, status.stdout):
        found = [value for value in [api_key, SECRET_WORDS, *map(repr, values)] if value in text]
        assert found == [], f"a trace carries {found[:3]}"

    # AND once the stack stopped, the journal is still there for `python -m relay_local traces`
    assert down(state_dir).returncode == 0
    assert process.wait(timeout=120) == 0
    assert "trace documents appended to" in ups.output(process)
    after = relay_local(state_dir, "traces", "--last", "1")
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"trace {trace.trace_id}" in after.stdout
