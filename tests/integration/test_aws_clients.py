"""The AWS clients' retries counted on the wire: a server that answers every request with a 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.exceptions import ClientError

from vector_relay.aws_clients import dynamodb_client, sqs_client


class AlwaysFailing(BaseHTTPRequestHandler):
    requests = 0

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"__type": "InternalFailure", "message": "try again"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[AlwaysFailing]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysFailing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    AlwaysFailing.requests = 0
    yield AlwaysFailing
    server.shutdown()
    server.server_close()


def test_a_failing_sqs_call_is_sent_three_times_in_all(failing_endpoint: type[AlwaysFailing]) -> None:
    with pytest.raises(ClientError):
        sqs_client().get_queue_url(QueueName="anything")
    assert failing_endpoint.requests == 3


def test_a_failing_version_guard_call_is_sent_once(failing_endpoint: type[AlwaysFailing]) -> None:
    with pytest.raises(ClientError):
        dynamodb_client().describe_table(TableName="anything")
    assert failing_endpoint.requests == 1
