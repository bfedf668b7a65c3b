"""Lambda execution environments on one machine: the real ``awslambdaric`` against a local Runtime API.

Each :class:`RuntimeEnvironment` is one process running ``python -m awslambdaric app.lambda_handler``
in the function's code folder, with the environment the template gives the function plus Lambda's
own variables, and its own small Runtime API (``/2018-06-01/runtime/...``) on a loopback port. The
runtime pulls one invocation at a time from ``invocation/next`` and posts the handler's response or
error back, so module import, warm reuse of cached clients, the context object (deadline, request
id, ARN) and JSON marshalling are Lambda's own code. An invocation that overruns the function's
timeout ends the process, as Lambda ends a timed-out environment; the next invocation starts a new
one (a cold start).

Each invocation gets a trace header, as Lambda gives one: sampled by Lambda's rule when the function
traces actively and the stack collects traces, with the function's segment sent to the X-Ray daemon's
address after the invocation (:mod:`relay_local.active_tracing`); ``Sampled=0`` otherwise.

:class:`InProcessEnvironment` runs a handler callable in a thread instead, for fast tests of the
poller that do not need a process per function.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from relay_local.active_tracing import FunctionTracing, new_trace_header

RUNTIME_PREFIX = "/2018-06-01/runtime"
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit for the init phase of an on-demand function
PUMP_DRAIN_SECONDS = 5.0  # how long close waits for the copy of an ended process's output to finish
# Variables a function process inherits from the machine; everything else comes from the template.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

Outcome = Literal["ok", "error", "timeout", "crashed"]


@dataclass
class InvocationResult:
    """What one invocation ended with: a response, a function error, a timeout or a dead runtime."""

    outcome: Outcome
    payload: Any = None  # the response (ok) or Lambda's error object (errorType, errorMessage, stackTrace)
    duration_ms: float = 0.0
    cold_start: bool = False
    request_id: str = ""

    @property
    def error_type(self) -> str | None:
        if self.outcome == "ok":
            return None
        if isinstance(self.payload, dict) and self.payload.get("errorType"):
            return str(self.payload["errorType"])
        return {"timeout": "Sandbox.Timedout", "crashed": "Runtime.ExitError"}.get(self.outcome, "Unknown")


class ExecutionEnvironment(Protocol):
    """One warm (or cold) environment of a function; runs one invocation at a time."""

    @property
    def alive(self) -> bool: ...

    def invoke(self, event: Mapping[str, Any], timeout_seconds: float) -> InvocationResult: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- Runtime API
@dataclass
class _Invocation:
    request_id: str
    body: bytes
    function_arn: str
    timeout_seconds: float
    trace_header: str
    submitted_at: float = field(default_factory=time.time)
    picked_up_at: float = 0.0  # epoch seconds; 0 while the runtime has not asked for it
    deadline_ms: int = 0
    picked_up: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome = "ok"
    payload: Any = None


class RuntimeApi:
    """The Runtime API of one execution environment, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self._pending: queue.Queue[_Invocation] = queue.Queue()
        self._active: dict[str, _Invocation] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.init_error: dict[str, Any] | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == f"{RUNTIME_PREFIX}/invocation/next":
                    api._next(self)
                else:
                    self._reply(404, b'{"errorType": "NotFound"}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = self.path.removeprefix(RUNTIME_PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = _json_or_text(body)
                    api._fail_all("crashed", api.init_error)
                    self._reply(202, b"{}")
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in {"response", "error"}:
                    found = api._finish(parts[1], "ok" if parts[2] == "response" else "error", body)
                    self._reply(202 if found else 400, b"{}")
                else:
                    self._reply(404, b'{"errorType": "NotFound"}')

            def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """``host:port``, the value of ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def submit(self, body: bytes, *, function_arn: str, timeout_seconds: float, trace_header: str = "") -> _Invocation:
        """Queue one invocation; ``trace_header``: its ``Lambda-Runtime-Trace-Id`` (default: new, unsampled)."""
        header = trace_header or str(new_trace_header(sampled=False))
        invocation = _Invocation(str(uuid.uuid4()), body, function_arn, timeout_seconds, header)
        with self._lock:
            self._active[invocation.request_id] = invocation
        self._pending.put(invocation)
        return invocation

    def _next(self, handler: Any) -> None:
        while not self._closed.is_set():
            try:
                invocation = self._pending.get(timeout=0.2)
            except queue.Empty:
                continue
            if invocation.done.is_set():  # abandoned before the runtime asked for it
                continue
            invocation.picked_up_at = time.time()
            invocation.deadline_ms = int((invocation.picked_up_at + invocation.timeout_seconds) * 1000)
            invocation.picked_up.set()
            handler._reply(
                200,
                invocation.body,
                {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                    "Lambda-Runtime-Trace-Id": invocation.trace_header,  # awslambdaric: _X_AMZN_TRACE_ID
                },
            )
            return

    def _finish(self, request_id: str, outcome: Outcome, body: bytes) -> bool:
        with self._lock:
            invocation = self._active.pop(request_id, None)
        if invocation is None:
            return False
        invocation.outcome = outcome
        invocation.payload = _json_or_text(body)
        invocation.done.set()
        return True

    def _fail_all(self, outcome: Outcome, payload: Any) -> None:
        with self._lock:
            active, self._active = list(self._active.values()), {}
        for invocation in active:
            invocation.outcome = outcome
            invocation.payload = payload
            invocation.done.set()

    def abandon(self, invocation: _Invocation) -> None:
        with self._lock:
            self._active.pop(invocation.request_id, None)
        invocation.done.set()

    def close(self) -> None:
        self._closed.set()
        self._fail_all("crashed", {"errorType": "Runtime.Shutdown", "errorMessage": "environment shut down"})
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    """A runtime stopped mid-connection (a timeout, Ctrl-C) is expected, not an error to print."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode(errors="replace")


# ---------------------------------------------------------------------------- awslambdaric process
@dataclass(frozen=True)
class FunctionRuntimeConfig:
    """What a function's environments are started with."""

    name: str  # the deployed function name
    arn: str
    code_dir: Path
    handler: str
    timeout_seconds: float
    memory_mb: int
    environment: Mapping[str, str]  # the template's variables plus the local stack's endpoints
    layer_dirs: tuple[Path, ...] = ()  # on PYTHONPATH after the code, as /opt/python is in Lambda
    python: str = sys.executable
    tracing: str = "PassThrough"  # the template's Tracing property: Active or PassThrough
    xray_daemon_address: str = ""  # host:port of the stack's X-Ray collector; "" = none listens


class RuntimeEnvironment:
    """One Lambda execution environment: an ``awslambdaric`` process and its Runtime API."""

    def __init__(
        self,
        config: FunctionRuntimeConfig,
        *,
        log: IO[str] | int | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """``log``: where the process's stdout and stderr go (None: this process's own); ``on_line``: called
        with every line of that output too, after the line is in the log (the local stack's metrics feed);
        it must return at once, as a pipe that is not read stalls the function."""
        self.config = config
        self.api = RuntimeApi()
        self.tracing = FunctionTracing(
            name=config.name,
            arn=config.arn,
            active=config.tracing == "Active",
            daemon_address=config.xray_daemon_address,
        )
        self._invocations = 0
        self._lock = threading.Lock()
        environment = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
        environment.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
                "AWS_LAMBDA_FUNCTION_NAME": config.name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(config.timeout_seconds)),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{uuid.uuid4().hex}",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "LAMBDA_TASK_ROOT": str(config.code_dir),
                "_HANDLER": config.handler,
                "PYTHONPATH": os.pathsep.join(str(p) for p in (config.code_dir, *config.layer_dirs)),
                "PYTHONDONTWRITEBYTECODE": "1",
                "TZ": ":UTC",
            }
        )
        if config.xray_daemon_address:  # what Lambda sets for the X-Ray SDK, with its daemon's address
            host, _, port = config.xray_daemon_address.rpartition(":")
            environment.update(
                {
                    "AWS_XRAY_DAEMON_ADDRESS": config.xray_daemon_address,
                    "_AWS_XRAY_DAEMON_ADDRESS": host,
                    "_AWS_XRAY_DAEMON_PORT": port,
                    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
                }
            )
        environment.update(config.environment)
        output, pump = _process_output(log, on_line)
        self.started = time.monotonic()
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, the template's handler
            [config.python, "-m", "awslambdaric", config.handler],
            cwd=config.code_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,  # Ctrl-C reaches the local stack, which then stops its environments
        )

        self._pump: threading.Thread | None = None
        if pump is not None and self.process.stdout is not None:
            self._pump = threading.Thread(
                target=pump, args=(self.process.stdout,), name=f"output-{config.name}", daemon=True
            )
            self._pump.start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None and self.api.init_error is None

    def invoke(self, event: Mapping[str, Any], timeout_seconds: float | None = None) -> InvocationResult:
        timeout = self.config.timeout_seconds if timeout_seconds is None else timeout_seconds
        with self._lock:
            cold = self._invocations == 0
            self._invocations += 1
            body = json.dumps(event).encode()
            trace = self.tracing.begin()
            invocation = self.api.submit(
                body, function_arn=self.config.arn, timeout_seconds=timeout, trace_header=str(trace)
            )
            result = self._run(invocation, timeout, cold)
            self.tracing.end(
                trace,
                request_id=invocation.request_id,
                start=invocation.picked_up_at or invocation.submitted_at,
                end=time.time(),
                failed=result.outcome != "ok",
            )
            return result

    def _run(self, invocation: _Invocation, timeout: float, cold: bool) -> InvocationResult:
        """Wait for the runtime to pick ``invocation`` up and answer it, within Lambda's limits."""
        started = time.monotonic()
        # Init (import of the handler module) happens before the first invocation/next.
        if not self._wait(invocation.picked_up, INIT_TIMEOUT_SECONDS if cold else 5.0, invocation):
            return self._dead(invocation, started, cold)
        invoke_started = time.monotonic()
        if not self._wait(invocation.done, timeout, invocation):
            if self.alive:  # overran its timeout: Lambda stops the environment
                self.close()
                return InvocationResult(
                    "timeout",
                    {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"Task timed out after {timeout:.2f} seconds",
                    },
                    (time.monotonic() - invoke_started) * 1000,
                    cold,
                    invocation.request_id,
                )
            return self._dead(invocation, started, cold)
        return InvocationResult(
            invocation.outcome,
            invocation.payload,
            (time.monotonic() - invoke_started) * 1000,
            cold,
            invocation.request_id,
        )

    def _wait(self, event: threading.Event, seconds: float, invocation: _Invocation) -> bool:
        """Wait for ``event``; False if the time ran out or the process died first."""
        deadline = time.monotonic() + seconds
        while not event.wait(0.05):
            if not self.alive:
                return event.is_set()
            if time.monotonic() >= deadline:
                return False
        return True

    def _dead(self, invocation: _Invocation, started: float, cold: bool) -> InvocationResult:
        self.api.abandon(invocation)
        payload = invocation.payload if invocation.done.is_set() and invocation.payload else None
        if payload is None:
            payload = self.api.init_error or {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"runtime exited with {self.process.poll()} before answering",
            }
        self.close()
        return InvocationResult("crashed", payload, (time.monotonic() - started) * 1000, cold, invocation.request_id)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=3)
        if self._pump is not None:  # the process's last lines are in the log (and with on_line) when close returns
            self._pump.join(timeout=PUMP_DRAIN_SECONDS)
        self.api.close()


