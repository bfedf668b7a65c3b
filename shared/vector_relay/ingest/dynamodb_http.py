"""Kept-alive HTTP/1.1 connections for the version guard's DynamoDB requests, at a fraction of urllib3's CPU.

The guard makes a handful of small requests per batch, and each went through botocore's HTTP
session: urllib3's pool and ``http.client``, whose request and response handling cost about 270 us
of CPU per request against moto's server on loopback, where writing the request and reading the
answer on a kept-alive socket costs about 30 us (measured: /tmp scripts, one ``PutItem`` 300 times;
docs/performance.md). Over a batch of 100 one-record messages that was a quarter of the guard's CPU.

:class:`DynamoDBEndpoint` keeps the botocore session's settings (its endpoint, connect and read
timeouts, certificate verification, socket options) and speaks only what DynamoDB's JSON protocol
needs: a ``POST`` with a ``Content-Length`` body, and an answer with a ``Content-Length`` or chunked
body. It is made only where the botocore session would connect directly: with a proxy for the
endpoint, or a client certificate, :meth:`DynamoDBEndpoint.for_session` gives None and the session
is used as before. Errors are botocore's own (:class:`~botocore.exceptions.ConnectTimeoutError`,
:class:`~botocore.exceptions.ReadTimeoutError`, :class:`~botocore.exceptions.EndpointConnectionError`,
:class:`~botocore.exceptions.ConnectionClosedError`, :class:`~botocore.exceptions.SSLError`), and like
the session it never sends a request twice: a connection idle for :data:`CHECK_AFTER_IDLE_SECONDS` or
more that the server has closed is noticed before it is reused (urllib3 checks at every reuse), and any
failure after the request was written is the caller's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import URLLib3Session, get_cert_path

MAX_HEAD_BYTES = 65_536  # status line and headers; DynamoDB's are well under 1 KB
MAX_IDLE_CONNECTIONS = 10  # botocore's max_pool_connections default
# A pooled connection idle for longer is checked before it is used (urllib3 checks every time; Apache HttpClient's
# pool, which the AWS SDK for Java uses, checks only after 2 s idle by default: validateAfterInactivity).
CHECK_AFTER_IDLE_SECONDS = 1.0
_READ_SIZE = 65_536


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class Reply:
    """The answer to a request written on a connection: called, it reads the answer (once); :meth:`ready` says,
    without waiting, whether reading it would only wait for the rest of an answer already on its way."""

    __slots__ = ("_connection", "_read")

    def __init__(self, read: Callable[[], Answer], connection: socket.socket) -> None:
        self._read = read
        self._connection = connection

    def __call__(self) -> Answer:
        return self._read()

    def ready(self) -> bool:
        """Whether the answer has started to arrive (or the connection ended or failed: reading then says how)."""
        connection = self._connection
        if isinstance(connection, ssl.SSLSocket) and connection.pending():
            return True  # TLS read part of it off the socket already, where select cannot see it
        return _has_input(connection)


class DynamoDBEndpoint:
    """``POST`` to one endpoint over kept-alive connections (thread-safe: each request has a connection to itself)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        socket_options: tuple[tuple[int, int, int], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP endpoint: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if self._https else 80))
        self.host = host_header(url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")  # as botocore sends it
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # A factory is called at the first connection: loading the certificate bundle is not a cold start's cost.
        self._ssl = ssl_context if self._https else None
        if self._https and self._ssl is None:
            raise ValueError("an https endpoint needs an SSL context")
        self._options = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), *socket_options)
        self._idle: list[tuple[socket.socket, float]] = []  # with when each was given back
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def for_session(cls, url: str, session: URLLib3Session) -> DynamoDBEndpoint | None:
        """An endpoint with ``session``'s settings, or None where the session must send (proxy, client cert)."""
        settings: Any = session  # its settings are private attributes (botocore 1.35): read, never changed
        if settings._proxy_config.proxy_url_for(url) or settings._cert_file:
            return None
        timeout = settings._timeout
        connect, read = (
            (timeout, timeout) if isinstance(timeout, int | float) else (timeout.connect_timeout, timeout.read_timeout)
        )
        context = None
        if urlsplit(url).scheme == "https":
            verify = settings._verify
            if verify is False:  # the client was configured with verify=False
                context = ssl._create_unverified_context
            else:  # a bundle file, or a directory of certificates (as AWS_CA_BUNDLE may name)
                path = str(get_cert_path(verify))
                if os.path.isdir(path):
                    context = functools.partial(ssl.create_default_context, capath=path)
                else:
                    context = functools.partial(ssl.create_default_context, cafile=path)
        options = tuple(tuple(option) for option in settings._socket_options)
        return cls(url, connect_timeout=connect, read_timeout=read, ssl_context=context, socket_options=options)

    def post(self, headers: dict[str, str], body: bytes) -> Answer:
        """Send one request; the answer, whatever its status. Raises botocore's connection errors."""
        return self.send(headers, body)()

    def send(self, headers: dict[str, str], body: bytes) -> Reply:
        """Write one request now; its :class:`Reply`, which reads the answer (call it once: the connection is its
        own until then). Raises botocore's connection errors, here for the request or there for the answer.

        So the version guard's release marker is on its way before the handler returns while a claim thread
        reads the answer, and the handler's thread can send a claim group between two messages and read its
        answer between two later ones (:meth:`Reply.ready`).
        """
        head = [f"POST {self._path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        head += (
            f"{name}: {value}" for name, value in headers.items() if name.lower() not in ("host", "content-length")
        )
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = self._checkout()
        with self._errors_mapped(connection):
            connection.sendall(request)
        return Reply(functools.partial(self._answer, connection), connection)

    def _answer(self, connection: socket.socket) -> Answer:
        with self._errors_mapped(connection):
            answer, keep = _read_answer(connection)
        if keep:
            self._checkin(connection)
        else:
            connection.close()
        return answer

    @contextlib.contextmanager
    def _errors_mapped(self, connection: socket.socket) -> Iterator[None]:
        """botocore's errors for a failure on ``connection``, which is then closed (never reused)."""
        try:
            try:
                yield
            except TimeoutError as error:
                raise ReadTimeoutError(endpoint_url=self.url, error=error) from error
            except ssl.SSLError as error:
                raise SSLError(endpoint_url=self.url, error=error) from error
            except (OSError, _Malformed) as error:
                raise ConnectionClosedError(endpoint_url=self.url) from error
        except BaseException:
            connection.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for connection, _ in idle:
            connection.close()

    def _checkout(self) -> socket.socket:
        while True:
            with self._lock:
                connection, since = self._idle.pop() if self._idle else (None, 0.0)
            if connection is None:
                return self._connect()
            # A connection given back moments ago (the batch's previous claim group) is used as it is: checking
            # it is a system call, which lets go of the interpreter's lock, and a claim thread then waits up to
            # the 5 ms switch interval to get it back while the handler validates. Servers close idle
            # connections after seconds (or say "Connection: close" in the answer, which is honoured).
            if self._clock() - since < CHECK_AFTER_IDLE_SECONDS or _still_open(connection):
                return connection
            connection.close()  # closed by the server while idle (or it sent something unasked): never reused

    def _checkin(self, connection: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((connection, self._clock()))
                return
        connection.close()

    def _connect(self) -> socket.socket:
        try:
            connection = socket.create_connection(self._address, timeout=self._connect_timeout)
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=self.url, error=error) from error
        except OSError as error:
            raise EndpointConnectionError(endpoint_url=self.url, error=error) from error
        try:
            for level, option, value in self._options:
                connection.setsockopt(level, option, value)
            if self._ssl is not None:
                connection = self._context().wrap_socket(connection, server_hostname=self._address[0])
        except ssl.SSLError as error:
            connection.close()
            raise SSLError(endpoint_url=self.url, error=error) from error
        except TimeoutError as error:
            connection.close()
            raise ConnectTimeoutError(endpoint_url=self.url, error=error) from error
        except OSError as error:
            connection.close()
            raise EndpointConnectionError(endpoint_url=self.url, error=error) from error
        connection.settimeout(self._read_timeout)
        return connection

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if not isinstance(self._ssl, ssl.SSLContext):
                assert self._ssl is not None  # https endpoints only
                self._ssl = self._ssl()
            return self._ssl


