"""moto's AWS server as the local stack, the tests and the benchmarks run it, closer to AWS where it matters.

One server for all three (:class:`MotoServer`): moto's WSGI app in a threaded werkzeug server, in
a thread of this process, on a socket bound first (``ThreadedMotoServer`` binds in its thread and
waits without a timeout for that to succeed, so a port in use left it waiting for ever, deaf to
Ctrl-C; here the bind fails in the caller).

**DynamoDB requests are applied one at a time.** DynamoDB applies each conditional write and each
transaction atomically. moto evaluates a condition and then writes, in whatever thread the
request arrived on, so two conditional writes on one item arriving together can both pass; and
its ``TransactWriteItems`` first deep-copies every table it touches, to restore it if an action
is refused, while other threads go on writing to it (a copy taken mid-write raises, and moto
answers HTTP 500; a restore drops the writes made since the copy). The version guard's claims
are compare-and-set transactions (docs/ordering.md), so here every DynamoDB request holds one
lock of the process (moto's backends are global to the process, whichever server took the
request): each request is applied as one step, as DynamoDB's are. DynamoDB requests are short in
moto; the other services are not held.

**Connections are kept alive.** werkzeug's server answers every request with ``Connection: close``
(its request handler cannot skip a body the app left unread before the next request line), so
every AWS call of a worker opened a new TCP connection, where AWS keeps them open and botocore
reuses them from its pool. :class:`KeepAliveHandler` reads each request's body whole before the
app sees it, so nothing is left unread, and keeps HTTP/1.1 connections open unless the client
asks to close (a chunked request body still goes werkzeug's way and closes its connection).

**A transaction copies only what it touches.** Under that lock, :func:`transact_write_items`
replaces moto's for transactions of ``Put``, ``Delete`` and ``ConditionCheck`` actions: it
evaluates every condition first, cancels the whole transaction with each action's reason if any
fails (as DynamoDB answers), and only then applies the actions, keeping the items it replaces or
removes (moto's puts and deletes never change an item in place) to put back if one is refused
midway. moto's own copied every table the transaction named, whole, on every call (seconds per
call once the version guard's table holds some thousands of records); transactions with an
``Update`` still go to it.

**The version guard's calls skip Flask.** Its ``BatchGetItem``, ``TransactWriteItems``,
``PutItem`` and ``DeleteItem`` are answered by moto's own DynamoDB handler called directly, with
the answer written by orjson (:mod:`relay_local.dynamodb_direct`: the same answers, errors left to
moto's whole way), and conditions are parsed once per expression and evaluated with each request's
values (:mod:`relay_local.moto_conditions`). moto's server spent 175-249 ms of CPU per 1,000 guarded
records in ``bench/ingest_throughput.py``, more than the handler it served; 58-82 ms with both.
Answers go out in one write (status line, headers and body), and werkzeug's line per request is
not even formatted while its logger is quiet.

**CloudWatch answers percentiles.** ``GetMetricData`` with a percentile statistic (``p50``,
``p99``, ``p99.9``: the dashboard's latency and freshness graphs) failed with HTTP 500 in moto,
which computes only ``Sum``, ``Average``, ``Minimum``, ``Maximum`` and ``SampleCount``.
:func:`statistic_for_type` adds percentiles, by nearest rank over the values put in each period
(CloudWatch's own are estimates from the same values). Values put only as ``StatisticValues`` have
no percentile, in CloudWatch as here.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import re
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, SupportsFloat

from moto.cloudwatch.models import Statistics
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from relay_local import moto_conditions
from relay_local.dynamodb_direct import DirectDynamoDB

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

DYNAMODB_TARGET_PREFIX = "DynamoDB_"  # X-Amz-Target of DynamoDB's JSON API: DynamoDB_20120810.PutItem
_DYNAMODB_LOCK = threading.Lock()  # one per process: moto's backends are


class MotoServerError(OSError):
    """The server could not listen (the port is taken); the message says where."""


class AtomicDynamoDB:
    """A WSGI middleware that applies moto's DynamoDB requests one at a time (see the module's docstring)."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(DYNAMODB_TARGET_PREFIX):
            return self._app(environ, start_response)
        with _DYNAMODB_LOCK:
            return list(self._app(environ, start_response))  # the whole answer is made under the lock


TRANSACT_LIMIT = 100  # actions per TransactWriteItems (DynamoDB's limit)
_SIMPLE_ACTIONS = frozenset({"Put", "Delete", "ConditionCheck"})
_moto_transact_write_items = DynamoDBBackend.transact_write_items


