"""The guard's kept-alive DynamoDB connections: HTTP/1.1 as DynamoDB speaks it, and botocore's errors when it fails.

Each test runs a scripted server on a loopback socket (one thread per connection); what a script
does is fixed, so every outcome here is decided by the script, never by timing. The answers
DynamoDB gives the guard through these connections are tested against moto's server in
tests/integration/test_dynamodb_json.py (every call of the guard goes through them there).
"""

from __future__ import annotations

import select
import shutil
import socket
import ssl
import subprocess  # nosec B404 - openssl makes a test certificate
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import botocore.config
import certifi
import pytest
from botocore.exceptions import (
    ChecksumError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import URLLib3Session

from vector_relay.aws_clients import GUARD_CONFIG
from vector_relay.ingest import dynamodb_http
from vector_relay.ingest.dynamodb_http import CHECK_AFTER_IDLE_SECONDS, DynamoDBEndpoint
from vector_relay.ingest.dynamodb_json import JsonDynamoDB

type Script = Callable[[socket.socket, int], None]  # serves one connection (the int: its number, from 0)


class ScriptedServer:
    def __init__(self, script: Script, wrap: ssl.SSLContext | None = None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._script, self._wrap = script, wrap
        self.connections = 0
        self.requests: list[bytes] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            thread = threading.Thread(target=self._serve, args=(connection, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket, number: int) -> None:
        try:
            if self._wrap is not None:
                connection = self._wrap.wrap_socket(connection, server_side=True)
            self._script(connection, number)
        except OSError:
            pass  # the client went away: the test's assertions say what mattered
        finally:
            connection.close()

    def read_request(self, connection: socket.socket) -> bytes | None:
        """One request (head and Content-Length body), or None when the client closed the connection."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += connection.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return body

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(60)


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script, wrap: ssl.SSLContext | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(script, wrap))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(body: bytes = b"{}", *, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def endpoint(server: ScriptedServer, read_timeout: float = 60) -> DynamoDBEndpoint:
    return DynamoDBEndpoint(f"http://127.0.0.1:{server.port}", connect_timeout=60, read_timeout=read_timeout)


def test_requests_share_one_kept_alive_connection(serve: Callable[..., ScriptedServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        while (body := server.read_request(connection)) is not None:
            connection.sendall(answer(b'{"echo":' + body + b"}"))

    server = serve(script)
    client = endpoint(server)
    for n in range(3):
        reply = client.post({"X-Amz-Target": "DynamoDB_20120810.PutItem"}, b'{"n":%d}' % n)
        assert (reply.status, reply.body) == (200, b'{"echo":{"n":%d}}' % n)
    client.close()
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST / HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in head
    assert b"Content-Length: 7" in head  # b'{"n":0}'
    assert b"X-Amz-Target: DynamoDB_20120810.PutItem" in head


def test_an_endpoints_path_and_query_are_in_the_request_line_as_botocore_sends_them(
    serve: Callable[..., ScriptedServer],
) -> None:
    """What the signature covers (tests/unit/test_dynamodb_json_signing.py) is what is sent."""

    def script(connection: socket.socket, number: int) -> None:
        while server.read_request(connection) is not None:
            connection.sendall(answer())

    server = serve(script)
    client = DynamoDBEndpoint(f"http://127.0.0.1:{server.port}/base/?b=2&a=1", connect_timeout=60, read_timeout=60)
    assert client.post({}, b"{}").status == 200
    client.close()
    assert server.requests[0].split(b"\r\n")[0] == b"POST /base/?b=2&a=1 HTTP/1.1"


def test_an_idle_connection_the_server_closed_is_never_used_again(serve: Callable[..., ScriptedServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        server.read_request(connection)
        connection.sendall(answer(b'{"connection":%d}' % number))
        # and closes: an idle timeout on the server's side, while the client still pools the connection

    server = serve(script)
    now = [0.0]
    client = DynamoDBEndpoint(
        f"http://127.0.0.1:{server.port}", connect_timeout=60, read_timeout=60, clock=lambda: now[0]
    )
    assert client.post({}, b"{}").body == b'{"connection":0}'
    [(idle, _)] = client._idle
    select.select([idle], [], [], 60)  # wait until the server's close has reached the pooled connection
    now[0] += CHECK_AFTER_IDLE_SECONDS  # idle long enough to be checked before it is used
    assert client.post({}, b"{}").body == b'{"connection":1}'
    assert len(server.requests) == 2  # the second request was written once, on a new connection


def test_a_connection_given_back_moments_ago_is_used_without_a_check(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No system call (which would let a claim thread lose the interpreter's lock) for a connection just used;
    one idle for CHECK_AFTER_IDLE_SECONDS is checked."""

    def script(connection: socket.socket, number: int) -> None:
        while (body := server.read_request(connection)) is not None:
            connection.sendall(answer(b'{"echo":' + body + b"}"))

    server = serve(script)
    now = [0.0]
    client = DynamoDBEndpoint(
        f"http://127.0.0.1:{server.port}", connect_timeout=60, read_timeout=60, clock=lambda: now[0]
    )
    checked: list[socket.socket] = []
    real_check = dynamodb_http._still_open
    monkeypatch.setattr(dynamodb_http, "_still_open", lambda c: checked.append(c) or real_check(c))
    client.post({}, b"1")
    now[0] += CHECK_AFTER_IDLE_SECONDS / 2
    client.post({}, b"2")
    assert checked == []
    now[0] += CHECK_AFTER_IDLE_SECONDS
    client.post({}, b"3")
    assert len(checked) == 1
    client.close()
    assert server.connections == 1


def test_connection_close_chunked_and_unframed_answers(serve: Callable[..., ScriptedServer]) -> None:
    answers = [
        answer(b'{"a":1}', headers="Connection: close\r\n"),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;x=y\r\n{"b"\r\n3\r\n:2}\r\n0\r\n\r\n',
        b"HTTP/1.0 200 OK\r\n\r\n" + b'{"c":3}',  # no framing: the body runs to the connection's end
    ]

    def script(connection: socket.socket, number: int) -> None:
        server.read_request(connection)
        connection.sendall(answers[number])
        if number == 1:  # the chunked answer left the connection open: serve one more on it
            server.read_request(connection)
            connection.sendall(answers[2])

    server = serve(script)
    client = endpoint(server)
    assert client.post({}, b"{}").body == b'{"a":1}'
    assert client.post({}, b"{}").body == b'{"b":2}'
    assert client.post({}, b"{}").body == b'{"c":3}'
    assert server.connections == 2  # a new one after "Connection: close", the chunked one kept


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (None, ReadTimeoutError),  # the server never answers
        (b"SSH-2.0-OpenSSH\r\n\r\n", ConnectionClosedError),  # not HTTP
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}", ConnectionClosedError),  # closed mid-body
        (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}", ConnectionClosedError),
    ],
    ids=["silent", "not http", "cut short", "bad length"],
)
def test_a_failed_answer_is_botocores_error(
    serve: Callable[..., ScriptedServer], reply: bytes | None, error: type[Exception]
) -> None:
    hang_up = threading.Event()

    def script(connection: socket.socket, number: int) -> None:
        server.read_request(connection)
        if reply is None:
            hang_up.wait(60)
            return
        connection.sendall(reply)

    server = serve(script)
    client = endpoint(server, read_timeout=0.3 if reply is None else 60)  # only the silent one waits it out
    with pytest.raises(error):
        client.post({}, b"{}")
    hang_up.set()


