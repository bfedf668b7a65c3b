"""The X-Ray daemon's side of the wire, on loopback: keeps the trace documents a function sends, for a test to read.

In Lambda the X-Ray SDK sends each segment or subsegment as one UDP datagram to the X-Ray daemon
(``AWS_XRAY_DAEMON_ADDRESS``, 127.0.0.1:2000 by default): the header ``{"format":"json","version":1}``,
a newline, then the document (X-Ray's segment document: ``name``, ``id``, ``trace_id``, ``start_time``,
``end_time``, and for a subsegment sent on its own ``type: "subsegment"`` and ``parent_id``). The daemon
batches them into ``PutTraceSegments``; :class:`XRayCollector` keeps them in memory instead, and
:func:`trace_tree` puts one trace back together as X-Ray's console shows it: each subsegment under
its parent, whether it arrived inside its parent's document or on its own.

A test points the functions at :attr:`XRayCollector.address` (``AWS_XRAY_DAEMON_ADDRESS``); the local
stack does too when it traces (``StackOptions(tracing=True)``), and has the collector write each
document as one JSON line to its journal (``<state dir>/traces.jsonl``) instead of keeping it in memory.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HEADER = {"format": "json", "version": 1}
MAX_DATAGRAM = 65_535


class XRayCollector:
    """A UDP listener on 127.0.0.1 (a free port) that keeps every trace document it is sent.

    ``journal``: a file each document is appended to as one JSON line, as it arrives; ``keep``: whether
    the documents (and the rejected datagrams) are kept in memory too, for :meth:`documents`.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, journal: Path | None = None, keep: bool = True
    ) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((host, port))
        self._socket.settimeout(0.1)
        self._documents: list[dict[str, Any]] = []
        self.rejected: list[bytes] = []  # datagrams not in the daemon's protocol (kept only with keep)
        self.received = 0  # documents taken
        self.rejected_count = 0
        self.journal = journal
        self.journal_failures = 0  # documents that could not be written to the journal
        self._keep = keep
        self._journal: IO[str] | None = journal.open("a", buffering=1) if journal is not None else None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="xray-collector", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_XRAY_DAEMON_ADDRESS``."""
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    def documents(self) -> list[dict[str, Any]]:
        """Every document received so far, in order of arrival."""
        with self._lock:
            return list(self._documents)

    def wait_for(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The documents once ``condition`` holds for them (UDP on loopback arrives at once, but on another thread)."""
        deadline = time.monotonic() + timeout
        while not condition(documents := self.documents()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no such trace documents within {timeout} s; received {len(documents)}")
            time.sleep(0.01)
        return documents

    def stop(self) -> None:
        """Stop listening, once what was already sent to it is taken (the last segments of a stopping stack)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._thread.join(timeout=5)
        self._socket.setblocking(False)
        while True:
            try:
                datagram = self._socket.recv(MAX_DATAGRAM)
            except OSError:  # nothing more queued
                break
            self._take(datagram)
        self._socket.close()
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def __enter__(self) -> XRayCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self) -> None:
        while not self._stopped.is_set():
            try:
                datagram = self._socket.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self._take(datagram)

    def _take(self, datagram: bytes) -> None:
        document = parse_datagram(datagram)
        with self._lock:
            if document is None:
                self.rejected_count += 1
                if self._keep:
                    self.rejected.append(datagram)
                return
            self.received += 1
            if self._keep:
                self._documents.append(document)
            if self._journal is not None:
                try:
                    self._journal.write(json.dumps(document, separators=(",", ":")) + "\n")
                except (OSError, ValueError):  # a full disk; the journal closed
                    self.journal_failures += 1


def parse_datagram(datagram: bytes) -> dict[str, Any] | None:
    """The document of one datagram, or None when it is not ``<header>\\n<JSON object>``."""
    header, _, body = datagram.partition(b"\n")
    with contextlib.suppress(ValueError):
        if json.loads(header) == HEADER:
            document = json.loads(body)
            if isinstance(document, dict):
                return document
    return None


@dataclass
class TraceNode:
    """One segment or subsegment of a trace, with its children in order of start."""

    name: str
    id: str
    parent_id: str | None
    document: dict[str, Any]  # as sent, without its nested subsegments
    children: list[TraceNode] = field(default_factory=list)

    @property
    def annotations(self) -> dict[str, Any]:
        return dict(self.document.get("annotations", {}))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.document.get("metadata", {}))

    def walk(self) -> Iterator[TraceNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, name: str) -> list[TraceNode]:
        """Every node of this subtree named ``name``."""
        return [node for node in self.walk() if node.name == name]

    def render(self, depth: int = 0) -> str:
        """The subtree as indented lines (for a test's failure message)."""
        flags = "".join(f" [{flag}]" for flag in ("error", "fault", "throttle") if self.document.get(flag))
        line = f"{'  ' * depth}{self.name}{flags} {self.annotations or ''}".rstrip()
        return "\n".join([line, *(child.render(depth + 1) for child in self.children)])


def trace_ids(documents: list[dict[str, Any]]) -> list[str]:
    """The traces the documents belong to, in order of first arrival."""
    return list(dict.fromkeys(document["trace_id"] for document in documents if "trace_id" in document))


def trace_tree(documents: list[dict[str, Any]], trace_id: str) -> list[TraceNode]:
    """One trace put back together: its root nodes (a segment, or subsegments whose parent was not sent here,
    such as those under the Lambda service's own function segment), each with its subtree."""
    nodes: dict[str, TraceNode] = {}
    order: list[str] = []

    def add(document: dict[str, Any], parent_id: str | None) -> None:
        if document["id"] in nodes:  # sent twice: once is enough
            return
        own = {key: value for key, value in document.items() if key != "subsegments"}
        node = TraceNode(document.get("name", ""), document["id"], document.get("parent_id", parent_id), own)
        nodes[node.id] = node
        order.append(node.id)
        for child in document.get("subsegments", []):
            add(child, node.id)

    for document in documents:
        if document.get("trace_id") == trace_id and "id" in document:
            add(document, None)
    roots: list[TraceNode] = []
    for node_id in order:
        node = nodes[node_id]
        parent = nodes.get(node.parent_id) if node.parent_id else None
        (parent.children if parent is not None else roots).append(node)
    for node in nodes.values():
        node.children.sort(key=lambda child: float(child.document.get("start_time", 0)))
    return roots
