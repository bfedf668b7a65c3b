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
from botocore.credentials import ReadOnlyCredentials

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


@pytest.mark.parametrize("token", ["token-for-the-test", None])
@pytest.mark.parametrize("transport", ["kept-alive endpoint", "botocore session"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_raw_call_is_signed_as_botocore_signs_the_same_request(call: str, transport: str, token: str | None) -> None:
    client = _client(token)
    raw, capture = _raw(client, transport)
    [(headers, body)], botocore_request = _signed_by_both(client, raw, capture, call, AT)
    assert body == botocore_request.body
    assert {name: _text(headers[name]) for name in SIGNED if token or name != "X-Amz-Security-Token"} == {
        name: _text(botocore_request.headers[name]) for name in SIGNED if token or name != "X-Amz-Security-Token"
    }
    assert ("X-Amz-Security-Token" in headers) == (token is not None)
    if transport == "kept-alive endpoint":  # the Host it sends is the one botocore signed from the URL
        assert headers["Host"] == "dynamodb.eu-west-1.amazonaws.com"


class _Rotating:
    """Credentials whose secret changes (a role's, refreshed): each request is signed with the current one."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials("AKIDEXAMPLE", self.secret, "token-for-the-test")


def test_the_signing_key_kept_is_made_again_for_a_new_day_and_a_new_secret() -> None:
    """The signer keeps the last day's key derived from the secret: a request the next day, or after the role's
    credentials were refreshed, is signed with a key derived again (as botocore derives it for every request)."""
    rotating = _Rotating("first-secret")
    raw, capture = _raw(_client("token-for-the-test"), "kept-alive endpoint", rotating)  # one signer for all
    for at, secret in [(AT, "first-secret"), (AT, "first-secret"), (AT, "next"), (AT + ONE_DAY, "next")]:
        rotating.secret = secret
        reference = _client("token-for-the-test", secret)
        capture.sent.clear()
        [(headers, _)], botocore_request = _signed_by_both(reference, raw, capture, "put_item", at)
        assert headers["Authorization"] == _text(botocore_request.headers["Authorization"])


@pytest.mark.parametrize("transport", ["kept-alive endpoint", "botocore session"])
def test_an_endpoint_with_a_path_a_port_and_a_query_is_signed_as_botocore_signs_it(transport: str) -> None:
    client = _client("token-for-the-test", endpoint_url="https://dynamodb.example.test:8443/base/?b=2&a=1")
    raw, capture = _raw(client, transport)
    [(headers, _)], botocore_request = _signed_by_both(client, raw, capture, "put_item", AT)
    assert headers["Authorization"] == _text(botocore_request.headers["Authorization"])


ONE_DAY = datetime.timedelta(days=1)


def _client(token: str | None, secret: str = "secret-for-the-test", endpoint_url: str | None = None) -> Any:
    return boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=secret,
        aws_session_token=token,
        endpoint_url=endpoint_url,
    )


def _raw(client: Any, transport: str, credentials: Any = None) -> tuple[JsonDynamoDB, _Capture]:
    raw = JsonDynamoDB(client, credentials or client._request_signer._credentials)
    assert raw._endpoint is not None  # no proxy here: the kept-alive endpoint is what sends
    capture: _Capture
    if transport == "botocore session":
        capture = _Capture(raw._endpoint.host)
        raw._endpoint = None
        raw._http = capture  # type: ignore[assignment]
    else:
        capture = _EndpointCapture(raw._endpoint.host)
        raw._endpoint = capture  # type: ignore[assignment]
    return raw, capture


def _signed_by_both(
    client: Any, raw: JsonDynamoDB, capture: _Capture, call: str, at: datetime.datetime
) -> tuple[list[tuple[dict[str, str], bytes]], Any]:
    """What ``raw`` sent for ``call`` at ``at``, and the request botocore's ``client`` signed for it then."""
    signed_by_botocore: list[Any] = []

    def stop_before_sending(request: Any, **_: Any) -> None:
        signed_by_botocore.append(request)
        raise _Stop

    client.meta.events.register("before-send.dynamodb.*", stop_before_sending)
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=at),
        mock.patch.object(dynamodb_json, "_utc_now", return_value=at),
    ):
        with pytest.raises(_Stop):
            getattr(client, call)(**CALLS[call])
        [botocore_request] = signed_by_botocore
        # botocore's JSON has spaces, orjson's none: sign botocore's bytes to compare the signing alone
        with mock.patch.object(dynamodb_json.orjson, "dumps", return_value=botocore_request.body):
            getattr(raw, call)(**CALLS[call])
    return capture.sent, botocore_request