def test_nothing_listening_is_an_endpoint_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    client = DynamoDBEndpoint(f"http://127.0.0.1:{port}", connect_timeout=5, read_timeout=5)
    with pytest.raises(EndpointConnectionError):
        client.post({}, b"{}")


def _json_client(port: int, proxies: dict[str, str] | None = None) -> JsonDynamoDB:
    client = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-for-the-test",
        config=GUARD_CONFIG.merge(botocore.config.Config(proxies=proxies)),
    )
    return JsonDynamoDB(client, client._request_signer._credentials)


def test_a_damaged_answer_fails_its_crc32_check_and_an_error_answer_is_a_client_error(
    serve: Callable[..., ScriptedServer],
) -> None:
    good = b'{"Item":{}}'
    replies = [
        answer(good, headers=f"x-amz-crc32: {zlib.crc32(good)}\r\n"),
        answer(good, headers=f"x-amz-crc32: {zlib.crc32(good) ^ 1}\r\n"),
        answer(
            b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"no"}',
            status="400 Bad Request",
        ),
    ]

    def script(connection: socket.socket, number: int) -> None:
        for reply in replies:
            server.read_request(connection)
            connection.sendall(reply)

    server = serve(script)
    dynamodb = _json_client(server.port)
    assert dynamodb.put_item(TableName="t", Item={}) == {"Item": {}}
    with pytest.raises(ChecksumError):
        dynamodb.put_item(TableName="t", Item={})
    with pytest.raises(ClientError) as refused:
        dynamodb.put_item(TableName="t", Item={})
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    dynamodb.close()