def _process_output(
    log: IO[str] | int | None, on_line: Callable[[str], None] | None
) -> tuple[IO[str] | int | None, Callable[[IO[bytes]], None] | None]:
    """Where the process writes, and what reads its pipe if it writes to one.

    The log itself if it is a real file and no one else wants the lines; else a pipe, each line of
    which is written to the log unchanged (the same bytes to a real file) and then given to ``on_line``.
    """
    if on_line is None:
        if log is None or isinstance(log, int):
            return log, None
        try:
            log.fileno()
        except (OSError, ValueError, AttributeError):  # e.g. a captured sys.stderr in tests
            return subprocess.PIPE, partial(_pump, write=_line_writer(log))
        return log, None
    return subprocess.PIPE, partial(_pump, write=_line_writer(sys.stdout if log is None else log), on_line=on_line)


def _line_writer(log: IO[str] | int) -> Callable[[bytes], None]:
    """Writes one line of the process's output to ``log`` as the process would have: the same bytes."""
    if isinstance(log, int):
        if log < 0:  # subprocess.DEVNULL (PIPE and STDOUT mean nothing for a log)
            return lambda line: None
        return partial(_write_all, log)
    binary = getattr(log, "buffer", None)
    try:
        log.fileno()
    except (OSError, ValueError, AttributeError):  # no file under it (a captured sys.stderr): text, as before
        binary = None
    if binary is not None:  # through the file object, never its descriptor: once closed, it says so

        def write_bytes(line: bytes) -> None:
            binary.write(line)
            binary.flush()

        return write_bytes

    def write_text(line: bytes) -> None:
        log.write(line.decode(errors="replace"))

    return write_text


