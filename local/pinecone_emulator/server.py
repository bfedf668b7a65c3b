"""The sockets: the emulator's port (HTTP/1.1 over the standard library's ThreadingHTTPServer) and each index's own.

:class:`EmulatorServer` owns them and sends every request to the front door (:func:`routes.handle`).
The emulator's port serves everything: control plane, Admin API, test control, and every index's data
plane under ``/data/<index>``. Each index also gets a host of its own, ``http://host:<port>``, which
``describe_index`` reports, as Pinecone gives each index a host: a port that serves the index's data
plane over REST (HTTP/1.1, its paths as the SDK sends them to an index host) and over gRPC (HTTP/2
in cleartext), told apart by the connection's first bytes (port_sharing.py). A gRPC connection is
spliced to the index's gRPC server on loopback (grpc_server.py, grpcio loaded only then), because
the SDK's gRPC client names no index in what it sends: it dials a host and port and drops any path.

An index's port is opened the first time its host is asked for (creating, describing or listing it)
and kept for the life of the process, whatever happens to the index, as Pinecone keeps an index's
host name: a request to it for an index that no longer exists gets the data plane's 404. With
``--data-dir`` the ports are saved with the indexes and opened again on restart when they are free.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pinecone_emulator.app import Emulator
from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.port_sharing import speaks_http2, splice
from pinecone_emulator.routes import handle
from pinecone_emulator.wire import Request, Response

if TYPE_CHECKING:
    from pinecone_emulator.grpc_server import GrpcFrontEnd

log = logging.getLogger("pinecone_emulator")
MAX_BODY_BYTES = 64 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server
    server_version = "pinecone-emulator"
    sys_version = ""

    def handle_one_request(self) -> None:
        """As the stdlib's, but with a request-line limit large enough for fetch with 1,000 long ids."""
        limit = self.server.emulator.config.max_request_line
        try:
            self.raw_requestline = self.rfile.readline(limit + 1)
            if len(self.raw_requestline) > limit:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()
        except TimeoutError as error:
            self.log_error("Request timed out: %r", error)
            self.close_connection = True

    def _serve(self) -> None:
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.send_error(HTTPStatus.BAD_REQUEST if length < 0 else HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        path = self.server.path_prefix + path  # on an index's own port, its paths are that index's data plane
        request = Request(method=self.command, path=path, query_string=query, headers=self.headers, body=body)
        response = handle(self.server.emulator, request)
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        # headers and body in one write: two small writes meet Nagle and delayed ACKs (40 ms a request)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD" and response.body:
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.emulator.config.log_requests:
            log.info("%s - %s", self.address_string(), format % args)


type GrpcAddress = Callable[[str], tuple[str, int]]  # index name -> its gRPC server's address on loopback


class _Server(ThreadingHTTPServer):
    """The emulator's port (``index=None``), or an index's own: REST as if under ``/data/<index>``, and gRPC."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        emulator: Emulator,
        *,
        index: str | None = None,
        grpc_address: GrpcAddress | None = None,
    ) -> None:
        self.emulator = emulator
        self.index = index
        self.path_prefix = f"/data/{quote(index, safe='')}" if index is not None else ""
        self.grpc_address = grpc_address
        if index is not None:  # closing an index's port does not wait for its clients' open connections to end
            self.block_on_close = False
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """As HTTPServer's, without its reverse DNS lookup of the address (each index's port is bound on demand)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.index is not None and self.grpc_address is not None and speaks_http2(request):
            splice(request, self.grpc_address(self.index))
            return
        super().finish_request(request, client_address)