def test_the_endpoint_takes_the_sessions_settings_and_leaves_proxied_clients_to_botocore(
    serve: Callable[..., ScriptedServer],
) -> None:
    direct = _json_client(1)
    assert direct._endpoint is not None
    assert (direct._endpoint._connect_timeout, direct._endpoint._read_timeout) == (0.5, 1.5)  # GUARD_PROFILE
    proxied = _json_client(1, proxies={"http": "http://proxy.example:3128"})
    assert proxied._endpoint is None  # the proxy is botocore's to use
    secure = JsonDynamoDB(boto3.client("dynamodb", region_name="eu-west-1", config=GUARD_CONFIG), None)
    assert secure._endpoint is not None
    assert secure._endpoint.host == "dynamodb.eu-west-1.amazonaws.com"
    assert not isinstance(secure._endpoint._ssl, ssl.SSLContext)  # the CA bundle is loaded at the first connection


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(  # nosec B603 - a fixed command line
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def tls_server(serve: Callable[..., ScriptedServer], certificate: tuple[Path, Path]) -> str:
    """A server answering every request over TLS with ``certificate``; its URL."""
    key, cert = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)

    def script(connection: socket.socket, number: int) -> None:
        while server.read_request(connection) is not None:
            connection.sendall(answer(b'{"tls":true}'))

    server = serve(script, wrap=server_side)
    return f"https://127.0.0.1:{server.port}"


def test_https_verifies_the_server_with_the_sessions_certificates(
    serve: Callable[..., ScriptedServer], certificate: tuple[Path, Path]
) -> None:
    cert = certificate[1]
    url = tls_server(serve, certificate)
    trusting = DynamoDBEndpoint(
        url, connect_timeout=60, read_timeout=60, ssl_context=ssl.create_default_context(cafile=str(cert))
    )
    assert trusting.post({}, b"{}").body == b'{"tls":true}'
    trusting.close()
    public_roots = DynamoDBEndpoint(
        url, connect_timeout=60, read_timeout=60, ssl_context=ssl.create_default_context(cafile=certifi.where())
    )
    with pytest.raises(SSLError):
        public_roots.post({}, b"{}")


def test_bodiless_and_chunked_answers_with_bytes_beyond_them(serve: Callable[..., ScriptedServer]) -> None:
    def script(connection: socket.socket, number: int) -> None:
        while server.read_request(connection) is not None:
            if number == 0:  # a 204 (no body, whatever it says), then a chunked answer with stray bytes after it
                connection.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")  # no framing: none is needed
                server.read_request(connection)
                connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\nJUNK")
                hang_up.wait(60)
                return
            connection.sendall(answer(b'{"fresh":1}'))

    hang_up = threading.Event()
    server = serve(script)
    client = endpoint(server, read_timeout=60)
    assert (client.post({}, b"{}").status, client.post({}, b"{}").body) == (204, b"{}")
    assert client.post({}, b"{}").body == b'{"fresh":1}'  # not read from the connection that had stray bytes
    assert server.connections == 2
    hang_up.set()


