"""The traces a local stack collected (``<state dir>/traces.jsonl``), put back together and shown as trees.

A stack that traces (``make up TRACING=1``) appends every X-Ray document the functions send, and the
function segment Lambda's part writes after each sampled invocation, as one JSON line
(:mod:`relay_local.xray_collector`). ``make status`` shows the last few traces of the running stack;
``python -m relay_local traces`` shows the last N from the file, whether a stack still runs or not.
Each trace is a tree as X-Ray's console draws it: the function's segment with its duration, the
handler's subsegment and the relay's subsegments under it (docs/operating.md, "Tracing"), each with
its duration, its annotations and whether it failed. Metadata is left out (``--json`` too).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay_local.state_file import TRACES_FILE
from relay_local.xray_collector import TraceNode, trace_tree

TAIL_BYTES = 8 * 1024 * 1024  # of a long journal only the end is read: the last traces are there
FLAGS = ("error", "fault", "throttle")


@dataclass
class Trace:
    """One trace: its root nodes (the function's segment, or what arrived without it) with their subtrees."""

    trace_id: str
    roots: list[TraceNode]

    @property
    def start(self) -> float:
        return min((float(root.document.get("start_time", 0)) for root in self.roots), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "start_time": self.start, "segments": [node_json(r) for r in self.roots]}


def read_documents(path: Path, *, tail_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The documents of the journal's last ``tail_bytes``, in order of arrival; [] when there is none."""
    try:
        with path.open("rb") as journal:
            size = journal.seek(0, 2)
            start = max(0, size - tail_bytes)
            journal.seek(start)
            data = journal.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if start:  # the first line is cut
        lines = lines[1:]
    documents = []
    for line in lines:
        try:
            document = json.loads(line)
        except ValueError:  # a line being written, or cut
            continue
        if isinstance(document, dict) and "trace_id" in document and "id" in document:
            documents.append(document)
    return documents


def last_traces(documents: list[dict[str, Any]], count: int) -> list[Trace]:
    """The ``count`` traces whose last document arrived last (Lambda's function segment comes after the rest)."""
    last_seen: dict[str, int] = {}
    for position, document in enumerate(documents):
        last_seen[document["trace_id"]] = position
    latest = sorted(last_seen, key=last_seen.__getitem__)[-count:] if count > 0 else []
    wanted = set(latest)
    mine = [document for document in documents if document["trace_id"] in wanted]
    return [Trace(trace_id, trace_tree(mine, trace_id)) for trace_id in latest]


def duration_ms(node: TraceNode) -> float | None:
    start, end = node.document.get("start_time"), node.document.get("end_time")
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return None  # still in progress when sent
    return (end - start) * 1000


def node_json(node: TraceNode) -> dict[str, Any]:
    duration = duration_ms(node)
    return {
        "name": node.name,
        "duration_ms": None if duration is None else round(duration, 1),
        "annotations": node.annotations,
        **{flag: True for flag in FLAGS if node.document.get(flag)},
        "subsegments": [node_json(child) for child in node.children],
    }


def render_trace(trace: Trace, indent: str = "") -> list[str]:
    """The trace as lines: a heading (time, trace id), then each node indented under its parent."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(trace.start)) if trace.start else "?"
    lines = [f"{indent}{when}  trace {trace.trace_id}"]
    for root in trace.roots:
        lines += _render_node(root, indent + "  ")
    return lines


def _render_node(node: TraceNode, indent: str) -> list[str]:
    duration = duration_ms(node)
    parts = [node.name or "(unnamed)", "(in progress)" if duration is None else f"{duration:.1f} ms"]
    parts += [f"[{flag}]" for flag in FLAGS if node.document.get(flag)]
    parts += [f"{key}={_annotation(value)}" for key, value in node.annotations.items()]
    lines = [indent + "  ".join(parts)]
    for child in node.children:
        lines += _render_node(child, indent + "  ")
    return lines


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def command_traces(state_dir: Path, *, last: int, as_json: bool = False) -> int:
    """``python -m relay_local traces``: the last traces in the state directory's journal."""
    path = state_dir / TRACES_FILE
    traces = last_traces(read_documents(path), last)
    if as_json:
        print(json.dumps([trace.to_json() for trace in traces], indent=2))
        return 0 if traces else 1
    if not traces:
        print(f"no traces in {path}: start the stack with tracing (make up TRACING=1, TRACING=1 make demo)")
        return 1
    print(f"the last {len(traces)} trace(s) in {path}, oldest first:")
    for trace in traces:
        print("\n".join(render_trace(trace, "  ")))
    return 0