def _write_all(descriptor: int, line: bytes) -> None:
    view = memoryview(line)
    while view:
        view = view[os.write(descriptor, view) :]


def _pump(source: IO[bytes], *, write: Callable[[bytes], None], on_line: Callable[[str], None] | None = None) -> None:
    """Copy the process's output line by line until it ends; a log that fails stops being written, not read."""
    writing = True
    with contextlib.suppress(ValueError, OSError):  # the pipe itself closed
        for line in source:
            if writing:
                try:
                    write(line)
                except (ValueError, OSError):  # the log closed (the stack stopping): keep the pipe drained
                    writing = False
            if on_line is not None:
                with contextlib.suppress(Exception):
                    on_line(line.decode(errors="replace"))


# ---------------------------------------------------------------------------- in-process
class InProcessEnvironment:
    """A handler callable run in a thread; a timed-out invocation is abandoned (the thread cannot be killed)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], context_factory: Callable[[float], Any]) -> None:
        self.handler = handler
        self.context_factory = context_factory
        self._alive = True
        self._invocations = 0

    @property
    def alive(self) -> bool:
        return self._alive

    def invoke(self, event: Mapping[str, Any], timeout_seconds: float) -> InvocationResult:
        cold = self._invocations == 0
        self._invocations += 1
        result: list[InvocationResult] = []
        started = time.monotonic()

        def run() -> None:
            try:
                response = self.handler(json.loads(json.dumps(event)), self.context_factory(timeout_seconds))
                result.append(InvocationResult("ok", json.loads(json.dumps(response)), cold_start=cold))
            except Exception as error:
                payload = {"errorType": type(error).__name__, "errorMessage": str(error)}
                result.append(InvocationResult("error", payload, cold_start=cold))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout_seconds)
        elapsed = (time.monotonic() - started) * 1000
        if not result:
            self._alive = False
            message = f"Task timed out after {timeout_seconds:.2f} seconds"
            return InvocationResult(
                "timeout", {"errorType": "Sandbox.Timedout", "errorMessage": message}, elapsed, cold
            )
        result[0].duration_ms = elapsed
        return result[0]

    def close(self) -> None:
        self._alive = False


def close_quietly(environment: ExecutionEnvironment) -> None:
    with contextlib.suppress(Exception):
        environment.close()
