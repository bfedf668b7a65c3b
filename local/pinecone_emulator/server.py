"""The sockets: HTTP/1.1 over the standard library's ThreadingHTTPServer, and the gRPC front end's listeners.

:class:`EmulatorServer` owns both and sends every request to the front door (:func:`routes.handle`);
it starts the gRPC front end (grpc_server.py, grpcio loaded only then) on the first request for an
index's gRPC endpoint (``GET /_emulator/indexes/<name>/grpc``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from pinecone_emulator.app import Emulator
from pinecone_emulator.config import EmulatorConfig
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class EmulatorServer:
    """An emulator listening on a socket; ``port=0`` picks a free port. Usable as a context manager."""

    def __init__(self, config: EmulatorConfig | None = None, emulator: Emulator | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.emulator = emulator or Emulator(self.config)
        self._server = _Server((self.config.host, self.config.port), self.emulator)
        self.emulator.port = self._server.server_address[1]
        self.emulator.grpc_endpoint = self.grpc_endpoint
        self._thread: threading.Thread | None = None
        self._grpc: GrpcFrontEnd | None = None  # made on first use (grpcio loads only then)
        self._grpc_lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.emulator.port

    @property
    def url(self) -> str:
        return self.emulator.base_url

    def grpc_endpoint(self, index: str) -> str:
        """``http://host:port`` serving the index's data plane over gRPC (its listener started now if it was not)."""
        with self._grpc_lock:
            if self._grpc is None:
                from pinecone_emulator.grpc_server import GrpcFrontEnd

                host = self.emulator.config.advertise_host or self.emulator.config.host
                self._grpc = GrpcFrontEnd(functools.partial(handle, self.emulator), host=host)
            front_end = self._grpc
        return front_end.endpoint(index)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="pinecone-emulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        with self._grpc_lock:
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
