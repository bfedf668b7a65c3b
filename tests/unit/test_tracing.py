"""Tracing: off, it costs nothing (not even the X-Ray SDK's import); on, it writes the subsegments
docs/operating.md lists, each with its own times under the handler's subsegment, the batch's tenant
and outcome, and a failure's kind but never its text.

The recorder sends to an in-memory emitter here (no network); tests/integration/test_tracing.py
collects a real invocation's trace over the X-Ray daemon's UDP protocol.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, get_args

import pytest

from relay_local.xray_collector import TraceNode, trace_tree
from tests.conftest import ROOT, FakeLambdaContext
from tests.xray_tracing import Invocations, lambda_tracing
from vector_relay import tracing
from vector_relay.ingest.planning import RequestKind


class Emitter:
    """Keeps what the recorder sends, as the daemon would receive it."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(json.loads(entity.serialize()))

    def set_daemon_address(self, address: str) -> None:
        pass


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Invocations, Emitter]]:
    emitter = Emitter()
    with lambda_tracing(monkeypatch, emitter=emitter) as invocations:
        yield invocations, emitter


def handler_node(invocations: Invocations, emitter: Emitter, handler: Callable[[Any, Any], Any]) -> TraceNode:
    """Invoke ``handler`` traced, as the functions are; the handler's subsegment with its subtree."""
    trace_id = invocations.new_trace()
    tracing.capture_lambda_handler(handler)({}, FakeLambdaContext())
    [root] = trace_tree(emitter.documents, trace_id)
    assert root.parent_id == invocations.facade_ids[trace_id]  # under the function's segment Lambda writes
    return root


# ---------------------------------------------------------------- off


def test_tracing_is_off_in_tests_outside_lambda_and_under_sam_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.active_tracer() is None  # POWERTOOLS_TRACE_DISABLED=true (tests/conftest.py)
    assert tracing.span_log() is tracing.NO_SPANS
    with tracing.span("dead-letter send") as span:
        assert not span.recording
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")  # no LAMBDA_TASK_ROOT: no daemon to send to
    tracing.reset_tracing()
    assert tracing.active_tracer() is None
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(ROOT / "functions"))
    monkeypatch.setenv("AWS_SAM_LOCAL", "true")
    tracing.reset_tracing()
    assert tracing.active_tracer() is None


COLD_START = """
import json, sys
from functions.ingest import app as ingest
from functions.query import app as query
from functions.receipts import app as receipts
from vector_relay import tracing

with tracing.span("dead-letter send") as span:
    span.annotate("error_code", "invalid_json")
spans = tracing.span_log()
with spans.span("pinecone upsert", "remote") as span:
    span.note(records=1)
spans.record()
tracing.annotate_batch(messages=1, tenants=["acme"], dead_lettered=0, retried=0)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("aws_xray_sdk"))))
"""


