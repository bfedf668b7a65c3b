"""DynamoDB faults on demand: an HTTP proxy in front of moto's server that holds, drops or duplicates requests.

moto applies every request at once and answers it; DynamoDB does not promise that. A write whose
client timed out or lost its connection may still be applied, later, after the client gave up,
retried or moved on; a request may be carried out twice. This proxy makes those cases happen on
purpose: boto3 talks to it (``AWS_ENDPOINT_URL_DYNAMODB``, or ``AWS_ENDPOINT_URL`` for every
service, or ``endpoint_url``) and it forwards to moto's server, except where a rule
(:mod:`relay_local.dynamodb_fault_rules`) says to hold a request, drop its connection and apply it
later (or never), or apply it twice. Requests of other services pass through untouched.

The rules' dice come from one ``random.Random(seed)``, so a seed and the same requests in the same
order give the same faults. :meth:`DynamoDBFaultProxy.flush` carries out every held or delayed
request now, in the order they came (tests: instead of waiting); :meth:`~DynamoDBFaultProxy.clear`
forgets them and the rules. Also over HTTP on the proxy's own port, for processes that do not
share the test's interpreter: ``GET /_faults`` (rules, pending count, journal), ``POST
/_faults/rules`` (one rule; its id back), ``POST /_faults/flush``, ``DELETE /_faults``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pinecone_emulator.faults import draw
from relay_local.dynamodb_fault_rules import FaultRule, FaultSpecError, FaultStep

CONTROL_PREFIX = "/_faults"
# hop-by-hop headers, and those this proxy's own server writes (Content-Length, Server, Date)
_NOT_FORWARDED = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length"}
_NOT_RELAYED = _NOT_FORWARDED | {"server", "date"}


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the client sent it, to be forwarded to moto as it is (its signature included)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def operation(self) -> str | None:
        """The DynamoDB operation, or None for anything else (another service's request: passed through)."""
        target = {name.lower(): value for name, value in self.headers}.get("x-amz-target", "")
        service, _, operation = target.partition(".")
        return operation if service.startswith("DynamoDB_") and operation else None

    @property
    def tables(self) -> frozenset[str]:
        """Every table the request names (TableName, RequestItems' keys, each transaction item's TableName)."""
        try:
            body = json.loads(self.body or b"{}")
        except ValueError:
            return frozenset()
        if not isinstance(body, dict):
            return frozenset()
        names = set(body.get("RequestItems") or {})
        if isinstance(body.get("TableName"), str):
            names.add(body["TableName"])
        for item in body.get("TransactItems") or []:
            names.update(part["TableName"] for part in item.values() if isinstance(part, dict) and "TableName" in part)
        return frozenset(names)


@dataclass(slots=True)
class Pending:
    """A request held or scheduled to be forwarded later; :meth:`DynamoDBFaultProxy.flush` releases it early."""

    request: Request
    what: str  # "held", "applied late", "duplicate"
    due: float  # time.monotonic()
    release: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What moto answered."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class DynamoDBFaultProxy:
    """The proxy on a loopback port (``port=0``: the OS picks one). Usable as a context manager."""

    def __init__(self, upstream: str, *, seed: int | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"upstream must be http://host:port (moto's server), got {upstream!r}")
        self._upstream = (parsed.hostname, parsed.port)
        self._seed = seed
        self._random = random.Random(seed)  # noqa: S311 - fault dice, not cryptography
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []
        self._pending: list[Pending] = []
        self.journal: list[dict[str, Any]] = []  # one entry per request a rule fired on, and per late forward
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> DynamoDBFaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="dynamodb-faults", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held and delayed requests are forgotten (never forwarded)."""
        self.clear()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> DynamoDBFaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # rules --------------------------------------------------------------------------------------
    def add_rule(self, operation: str = "write", **rule: Any) -> str:
        """Add one rule (see the module's docstring); returns its id."""
        parsed = FaultRule.from_json({"operation": operation, **rule})
        with self._lock:
            self.rules.append(parsed)
        return parsed.id

    def script(self, operation: str, *steps: object, table: str | None = None) -> str:
        """Answer the next matching requests with ``steps`` ("ok", "drop", {...}), in order."""
        return self.add_rule(operation, sequence=list(steps), **({"table": table} if table else {}))

    def clear(self) -> None:
        """No rules, no journal, the dice back at the seed; held and delayed requests are forgotten."""
        with self._lock:
            self.rules = []
            self.journal = []
            self._random.seed(self._seed)
            pending, self._pending = self._pending, []
        for item in pending:
            item.cancelled = True
            item.release.set()

    def pending(self) -> int:
        """Requests held or scheduled that have not been forwarded yet."""
        with self._lock:
            return len(self._pending)

    def flush(self, timeout: float = 30.0) -> int:
        """Forward every held or delayed request now, one after another in the order they came; returns how many."""
        with self._lock:
            pending = list(self._pending)
        for item in pending:
            item.release.set()
            if not item.done.wait(timeout):
                raise TimeoutError(f"a {item.what} {item.request.operation} was not forwarded within {timeout} s")
        return len(pending)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "rules": [rule.to_json() for rule in self.rules],
                "pending": len(self._pending),
                "journal": list(self.journal),
            }

    # serving ------------------------------------------------------------------------------------
    def decide(self, request: Request) -> FaultStep | None:
        operation = request.operation
        if operation is None:
            return None
        tables = request.tables
        with self._lock:
            for rule in self.rules:
                if not rule.matches(operation, tables):
                    continue
                step = draw(rule, self._random)
                if step is None:
                    continue
                if not step.is_fault:  # an "ok" step of a sequence
                    return None
                self.journal.append(
                    {"rule": rule.id, "operation": operation, "tables": sorted(tables), **step.to_json()}
                )
                return step
        return None

    def forward(self, request: Request) -> Forwarded:
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {name: value for name, value in request.headers if name.lower() not in _NOT_FORWARDED}
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            body = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _NOT_RELAYED]
            return Forwarded(response.status, kept, body)
        finally:
            connection.close()

    def later(self, request: Request, what: str, after_ms: float) -> Pending:
        """Schedule ``request`` to be forwarded ``after_ms`` from now (or at :meth:`flush`), on its own thread."""
        item = self._track(request, what, after_ms)
        threading.Thread(
            target=self._forward_when_due, args=(item,), name=f"dynamodb-faults-{what}", daemon=True
        ).start()
        return item

    def hold(self, request: Request, hold_ms: float) -> Forwarded | None:
        """Wait ``hold_ms`` (or until :meth:`flush`), then forward; None when cleared meanwhile."""
        item = self._track(request, "held", hold_ms)
        item.release.wait(hold_ms / 1000.0)
        return self._settle(item)

    def settle_now(self, request: Request, what: str) -> Forwarded | None:
        """Forward ``request`` now (a duplicate sent at once), noted in the journal like a late one."""
        return self._settle(self._track(request, what, 0.0))

    def _track(self, request: Request, what: str, after_ms: float) -> Pending:
        item = Pending(request, what, time.monotonic() + after_ms / 1000.0)
        with self._lock:
            self._pending.append(item)
        return item

    def _forward_when_due(self, item: Pending) -> None:
        item.release.wait(max(item.due - time.monotonic(), 0.0))
        self._settle(item)

    def _settle(self, item: Pending) -> Forwarded | None:
        try:
            with self._lock:
                if item.cancelled or item not in self._pending:
                    return None
                self._pending.remove(item)
            try:
                answer: Forwarded | None = self.forward(item.request)
            except (OSError, http.client.HTTPException):  # moto stopped: the late write is lost
                answer = None
            with self._lock:
                self.journal.append(
                    {"forwarded": item.what, "operation": item.request.operation, "status": answer and answer.status}
                )
            return answer
        finally:
            item.done.set()

    def control(self, method: str, path: str, body: bytes) -> tuple[int, object]:
        """The HTTP control surface under :data:`CONTROL_PREFIX`."""
        try:
            if (method, path) == ("GET", CONTROL_PREFIX):
                return 200, self.state()
            if (method, path) == ("DELETE", CONTROL_PREFIX):
                self.clear()
                return 200, {}
            if (method, path) == ("POST", f"{CONTROL_PREFIX}/rules"):
                raw = json.loads(body or b"{}")
                if not isinstance(raw, dict):
                    raise FaultSpecError("a fault rule must be a JSON object")
                return 201, {"id": self.add_rule(**raw)}
            if (method, path) == ("POST", f"{CONTROL_PREFIX}/flush"):
                return 200, {"flushed": self.flush()}
        except (FaultSpecError, ValueError, TypeError) as error:
            return 400, {"error": str(error)}
        return 404, {"error": f"no control endpoint {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive where the client wants it; a dropped request closes its connection

    def _serve(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0].rstrip("/").startswith(CONTROL_PREFIX):
            status, payload = proxy.control(self.command, self.path.split("?", 1)[0].rstrip("/"), body)
            self._answer(Forwarded(status, [("Content-Type", "application/json")], json.dumps(payload).encode()))
            return
        request = Request(self.command, self.path, tuple(self.headers.items()), body)
        step = proxy.decide(request)
        if step is None:
            self._answer(proxy.forward(request))
            return
        answer: Forwarded | None = None
        if step.hold_ms:
            answer = proxy.hold(request, step.hold_ms)  # forwarded (late) unless cleared meanwhile
            if answer is None:
                self._drop()
                return
        if step.drop or step.drop_then_apply_after_ms is not None:
            if step.drop_then_apply_after_ms is not None:
                proxy.later(request, "applied late", step.drop_then_apply_after_ms)
            self._drop()
            return
        if answer is None:
            answer = proxy.forward(request)
        if step.duplicate:
            if step.duplicate_after_ms:
                proxy.later(request, "duplicate", step.duplicate_after_ms)
            else:
                proxy.settle_now(request, "duplicate")
        self._answer(answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def _answer(self, answer: Forwarded) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            self.wfile.flush()
        except OSError:  # the client gave up (a read timeout): the write was applied all the same
            self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], proxy: DynamoDBFaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out, or its process was killed) is part of the faults: no traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
