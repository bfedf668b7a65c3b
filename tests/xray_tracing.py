"""Tracing switched on for one test, the way Lambda runs a traced function.

Every other test runs with tracing off (``POWERTOOLS_TRACE_DISABLED=true``, tests/conftest.py). Here
the X-Ray SDK's recorder gets what Lambda gives it: ``LAMBDA_TASK_ROOT``, the SDK's Lambda context
(the function's facade segment, read from ``_X_AMZN_TRACE_ID`` on each invocation, is never sent:
the Lambda service writes that segment itself) and a daemon address to send subsegments to. The
recorder is the process's own, so whatever is changed is put back afterwards.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aws_lambda_powertools import Tracer
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.lambda_launcher import LambdaContext

from tests.conftest import ROOT
from vector_relay.tracing import reset_tracing


class Invocations:
    """Starts each invocation's trace as Lambda does: a new ``_X_AMZN_TRACE_ID`` (root, facade segment, sampled)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self.facade_ids: dict[str, str] = {}  # trace id -> the facade segment's id

    def new_trace(self, *, sampled: bool = True) -> str:
        trace_id = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
        facade = secrets.token_hex(8)
        self.facade_ids[trace_id] = facade
        header = f"Root={trace_id};Parent={facade};Sampled={int(sampled)}"
        self._monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
        return trace_id


@contextmanager
def lambda_tracing(monkeypatch: pytest.MonkeyPatch, *, emitter: Any) -> Iterator[Invocations]:
    """Tracing on, every document the recorder sends going to ``emitter`` (a ``UDPEmitter``, or a fake)."""
    saved = (xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold)
    enabled = global_sdk_config.sdk_enabled()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(ROOT / "functions"))
    monkeypatch.setenv("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR")
    Tracer._reset_config()  # Powertools' Tracer shares its configuration across instances
    reset_tracing()
    global_sdk_config.set_sdk_enabled(True)
    xray_recorder.configure(context=LambdaContext(), emitter=emitter, streaming_threshold=0)
    try:
        yield Invocations(monkeypatch)
    finally:
        xray_recorder.context, xray_recorder.emitter, xray_recorder.streaming_threshold = saved
        global_sdk_config.set_sdk_enabled(enabled)
        Tracer._reset_config()
        reset_tracing()
