"""``make status``: what a running ``make up`` stack holds, read without changing it.

For a stack that traces (``make up TRACING=1``), also its last traces as trees (:mod:`relay_local.traces`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from relay_local.inspection import dead_letter, emulator_get, peek_messages, queue_depth
from relay_local.provisioning import aws_client
from relay_local.state_file import StackInfo, running_stack
from relay_local.traces import Trace, last_traces, read_documents, render_trace

STATUS_TRACES = 3  # the last this many traces; `python -m relay_local traces --last N` shows more


def collect_status(info: StackInfo) -> dict[str, Any]:
    sqs = aws_client("sqs", info.aws_endpoint, info.region)
    queues = {logical_id: queue_depth(sqs, url) for logical_id, url in info.queues.items()}
    dead_letters: dict[str, list[dict[str, str]]] = {}
    for source, url in info.dead_letter_queues.items():
        dead_letters[source] = [
            {
                "error_code": d.error_code,
                "reason": d.reason,
                "receive_count": d.receive_count,
                "source_message_id": d.message_id,
            }
            for d in (dead_letter(m) for m in peek_messages(sqs, url))
        ]
    state = emulator_get(info.pinecone_url, "state")
    counters = emulator_get(info.pinecone_url, "counters")
    return {
        "aws_endpoint": info.aws_endpoint,
        "pinecone_url": info.pinecone_url,
        "queues": queues,
        "dead_letters": dead_letters,
        "indexes": {
            index["name"]: {"dimension": index.get("dimension"), "metric": index.get("metric"), **index["namespaces"]}
            for index in state.get("indexes", [])
        },
        "emulator_requests": counters.get("by_operation", {}),
    }


def stack_traces(info: StackInfo, count: int = STATUS_TRACES) -> list[Trace] | None:
    """The stack's last ``count`` traces, oldest first; None when it does not trace."""
    if not info.traces_file:
        return None
    return last_traces(read_documents(Path(info.traces_file)), count)


def print_status(state_dir: Path, *, as_json: bool = False) -> int:
    info = running_stack(state_dir)
    if info is None:
        print("no local stack is running in this checkout (start one with `make up`)")
        return 1
    status = collect_status(info)
    traces = stack_traces(info)
    if as_json:
        status["traces"] = None if traces is None else [trace.to_json() for trace in traces]
        print(json.dumps(status, indent=2))
        return 0
    print(f"local stack: AWS {status['aws_endpoint']}, Pinecone {status['pinecone_url']}")
    print("queues (visible / in flight / delayed):")
    for logical_id, depth in status["queues"].items():
        print(f"  {logical_id:24} {depth['visible']:5} / {depth['in_flight']:5} / {depth['delayed']:5}")
    for source, messages in status["dead_letters"].items():
        print(f"dead letters of {source}: {len(messages)}")
        for message in messages:
            reason = " ".join(message["reason"].split())
            print(f"  {message['error_code']:22} receives {message['receive_count']:>2}  {reason[:110]}")
    for name, index in status["indexes"].items():
        namespaces = {k: v for k, v in index.items() if k not in {"dimension", "metric"}}
        print(f"index {name} ({index['dimension']} dims, {index['metric']}):")
        if not namespaces:
            print("  (no records)")
        for namespace, count in sorted(namespaces.items()):
            print(f"  namespace {namespace:20} {count:6} records")
    print("emulator requests (operation: status x count):")
    for operation, by_status in sorted(status["emulator_requests"].items()):
        counts = ", ".join(f"{code} x {n}" for code, n in sorted(by_status.items()))
        print(f"  {operation:22} {counts}")
    if traces is None:
        print("traces: off (`make up TRACING=1` deploys with Tracing=true and collects them)")
    elif not traces:
        print(
            f"traces: none yet in {info.traces_file} (Lambda samples the first invocation each second, 5 % of the rest)"
        )
    else:
        print(f"traces (the last {len(traces)} in {info.traces_file}; `python -m relay_local traces --last N`):")
        for trace in traces:
            print("\n".join(render_trace(trace, "  ")))
    return 0