def host_header(url: str) -> str:
    """The ``Host`` header for ``url`` as botocore's signer derives it (no default port; an IPv6 address bracketed)."""
    parts = urlsplit(url)
    name = parts.hostname or ""
    if ":" in name:
        name = f"[{name}]"
    default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
    return name if default_port else f"{name}:{parts.port}"


class _Malformed(Exception):
    """An answer that is not HTTP/1.x as DynamoDB sends it."""


def _still_open(connection: socket.socket) -> bool:
    """Whether an idle connection can carry a request: nothing to read on it (EOF or stray bytes would be)."""
    return not _has_input(connection)


def _has_input(connection: socket.socket) -> bool:
    """Whether reading ``connection`` would not wait: something came (data, or its end), or it failed."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _read_answer(connection: socket.socket) -> tuple[Answer, bool]:
    """Read one answer (skipping any 1xx); the answer and whether the connection may be kept."""
    buffer = bytearray()
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _Malformed("headers too long")
            _receive(connection, buffer)
            end = buffer.find(b"\r\n\r\n")
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        del buffer[: end + 4]
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise _Malformed(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(rest[:3])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Malformed("a header line without a colon")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            continue  # an interim answer: the real one follows
        break
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in (204, 304):  # no body, whatever the headers say
        body = b""
        keep = keep and not buffer
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _read_chunked(connection, buffer)
        keep = keep and not buffer  # bytes beyond the answer: the connection is not reused
    elif "content-length" in headers:
        if not headers["content-length"].isdigit():
            raise _Malformed("a Content-Length that is not a number")
        length = int(headers["content-length"])
        while len(buffer) < length:
            _receive(connection, buffer)
        body = bytes(buffer[:length])
        keep = keep and len(buffer) == length  # bytes beyond the answer: the connection is not reused
    else:  # the body runs to the end of the connection
        while _receive(connection, buffer, eof_ok=True):
            pass
        body, keep = bytes(buffer), False
    return Answer(status, headers, body), keep


def _read_chunked(connection: socket.socket, buffer: bytearray) -> bytes:
    body = bytearray()
    while True:
        while (end := buffer.find(b"\r\n")) < 0:
            _receive(connection, buffer)
        size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as error:
            raise _Malformed("a chunk size that is not hexadecimal") from error
        del buffer[: end + 2]
        if size == 0:  # the last chunk; trailers (none from DynamoDB) end with an empty line
            while (end := buffer.find(b"\r\n")) != 0:
                if end > 0:
                    del buffer[: end + 2]
                else:
                    _receive(connection, buffer)
            del buffer[:2]
            return bytes(body)
        while len(buffer) < size + 2:
            _receive(connection, buffer)
        body += buffer[:size]
        del buffer[: size + 2]


def _receive(connection: socket.socket, buffer: bytearray, *, eof_ok: bool = False) -> bool:
    """Append what the connection has to ``buffer``; False at its end (an error unless ``eof_ok``)."""
    data = connection.recv(_READ_SIZE)
    if not data:
        if eof_ok:
            return False
        raise _Malformed("the connection closed before the answer was complete")
    buffer += data
    return True