def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """``TransactWriteItems`` for moto's DynamoDB: all conditions first, then all actions, or none.

    Runs under the server's DynamoDB lock (:class:`AtomicDynamoDB`), so nothing changes between the
    checks and the writes.
    """
    if len(transact_items) > TRANSACT_LIMIT:
        raise TooManyTransactionsException()
    if any(len(action) != 1 for action in transact_items):
        raise TransactWriteSingleOpException()
    if not all(next(iter(action)) in _SIMPLE_ACTIONS for action in transact_items):
        _moto_transact_write_items(backend, transact_items)
        return
    targets: list[tuple[str, dict[str, Any], Any]] = []  # (action, its parameters, the item's key in its table)
    seen: set[tuple[str, str]] = set()
    for action in transact_items:
        kind, parameters = next(iter(action.items()))
        table = backend.get_table(parameters["TableName"])
        if kind == "Put":
            attributes = parameters["Item"]
            key = {table.hash_key_attr: attributes[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attributes[table.range_key_attr]
        else:
            key = parameters["Key"]
        identity = (str(parameters["TableName"]), str(sorted(key.items())))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        targets.append((kind, parameters, key))
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    read: dict[int, Any] = {}  # each checked item as found, by its action's index: read once
    for index, (_, parameters, key) in enumerate(targets):
        reasons.append((None, None, None))
        expression = parameters.get("ConditionExpression")
        if expression is None:
            continue
        current = read[index] = backend.get_item(parameters["TableName"], key)
        condition = moto_conditions.filter_expression(
            expression, parameters.get("ExpressionAttributeNames"), parameters.get("ExpressionAttributeValues")
        )
        if not condition.expr(current):
            old = None
            if parameters.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None:
                old = current.to_json()["Attributes"]
            reasons[-1] = ("ConditionalCheckFailed", ConditionalCheckFailed().message, old)
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    # What each written item was, to put back if an action is refused midway. moto's writes replace an
    # item or remove it, never change it in place, so the item itself is that record: no copy needed.
    before = [
        (parameters["TableName"], key, read[index] if index in read else backend.get_item(parameters["TableName"], key))
        for index, (kind, parameters, key) in enumerate(targets)
        if kind != "ConditionCheck"
    ]
    try:
        for kind, parameters, key in targets:
            if kind == "Put":
                backend.put_item(parameters["TableName"], parameters["Item"])
            elif kind == "Delete":
                backend.delete_item(parameters["TableName"], key)
    except Exception:
        for table_name, key, item in before:  # refused midway (an invalid item): as if nothing happened
            backend.delete_item(table_name, key)
            if item is not None:
                backend.put_item(table_name, item.to_json()["Attributes"])
        raise


DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]
moto_conditions.install()


_PERCENTILE = re.compile(r"p(100|\d{1,2}(?:\.\d+)?)")  # CloudWatch's pNN and pNN.NN statistics
_moto_statistic = Statistics.get_statistics_for_type


def statistic_for_type(statistics: Statistics, stat: str) -> SupportsFloat | None:
    """moto's statistic of one period's values, or their percentile ``pNN`` (nearest rank)."""
    match = _PERCENTILE.fullmatch(stat)
    if match is None:
        return _moto_statistic(statistics, stat)
    values = sorted(statistics.metric_single_values_list)
    if not values:
        return None
    rank = math.ceil(float(match.group(1)) / 100 * len(values))
    return values[max(rank, 1) - 1]


Statistics.get_statistics_for_type = statistic_for_type  # type: ignore[method-assign,assignment]


def moto_app() -> Any:
    """moto's WSGI app for every service, with DynamoDB's requests applied atomically."""
    return AtomicDynamoDB(DirectDynamoDB(DomainDispatcherApplication(create_backend_app)))


class KeepAliveHandler(MotoRequestHandler):
    """moto's request handler, keeping HTTP/1.1 connections open between requests (see the module's docstring).

    It runs the app itself instead of werkzeug's ``run_wsgi``, which ends every request by reading
    whatever else is on the socket (the next request, on a kept connection) and closing it: the
    body is read whole before the app runs, and the answer is sent with its length.
    """

    timeout = 120  # an idle kept connection is closed after this long (its thread ends)
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_error(self, format: str, *args: Any) -> None:
        if not format.startswith("Request timed out"):  # an idle kept connection ending: nothing went wrong
            super().log_error(format, *args)

    def run_wsgi(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            super().run_wsgi()  # werkzeug's way, connection closed after it
            return
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        length = int(self.headers.get("Content-Length") or 0)
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        answer: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return chunks.append

        try:
            result = self.server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except Exception:  # moto's own failure: answered as werkzeug would, and the connection closed
            self.log_error("moto failed on %s %s", self.command, self.path)
            answer = {"status": "500 Internal Server Error", "headers": [("Content-Type", "text/plain")]}
            chunks = [b"Internal Server Error"]
            self.close_connection = True
        code, _, reason = str(answer["status"]).partition(" ")
        status = int(code)
        body = b"".join(chunks)
        self.log_request(status)
        head = [
            f"{self.protocol_version} {status} {reason or self.responses.get(status, ('',))[0]}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        head += [
            f"{name}: {value}"
            for name, value in answer["headers"]
            if name.lower() not in ("content-length", "connection", "transfer-encoding")
        ]
        has_body = self.command != "HEAD" and status not in (204, 304) and status >= 200
        if has_body:
            head.append(f"Content-Length: {len(body)}")
        if self.close_connection:  # the client asked for it, or moto failed
            head.append("Connection: close")
        # status line, headers and body in one write: one segment to send and wait for, not two
        self.wfile.write("\r\n".join(head).encode("latin-1", "strict") + b"\r\n\r\n" + (body if has_body else b""))
        self.wfile.flush()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger = logging.getLogger("werkzeug")
        if logger.level == logging.NOTSET or logger.isEnabledFor(logging.INFO):  # MotoServer sets ERROR: no line
            super().log_request(code, size)


class MotoServer:
    """moto's server in a thread on ``host:port`` (port 0: one the OS picks), until :meth:`stop`."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, port))
            listener.listen(128)
            self._server: BaseWSGIServer = make_server(
                host, port, moto_app(), threaded=True, request_handler=KeepAliveHandler, fd=listener.fileno()
            )
        except OSError as error:
            raise MotoServerError(f"moto cannot listen on {host}:{port}: {error.strerror}") from None
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()


def main(argv: list[str] | None = None) -> None:
    """``python -m relay_local.moto_server --port N``: the server in the foreground (the benchmarks run it so)."""
    parser = argparse.ArgumentParser(prog="python -m relay_local.moto_server", description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: one the OS picks (printed)")
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args(argv)
    server = MotoServer(options.port, options.host)
    print(f"moto's AWS server on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
