"""The local stack's moto server: DynamoDB requests applied one at a time, connections kept open, as AWS does.

Without it, moto evaluated a conditional write's condition and then wrote in each request's own
thread, and its ``TransactWriteItems`` deep-copied tables that other threads were writing to (HTTP
500 with two of the version guard's claim groups in flight, issue 32).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import MetricDatum, Statistics

from relay_local.moto_server import AtomicDynamoDB, MotoServer, statistic_for_type

CEILING = 5.0  # generous: how long a request that should wait is given to show it does not


class BlockingApp:
    """A WSGI app that holds each request until told to let it go, and records how many were inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.entered = threading.Condition()
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self.entered:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.entered.notify_all()
        if environ.get("hold"):
            assert self.release.wait(CEILING)
        with self.entered:
            self.inside -= 1
        start_response("200 OK", [])
        return [b"{}"]

    def wait_inside(self, count: int, ceiling: float) -> bool:
        with self.entered:
            return self.entered.wait_for(lambda: self.inside >= count, timeout=ceiling)


def request(app: AtomicDynamoDB, target: str, *, hold: bool = False) -> threading.Thread:
    environ = {"HTTP_X_AMZ_TARGET": target, "hold": hold}
    thread = threading.Thread(target=lambda: list(app(environ, lambda status, headers: None)), daemon=True)
    thread.start()
    return thread


def test_a_dynamodb_request_waits_while_another_is_being_applied() -> None:
    inner = BlockingApp()
    app = AtomicDynamoDB(inner)
    first = request(app, "DynamoDB_20120810.TransactWriteItems", hold=True)
    assert inner.wait_inside(1, CEILING)
    second = request(app, "DynamoDB_20120810.PutItem")
    # the second is given every chance to get in, and must not while the first is inside
    assert not inner.wait_inside(2, 1.0)
    inner.release.set()
    first.join(CEILING)
    second.join(CEILING)
    assert not first.is_alive()
    assert not second.is_alive()
    assert inner.most_inside == 1


def test_other_services_are_not_held_by_a_dynamodb_request() -> None:
    inner = BlockingApp()
    app = AtomicDynamoDB(inner)
    first = request(app, "DynamoDB_20120810.BatchGetItem", hold=True)
    assert inner.wait_inside(1, CEILING)
    sqs = request(app, "AmazonSQS.SendMessage")
    sqs.join(CEILING)
    assert not sqs.is_alive()  # done while the DynamoDB request is still inside
    assert inner.most_inside == 2
    inner.release.set()
    first.join(CEILING)


LIST_TABLES = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0",
}


def test_a_connection_is_kept_open_between_requests_as_aws_keeps_it() -> None:
    server = MotoServer(port=0)
    try:
        connection = http.client.HTTPConnection(*server.address, timeout=CEILING)
        sockets = []
        for _ in range(3):
            connection.request("POST", "/", body=b"{}", headers=LIST_TABLES)
            answer = connection.getresponse()
            assert answer.status == 200
            assert isinstance(json.loads(answer.read())["TableNames"], list)  # moto's tables are the process's
            sockets.append(connection.sock)
        assert sockets[0] is not None
        assert sockets == [sockets[0]] * 3  # one TCP connection for all three (werkzeug closed each)
        connection.request("POST", "/", body=b"{}", headers=LIST_TABLES | {"Connection": "close"})
        closing = connection.getresponse()
        closing.read()
        assert closing.will_close  # the client's own "Connection: close" is honoured
        connection.close()
    finally:
        server.stop()


def test_cloudwatch_percentiles_are_the_nearest_rank_of_the_period_s_values() -> None:
    statistics = Statistics(["p99"], datetime.now(UTC))
    statistics.metric_data = [MetricDatum("NS", "M", float(value), [], None) for value in range(100, 0, -1)]
    percentiles = {stat: statistic_for_type(statistics, stat) for stat in ("p0", "p50", "p99", "p99.5", "p100")}
    assert percentiles == {"p0": 1, "p50": 50, "p99": 99, "p99.5": 100, "p100": 100}
    assert statistic_for_type(Statistics(["p50"], datetime.now(UTC)), "p50") is None  # no values: no datapoint
    statistics.stats = ["Sum"]
    assert statistic_for_type(statistics, "Sum") == 5050  # the rest is moto's own
