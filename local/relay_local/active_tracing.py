"""Lambda's part of X-Ray active tracing, for the local stack's execution environments.

For a function with active tracing (the template's ``Tracing: Active``) Lambda decides, per invocation,
whether it is traced (:class:`LambdaSampler`: the first invocation each second and 5 % of the
others), hands the runtime a trace header with that decision (``Lambda-Runtime-Trace-Id`` on
``invocation/next``, which awslambdaric copies into ``_X_AMZN_TRACE_ID``:
``Root=<trace id>;Parent=<segment id>;Sampled=1``) and writes the function's segment itself: the
``Parent`` under which the X-Ray SDK in the function hangs its subsegments. :class:`FunctionTracing`
does the same for one function of the local stack. The segment goes to the X-Ray daemon's address,
as the function's own documents do (the local stack's :class:`~relay_local.xray_collector.XRayCollector`),
where Lambda sends it to X-Ray directly.

A function without active tracing (``PassThrough``), or one with no daemon to send to, gets a header
with ``Sampled=0``: nothing upstream of an SQS event source mapping asks for a trace.

The function's segment says which function ran, when, for which request and whether it failed
(``fault``); nothing of the event or the response.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relay_local.xray_collector import HEADER

RESERVOIR_PER_SECOND = 1  # Lambda's sampling rule, which cannot be changed for a function
FIXED_RATE = 0.05
FUNCTION_ORIGIN = "AWS::Lambda::Function"


class LambdaSampler:
    """Lambda's sampling rule for one function: the first ``reservoir`` invocations each second, then ``rate``."""

    def __init__(
        self,
        *,
        reservoir: int = RESERVOIR_PER_SECOND,
        rate: float = FIXED_RATE,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._reservoir = reservoir
        self._rate = rate
        self._clock = clock
        self._draw = draw
        self._lock = threading.Lock()
        self._second = -1
        self._taken = 0

    def sample(self) -> bool:
        with self._lock:
            second = int(self._clock())
            if second != self._second:
                self._second, self._taken = second, 0
            if self._taken < self._reservoir:
                self._taken += 1
                return True
        return self._draw() < self._rate


_samplers: dict[str, LambdaSampler] = {}
_samplers_lock = threading.Lock()


def sampler_for(function_arn: str) -> LambdaSampler:
    """The one sampler of a function in this process, shared by all its execution environments."""
    with _samplers_lock:
        return _samplers.setdefault(function_arn, LambdaSampler())


@dataclass(frozen=True)
class TraceHeader:
    """One invocation's ``_X_AMZN_TRACE_ID``: its trace, the function segment's id, and Lambda's decision."""

    trace_id: str
    parent_id: str
    sampled: bool

    def __str__(self) -> str:
        return f"Root={self.trace_id};Parent={self.parent_id};Sampled={int(self.sampled)}"


def new_trace_header(*, sampled: bool, now: float | None = None) -> TraceHeader:
    """A new trace (X-Ray's id: ``1-<epoch seconds, 8 hex>-<96 random bits>``) and segment id."""
    epoch = int(time.time() if now is None else now)
    return TraceHeader(f"1-{epoch:08x}-{secrets.token_hex(12)}", secrets.token_hex(8), sampled)


class FunctionTracing:
    """What Lambda does for one function's traces: a header per invocation, the function's segment after it."""

    def __init__(
        self, *, name: str, arn: str, active: bool, daemon_address: str, sampler: LambdaSampler | None = None
    ) -> None:
        self.name = name
        self.arn = arn
        self.daemon_address = daemon_address
        self.active = active and bool(daemon_address)
        self._sampler = (sampler or sampler_for(arn)) if self.active else None  # None: never sampled

    def begin(self) -> TraceHeader:
        """The next invocation's trace header: sampled by Lambda's rule when the function traces actively."""
        return new_trace_header(sampled=self._sampler is not None and self._sampler.sample())

    def end(self, header: TraceHeader, *, request_id: str, start: float, end: float, failed: bool) -> None:
        """The function's segment of a sampled invocation, sent to the daemon (times in epoch seconds)."""
        if not header.sampled or not self.daemon_address:
            return
        document = function_segment(
            self.name, self.arn, header, request_id=request_id, start=start, end=end, failed=failed
        )
        send_document(self.daemon_address, document)


def function_segment(
    name: str, arn: str, header: TraceHeader, *, request_id: str, start: float, end: float, failed: bool
) -> dict[str, Any]:
    """The segment Lambda writes for one invocation (X-Ray's segment document)."""
    document: dict[str, Any] = {
        "name": name,
        "id": header.parent_id,
        "trace_id": header.trace_id,
        "start_time": start,
        "end_time": max(start, end),
        "origin": FUNCTION_ORIGIN,
        "resource_arn": arn,
        "aws": {"request_id": request_id},
    }
    if failed:  # a function error, a timeout or a runtime that died
        document["fault"] = True
    return document


def send_document(address: str, document: dict[str, Any]) -> None:
    """One document to the X-Ray daemon at ``host:port`` as the SDK sends it: one UDP datagram, lost if none listens."""
    host, _, port = address.rpartition(":")
    datagram = (json.dumps(HEADER) + "\n" + json.dumps(document, separators=(",", ":"))).encode()
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(datagram, (host, int(port)))
