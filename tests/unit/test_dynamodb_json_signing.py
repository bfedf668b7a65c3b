"""The version guard's raw-JSON DynamoDB calls are signed as botocore signs them.

moto's server does not check signatures, so the integration tests cannot tell a request DynamoDB would
refuse. Here botocore's own client builds and signs each of the five calls (stopped before it is
sent), and :class:`~vector_relay.ingest.dynamodb_json.JsonDynamoDB` signs the same body at the same
instant: the signed headers must be the same, byte for byte.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest

from vector_relay.ingest import dynamodb_json
from vector_relay.ingest.dynamodb_http import Answer
from vector_relay.ingest.dynamodb_json import JsonDynamoDB

AT = datetime.datetime(2026, 12, 7, 9, 0, 0, tzinfo=datetime.UTC)
ITEM = {"namespace": {"S": "ns"}, "record_id": {"S": "r1"}, "state": {"S": "1|upsert|5|ab"}}
KEY = {"namespace": {"S": "ns"}, "record_id": {"S": "r1"}}
CALLS: dict[str, dict[str, Any]] = {
    "batch_get_item": {"RequestItems": {"t": {"Keys": [KEY], "ConsistentRead": True}}},
    "transact_write_items": {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": ITEM, "ConditionExpression": "attribute_not_exists(record_id)"}}
        ]
        * 100  # a body of several times 2,048 bytes: hashed in pieces, signed as botocore signs it whole
    },
    "put_item": {"TableName": "t", "Item": ITEM},
    "update_item": {
        "TableName": "t",
        "Key": KEY,
        "UpdateExpression": "SET lock_until = :until",
        "ExpressionAttributeValues": {":until": {"N": "5"}},
    },
    "delete_item": {"TableName": "t", "Key": KEY},
}
SIGNED = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Target", "Content-Type")


class _Stop(Exception):
    """Raised where botocore would send: its request is signed by then."""


class _Answer:
    status_code = 200
    content = b"{}"


class _Capture:
    """Stands for botocore's HTTP session (``send`` of a prepared request): records what is sent."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sent: list[tuple[dict[str, str], bytes]] = []

    def send(self, prepared: Any) -> _Answer:
        self.sent.append((dict(prepared.headers.items()), prepared.body))
        return _Answer()


class _EndpointCapture(_Capture):
    """Stands for the kept-alive endpoint (``send`` of headers and body, the answer read later)."""

    def send(self, headers: dict[str, str], body: bytes) -> Callable[[], Answer]:  # type: ignore[override]
        self.sent.append((headers, body))
        return lambda: Answer(200, {}, b"{}")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.parametrize("transport", ["kept-alive endpoint", "botocore session"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_raw_call_is_signed_as_botocore_signs_the_same_request(call: str, transport: str) -> None:
    client = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-for-the-test",
        aws_session_token="token-for-the-test",
    )
    signed_by_botocore: list[Any] = []

    def stop_before_sending(request: Any, **_: Any) -> None:
        signed_by_botocore.append(request)
        raise _Stop

    client.meta.events.register("before-send.dynamodb.*", stop_before_sending)
    raw = JsonDynamoDB(client, client._request_signer._credentials)
    assert raw._endpoint is not None  # no proxy here: the kept-alive endpoint is what sends
    capture: _Capture
    if transport == "botocore session":
        capture = _Capture(raw._endpoint.host)
        raw._endpoint = None
        raw._http = capture  # type: ignore[assignment]
    else:
        capture = _EndpointCapture(raw._endpoint.host)
        raw._endpoint = capture  # type: ignore[assignment]

    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=AT):
        with pytest.raises(_Stop):
            getattr(client, call)(**CALLS[call])
        [botocore_request] = signed_by_botocore
        # botocore's JSON has spaces, orjson's none: sign botocore's bytes to compare the signing alone
        with mock.patch.object(dynamodb_json.orjson, "dumps", return_value=botocore_request.body):
            getattr(raw, call)(**CALLS[call])

    [(headers, body)] = capture.sent
    assert body == botocore_request.body
    assert {name: _text(headers[name]) for name in SIGNED} == {
        name: _text(botocore_request.headers[name]) for name in SIGNED
    }
    if transport == "kept-alive endpoint":  # the Host it sends is the one botocore signed from the URL
        assert headers["Host"] == "dynamodb.eu-west-1.amazonaws.com"
