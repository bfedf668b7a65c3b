"""The local stack's part of X-Ray active tracing: Lambda's sampling rule and trace header, and the journal's traces
read back as trees (relay_local.active_tracing, relay_local.traces). No network: nothing here is sent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from relay_local.active_tracing import FunctionTracing, LambdaSampler, function_segment, new_trace_header
from relay_local.traces import last_traces, read_documents, render_trace

ARN = "arn:aws:lambda:us-east-1:123456789012:function:probe"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_lambda_samples_the_first_invocation_each_second_and_a_fixed_rate_of_the_others() -> None:
    clock = Clock(1000.2)
    draws = iter([0.04, 0.06, 0.5])
    sampler = LambdaSampler(clock=clock, draw=lambda: next(draws))

    assert sampler.sample() is True  # the second's reservoir
    assert sampler.sample() is True  # 0.04 < 5 %
    assert sampler.sample() is False  # 0.06
    clock.now = 1001.0
    assert sampler.sample() is True  # a new second, a new reservoir (no draw taken)
    assert sampler.sample() is False  # 0.5


def test_the_trace_header_is_the_one_lambda_gives_the_runtime() -> None:
    header = new_trace_header(sampled=True, now=0x6650C0A2)
    assert re.fullmatch(r"Root=1-6650c0a2-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=1", str(header))
    assert str(new_trace_header(sampled=False)).endswith(";Sampled=0")


def test_a_function_traces_only_with_active_tracing_and_a_daemon_to_send_to() -> None:
    always = LambdaSampler(reservoir=0, rate=1.0)
    passthrough = FunctionTracing(name="probe", arn=ARN, active=False, daemon_address="127.0.0.1:2000", sampler=always)
    no_daemon = FunctionTracing(name="probe", arn=ARN, active=True, daemon_address="", sampler=always)
    active = FunctionTracing(name="probe", arn=ARN, active=True, daemon_address="127.0.0.1:2000", sampler=always)

    assert (passthrough.begin().sampled, no_daemon.begin().sampled, active.begin().sampled) == (False, False, True)


def test_lambdas_segment_is_the_parent_of_the_header_and_says_only_when_and_whether_it_failed() -> None:
    header = new_trace_header(sampled=True)
    segment = function_segment("probe", ARN, header, request_id="r-1", start=10.0, end=10.25, failed=True)
    assert segment == {
        "name": "probe",
        "id": header.parent_id,
        "trace_id": header.trace_id,
        "start_time": 10.0,
        "end_time": 10.25,
        "origin": "AWS::Lambda::Function",
        "resource_arn": ARN,
        "aws": {"request_id": "r-1"},
        "fault": True,
    }


def documents_of_one_invocation(trace_id: str, start: float) -> list[dict[str, Any]]:
    """What one sampled invocation sends, in the order it arrives: a streamed subsegment, the handler's, Lambda's."""
    return [
        {
            "id": f"c{trace_id[-3:]}",
            "name": "guard claim",
            "trace_id": trace_id,
            "parent_id": f"h{trace_id[-3:]}",
            "type": "subsegment",
            "start_time": start + 0.01,
            "end_time": start + 0.02,
        },
        {
            "id": f"h{trace_id[-3:]}",
            "name": "## lambda_handler",
            "trace_id": trace_id,
            "parent_id": f"f{trace_id[-3:]}",
            "type": "subsegment",
            "start_time": start,
            "end_time": start + 0.1,
            "annotations": {"tenant": "acme", "ColdStart": True},
        },
        {
            "id": f"f{trace_id[-3:]}",
            "name": "vector-relay-local-IngestFunction",
            "trace_id": trace_id,
            "start_time": start,
            "end_time": start + 0.125,
            "fault": True,
        },
    ]


def test_the_journals_last_traces_come_back_as_trees_even_from_a_cut_tail(tmp_path: Path) -> None:
    journal = tmp_path / "traces.jsonl"
    documents = documents_of_one_invocation("1-aaa-001", 100.0) + documents_of_one_invocation("1-aaa-002", 200.0)
    journal.write_text("".join(json.dumps(d) + "\n" for d in documents) + '{"id": "half-writ')

    [trace] = last_traces(read_documents(journal), 1)
    assert trace.trace_id == "1-aaa-002"
    assert [line.strip() for line in render_trace(trace)[1:]] == [
        "vector-relay-local-IngestFunction  125.0 ms  [fault]",
        "## lambda_handler  100.0 ms  tenant=acme  ColdStart=true",
        "guard claim  10.0 ms",
    ]
    # only the end of a long journal is read: the cut first line is skipped, the rest still parse
    tail = read_documents(journal, tail_bytes=len(journal.read_bytes()) - 5)
    assert [d["id"] for d in tail] == [d["id"] for d in documents[1:]]
    assert [t.trace_id for t in last_traces(tail, 5)] == ["1-aaa-001", "1-aaa-002"]