class _IndexPorts:
    """Each index's own port (:class:`_Server` with ``index``), opened on first use; one thread accepts on all."""

    def __init__(self, emulator: Emulator, grpc_address: GrpcAddress) -> None:
        self.emulator, self.grpc_address = emulator, grpc_address
        self._servers: dict[str, _Server] = {}
        self._opened: list[_Server] = []  # opened since the accepting thread last looked
        self._lock = threading.Lock()
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._accept_forever, name="pinecone-emulator-indexes", daemon=True)
        self._thread.start()

    def port(self, index: str) -> int:
        """The port of ``index``'s host, opened now if it was not (the one it had before a restart, if free)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the emulator has stopped")
            server = self._servers.get(index)
            if server is None:
                server = self._open(index)
                self._servers[index] = server
                self._opened.append(server)
                self._wake_write.send(b"\0")
        return int(server.server_address[1])

    def _open(self, index: str) -> _Server:
        config = self.emulator.config
        before = self.emulator.index_ports.get(index, 0)
        try:
            server = _Server((config.host, before), self.emulator, index=index, grpc_address=self.grpc_address)
        except OSError as error:
            if not before:
                raise
            log.warning(
                "index %s: its port %d is taken (%s); it gets a new one, and so a new host", index, before, error
            )
            server = _Server((config.host, 0), self.emulator, index=index, grpc_address=self.grpc_address)
        server.socket.setblocking(False)
        self.emulator.index_ports[index] = int(server.server_address[1])
        return server

    def _accept_forever(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:  # woken: new ports to watch, or stopping
                    with contextlib.suppress(BlockingIOError):
                        self._wake_read.recv(4096)
                    with self._lock:
                        if self._closed:
                            return
                        opened, self._opened = self._opened, []
                    for server in opened:
                        self._selector.register(server.socket, selectors.EVENT_READ, server)
                else:
                    try:
                        self._accept(key.data)
                    except Exception:  # one connection's failure (no thread to serve it) must not stop every port
                        log.exception("index port %s: a connection could not be served", key.data.server_address)

    @staticmethod
    def _accept(server: _Server) -> None:
        try:
            connection, address = server.socket.accept()
        except OSError:  # nothing to accept after all (the client went away), or the port was closed
            return
        connection.setblocking(True)
        server.process_request(connection, address)  # a thread per connection, as on the emulator's port

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            servers, self._servers, self._opened = list(self._servers.values()), {}, []
            self._wake_write.send(b"\0")
        self._thread.join(timeout=5)
        for server in servers:
            server.server_close()
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()


class EmulatorServer:
    """An emulator listening on a socket; ``port=0`` picks a free port. Usable as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, emulator: Emulator | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.emulator = emulator or Emulator(self.config)
        self._server = _Server((self.config.host, self.config.port), self.emulator)
        self.emulator.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._grpc: GrpcFrontEnd | None = None  # made on first use (grpcio loads only then)
        self._grpc_lock = threading.Lock()
        self._stopped = False  # under _grpc_lock: no gRPC front end is started once stop() has begun
        self._index_ports = _IndexPorts(self.emulator, self._grpc_address)
        self.emulator.index_endpoint = self.index_host

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def url(self) -> str:
        return self.emulator.base_url

    def index_host(self, index: str) -> str:
        """``http://host:port``: the index's own host, its data plane over REST and gRPC (its port opened now)."""
        host = self.config.advertise_host or self.config.host
        return f"http://{host}:{self._index_ports.port(index)}"

    def _grpc_address(self, index: str) -> tuple[str, int]:
        """Where the index's gRPC server listens on loopback (started now if it was not)."""
        with self._grpc_lock:
            if self._stopped:  # a connection spliced while stopping: nothing would ever stop a new front end
                raise ConnectionRefusedError("the emulator is stopping")
            if self._grpc is None:
                from pinecone_emulator.grpc_server import GrpcFrontEnd

                self._grpc = GrpcFrontEnd(functools.partial(handle, self.emulator))
            front_end = self._grpc
        return front_end.address(index)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="pinecone-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._index_ports.close()
        with self._grpc_lock:
            self._stopped = True
            front_end, self._grpc = self._grpc, None
        if front_end is not None:
            front_end.stop()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
