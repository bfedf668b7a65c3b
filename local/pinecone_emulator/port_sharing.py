"""One port, two protocols: tell a gRPC connection from an HTTP/1.1 one, and hand it to the gRPC server.

An index's host serves its REST data plane (HTTP/1.1) and its gRPC data plane (HTTP/2 over cleartext,
"h2c with prior knowledge", which is how the SDK's gRPC client dials an ``http`` endpoint) on one
port, as Pinecone's index hosts serve both. HTTP/2 opens every connection with a fixed preface,
``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`` (RFC 9113, section 3.4), whose method ``PRI`` was
reserved so that no HTTP/1.1 request starts that way; :func:`speaks_http2` looks at the first bytes
without taking them off the socket, and :func:`splice` copies the connection's bytes both ways to
and from the index's gRPC server (grpc_server.py, on loopback), which reads the preface itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DECIDES = len(b"PRI ")  # bytes that tell the preface from any HTTP/1.1 request line
_PREFACE_WAIT_S = 10.0  # a client that sent part of the preface and then nothing is not waited on longer
_CHUNK = 256 * 1024


def speaks_http2(connection: socket.socket) -> bool:
    """Whether the client opened with HTTP/2's connection preface; the bytes stay on the socket.

    Blocks until the client has sent its first bytes, as an HTTP/1.1 server blocks on the request
    line. False for a connection closed or reset before it said anything (the HTTP/1.1 handler then
    finds it closed)."""
    deadline = time.monotonic() + _PREFACE_WAIT_S
    while True:
        try:
            seen = connection.recv(len(HTTP2_PREFACE), socket.MSG_PEEK)
        except OSError:
            return False
        if not seen or len(seen) >= _DECIDES or not HTTP2_PREFACE.startswith(seen):
            return seen.startswith(HTTP2_PREFACE[:_DECIDES])
        if time.monotonic() > deadline:  # "P" or "PR" and nothing since: not a client worth waiting for
            return False
        time.sleep(0.001)  # a preface split across segments: the rest is on its way


def splice(connection: socket.socket, address: tuple[str, int]) -> None:
    """Copy bytes both ways between ``connection`` and a new connection to ``address`` until both have ended.

    Each direction ends at end-of-stream or on an error, and passes the end on (a half-close), so
    whichever side closes first, the other sees it. Returns once both directions have ended; the
    caller closes ``connection``."""
    try:
        upstream = socket.create_connection(address)
    except OSError:
        return  # the gRPC server is gone (the emulator is stopping): the client sees the connection closed
    with upstream:
        for end in (connection, upstream):
            with contextlib.suppress(OSError):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # gRPC's small frames, no Nagle delays
        back = threading.Thread(target=_pump, args=(upstream, connection), name="grpc-splice", daemon=True)
        back.start()
        _pump(connection, upstream)
        back.join()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(_CHUNK):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