def test_an_ipv6_endpoint_is_named_in_brackets_as_botocore_signs_it() -> None:
    assert DynamoDBEndpoint("http://[::1]:8000", connect_timeout=1, read_timeout=1).host == "[::1]:8000"
    assert (
        DynamoDBEndpoint(
            "https://[::1]", connect_timeout=1, read_timeout=1, ssl_context=ssl.create_default_context
        ).host
        == "[::1]"
    )


def test_the_sessions_certificates_decide_the_tls_context(
    serve: Callable[..., ScriptedServer], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert = certificate[1]
    url = tls_server(serve, certificate)
    trusting = DynamoDBEndpoint.for_session(url, URLLib3Session(verify=str(cert)))
    assert trusting is not None
    assert trusting.post({}, b"{}").body == b'{"tls":true}'
    trusting.close()
    default = DynamoDBEndpoint.for_session(url, URLLib3Session(verify=True))  # botocore's bundle: not this server
    assert default is not None
    with pytest.raises(SSLError):
        default.post({}, b"{}")
    unverified = DynamoDBEndpoint.for_session(url, URLLib3Session(verify=False))
    assert unverified is not None
    assert unverified.post({}, b"{}").body == b'{"tls":true}'
    unverified.close()
    folder = tmp_path / "certificates"
    folder.mkdir()
    by_folder = DynamoDBEndpoint.for_session(url, URLLib3Session(verify=str(folder)))  # AWS_CA_BUNDLE may name one
    assert by_folder is not None
    assert by_folder._ssl.keywords == {"capath": str(folder)}  # type: ignore[union-attr]


def test_send_writes_the_request_before_its_answer_is_asked_for(serve: Callable[..., ScriptedServer]) -> None:
    """What the guard's release relies on: the request is on its way when ``send`` returns, and the server may
    answer it (here it must have read it first) before the caller reads the answer."""
    received = threading.Event()

    def script(connection: socket.socket, number: int) -> None:
        while (body := server.read_request(connection)) is not None:
            received.set()
            connection.sendall(answer(b'{"echo":' + body + b"}"))

    server = serve(script)
    client = endpoint(server)
    answered = client.send({}, b'{"n":1}')
    assert received.wait(60)  # the server has the whole request, and nobody has asked for the answer yet
    assert answered().body == b'{"echo":{"n":1}}'
    assert client.post({}, b'{"n":2}').body == b'{"echo":{"n":2}}'  # the connection was given back: reused
    client.close()
    assert server.connections == 1


def test_a_reply_says_whether_its_answer_has_come_without_waiting_for_it(serve: Callable[..., ScriptedServer]) -> None:
    """What the claim session pumps on: ``ready()`` is False while the server holds the answer back, True once it
    has sent it (or closed the connection: reading then raises botocore's error), and never blocks."""
    let_go = threading.Event()

    def script(connection: socket.socket, number: int) -> None:
        while (body := server.read_request(connection)) is not None:
            if number == 0:
                assert let_go.wait(60)
                connection.sendall(answer(body))
            else:
                connection.close()
                return

    server = serve(script)
    client = endpoint(server)
    reply = client.send({}, b'{"n":1}')
    assert not reply.ready()  # the server has not answered: asking does not wait
    let_go.set()
    deadline = time.monotonic() + 60
    while not reply.ready():  # a condition with a generous ceiling, not a timing
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert reply().body == b'{"n":1}'
    closing = endpoint(server)  # a second connection, which the server closes unanswered
    closed = closing.send({}, b'{"n":2}')
    deadline = time.monotonic() + 60
    while not closed.ready():
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with pytest.raises(ConnectionClosedError):
        closed()
    client.close()
    closing.close()