@pytest.mark.parametrize(("disabled", "loaded"), [("true", False), ("false", True)])
def test_a_container_that_does_not_trace_never_imports_the_xray_sdk(disabled: str, loaded: bool) -> None:
    # Powertools' Tracer() imports aws_xray_sdk.core even when disabled (~15 ms of each cold start)
    environment = {
        "PATH": os.environ["PATH"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "ingest"),  # as in Lambda
        "POWERTOOLS_TRACE_DISABLED": disabled,
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9",  # nothing is sampled without a trace header: nothing is sent
    }
    result = subprocess.run(
        [sys.executable, "-c", COLD_START], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert bool(modules) is loaded, modules


# ---------------------------------------------------------------- on


@pytest.mark.parametrize(
    ("tenants", "dead_lettered", "retried", "annotations"),
    [
        (["acme", "acme"], 0, 0, {"tenant": "acme", "outcome": "ok"}),
        (["acme", "globex"], 1, 0, {"tenant": "multi", "outcome": "dead_lettered"}),
        (["globex"], 1, 2, {"tenant": "globex", "outcome": "retried"}),
        ([], 3, 0, {"outcome": "dead_lettered"}),  # no valid message: no tenant to name
    ],
)
def test_a_batch_annotates_its_tenant_and_outcome_and_keeps_its_counts_as_metadata(
    traced: tuple[Invocations, Emitter],
    tenants: list[str],
    dead_lettered: int,
    retried: int,
    annotations: dict[str, str],
) -> None:
    def handler(event: Any, context: Any) -> None:
        tracing.annotate_batch(messages=3, tenants=tenants, dead_lettered=dead_lettered, retried=retried)

    node = handler_node(*traced, handler)

    assert node.name == "## handler"
    assert {key: node.annotations[key] for key in ("tenant", "outcome") if key in node.annotations} == annotations
    assert node.metadata["vector_relay"]["batch"] == {
        "messages": 3,
        "valid": len(tenants),
        "dead_lettered": dead_lettered,
        "retried": retried,
        "tenants": sorted(set(tenants)),
    }
    assert "response" not in json.dumps(node.document)  # the handler's response is not captured


def test_spans_timed_in_concurrent_tasks_become_sibling_subsegments_with_their_own_times(
    traced: tuple[Invocations, Emitter],
) -> None:
    # GIVEN two concurrent tasks, the second starting and ending while the first is still running: opened as
    # subsegments on one thread, the second would nest in the first and end it (aws-xray-sdk-python#164)
    def handler(event: Any, context: Any) -> None:
        spans = tracing.span_log()

        async def batch() -> None:
            first_started, second_done = asyncio.Event(), asyncio.Event()

            async def first() -> None:
                with spans.span("pinecone upsert", "remote") as span:
                    span.note(records=2)
                    first_started.set()
                    await second_done.wait()

            async def second() -> None:
                await first_started.wait()
                with spans.span("pinecone delete_ids", "remote"):
                    await asyncio.sleep(0)
                second_done.set()

            await asyncio.gather(first(), second())

        asyncio.run(batch())
        spans.record()  # from the handler's thread, once both have ended

    node = handler_node(*traced, handler)

    # THEN both are children of the handler's subsegment, each with the times it really ran
    [upsert], [delete] = node.find("pinecone upsert"), node.find("pinecone delete_ids")
    assert [child.name for child in node.children] == ["pinecone upsert", "pinecone delete_ids"]
    assert upsert.document["namespace"] == "remote"
    assert upsert.metadata["vector_relay"] == {"records": 2}
    assert upsert.document["start_time"] <= delete.document["start_time"]
    assert delete.document["end_time"] <= upsert.document["end_time"]


def test_a_failed_span_says_how_it_failed_never_what_the_error_says(traced: tuple[Invocations, Emitter]) -> None:
    def handler(event: Any, context: Any) -> None:
        with pytest.raises(ValueError, match="quoted input"), tracing.span("receipt send"):
            raise ValueError("quoted input: a metadata value")
        spans = tracing.span_log()
        with spans.span("pinecone upsert", "remote") as span:
            span.failed("rejected", fault=False)
        spans.record()

    node = handler_node(*traced, handler)

    [sent], [rejected] = node.find("receipt send"), node.find("pinecone upsert")
    assert (sent.document.get("fault"), sent.metadata["vector_relay"]["failure"]) == (True, "ValueError")
    assert (rejected.document.get("error"), rejected.document.get("fault")) == (True, None)
    assert rejected.metadata["vector_relay"]["failure"] == "rejected"
    assert "quoted input" not in json.dumps([node.document, sent.document])


def test_an_invocation_lambda_did_not_sample_times_and_writes_nothing(traced: tuple[Invocations, Emitter]) -> None:
    invocations, emitter = traced

    def handler(event: Any, context: Any) -> None:
        assert tracing.span_log() is tracing.NO_SPANS
        with tracing.span("dead-letter send") as span:
            assert not span.recording
        tracing.annotate_batch(messages=1, tenants=["acme"], dead_lettered=0, retried=0)

    invocations.new_trace(sampled=False)  # Lambda samples the first invocation each second and 5 % of the rest
    tracing.capture_lambda_handler(handler)({}, FakeLambdaContext())
    assert emitter.documents == []


# ---------------------------------------------------------------- the names, as documented


def span_names_in_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "shared" / "vector_relay").rglob("*.py"):
        source = path.read_text()
        names |= set(re.findall(r"\bspan\(\s*\"([^\"]+)\"", source))
        if 'span(f"pinecone {request.kind}"' in source:
            names |= {f"pinecone {kind}" for kind in get_args(RequestKind)}
    return names


def test_every_span_the_code_writes_is_listed_and_documented() -> None:
    operating = (ROOT / "docs" / "operating.md").read_text()
    assert span_names_in_code() == set(tracing.SPAN_NAMES)
    for name in tracing.SPAN_NAMES:
        assert f"`{name}`" in operating, name
