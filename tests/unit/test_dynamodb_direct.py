"""The version guard's DynamoDB calls answered without Flask (relay_local.dynamodb_direct): moto's answers, faster.

Each request is sent twice, in-process, to two regions holding the same tables: once through
:class:`DirectDynamoDB` and once through moto's whole way (its Flask app, request parser and
serializer), as the local stack's server ran it before. The two answers must be the same: status,
the JSON the client parses, the headers (an ``x-amz-crc32`` that is the CRC32 of the bytes sent),
and the tables afterwards. Errors (a failed condition, a cancelled transaction with its reasons, a
validation error) and requests outside the guard's shapes are moto's own answers, and the tests
check which way each request went.
"""

from __future__ import annotations

import binascii
import io
import json
import sys
import uuid
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from relay_local.dynamodb_direct import DirectDynamoDB, plain_value
from relay_local.moto_server import AtomicDynamoDB

DIRECT_REGION, MOTO_REGION = "eu-west-3", "ap-south-2"  # the two copies of every table
LOCK = "attribute_not_exists(lock_until) OR lock_until < :now"
Answer = tuple[int, dict[str, str], bytes]


class Twin:
    """One request, both ways: through DirectDynamoDB in one region and moto's whole way in the other."""

    def __init__(self) -> None:
        self.direct = DirectDynamoDB(DomainDispatcherApplication(create_backend_app))
        self.apps = {DIRECT_REGION: AtomicDynamoDB(self.direct), MOTO_REGION: AtomicDynamoDB(self.direct._app)}
        self.table = f"direct-{uuid.uuid4().hex[:12]}"

    def call(self, operation: str, request: dict[str, Any], *, body: bytes | None = None, **headers: str) -> Any:
        """Send ``request`` both ways; assert the answers are the same; return the direct one's JSON (and status)."""
        direct = send(self.apps[DIRECT_REGION], DIRECT_REGION, operation, request, body, headers)
        moto = send(self.apps[MOTO_REGION], MOTO_REGION, operation, request, body, headers)
        assert direct[0] == moto[0]
        assert json.loads(direct[2] or b"null") == json.loads(moto[2] or b"null")
        assert comparable(direct[1]) == comparable(moto[1])
        if "x-amz-crc32" in direct[1]:
            assert direct[1]["x-amz-crc32"] == str(binascii.crc32(direct[2]))  # botocore checks it
        return direct[0], json.loads(direct[2] or b"null")

    def went_direct(self, operation: str, request: dict[str, Any], **headers: str) -> bool:
        """Whether the request (sent both ways, answers compared) was answered by DirectDynamoDB."""
        before = self.direct.answered
        self.call(operation, request, **headers)
        return self.direct.answered == before + 1

    def create_table(self) -> None:
        """The same table in both regions (its description names its region: not compared)."""
        definition = {
            "TableName": self.table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "namespace", "AttributeType": "S"},
                {"AttributeName": "record_id", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "namespace", "KeyType": "HASH"},
                {"AttributeName": "record_id", "KeyType": "RANGE"},
            ],
        }
        for region, app in self.apps.items():
            assert send(app, region, "CreateTable", definition, None, {})[0] == 200

    def items(self) -> list[Any]:
        """Both copies of the table, scanned: they must hold the same items."""
        _, found = self.call("Scan", {"TableName": self.table, "ConsistentRead": True})
        return sorted(found["Items"], key=lambda item: item["record_id"]["S"])


def send(app: Any, region: str, operation: str, request: Any, body: bytes | None, headers: dict[str, str]) -> Answer:
    aws = AWSRequest(
        method="POST",
        url="http://127.0.0.1:5000/",
        data=body if body is not None else json.dumps(request).encode(),
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"DynamoDB_20120810.{operation}"},
    )
    SigV4Auth(Credentials("testing", "testing"), "dynamodb", region).add_auth(aws)
    prepared = aws.prepare()
    data = prepared.body if isinstance(prepared.body, bytes) else str(prepared.body).encode()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "5000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:5000",
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
    }
    for name, value in {**dict(prepared.headers), **headers}.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    started: dict[str, Any] = {}
    try:
        chunks = app(environ, lambda status, headers, exc_info=None: started.update(status=status, headers=headers))
    except Exception as failure:  # moto failed: the server answers 500 (KeepAliveHandler)
        return 500, {}, json.dumps(type(failure).__name__).encode()
    answer = b"".join(chunks)
    return int(started["status"].split()[0]), {name.lower(): value for name, value in started["headers"]}, answer


def comparable(headers: dict[str, str]) -> dict[str, str]:
    """Headers as they must agree: a request id of moto's form (not its value), no length (the server sets it)."""
    different = {"x-amzn-requestid", "x-amz-crc32", "content-length", "date"}
    assert not headers or len(headers["x-amzn-requestid"]) == 52  # none when moto failed (500)
    return {name: value for name, value in headers.items() if name not in different}


def key(record_id: str, namespace: str = "ns") -> dict[str, Any]:
    return {"namespace": {"S": namespace}, "record_id": {"S": record_id}}


@pytest.fixture
def twin() -> Twin:
    twin = Twin()
    twin.create_table()
    return twin


def claim(twin: Twin, record_id: str, state: str, read: str | None) -> dict[str, Any]:
    """One of the guard's claim puts: conditional on the item being absent, or having the state read."""
    put: dict[str, Any] = {"TableName": twin.table, "Item": key(record_id) | {"state": {"S": state}}}
    if read is None:
        return {"Put": put | {"ConditionExpression": "attribute_not_exists(record_id)"}}
    return {
        "Put": put
        | {
            "ConditionExpression": "#state = :read",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":read": {"S": read}},
        }
    }


def test_the_guards_calls_are_answered_directly_with_moto_s_answers(twin: Twin) -> None:
    lock = key("~lock") | {"lock_token": {"S": "t1"}, "lock_until": {"N": "2000"}}
    take = {"TableName": twin.table, "Item": lock, "ConditionExpression": LOCK}
    assert twin.went_direct("PutItem", take | {"ExpressionAttributeValues": {":now": {"N": "1000"}}})
    keys = [key("a"), key("b"), key("~lock")]
    assert twin.went_direct("BatchGetItem", {"RequestItems": {twin.table: {"Keys": keys, "ConsistentRead": True}}})
    claims = [claim(twin, "a", "1 upsert", None), claim(twin, "b", "1 upsert", None)]
    assert twin.went_direct("TransactWriteItems", {"TransactItems": claims})
    again = [claim(twin, "a", "2 upsert", "1 upsert"), claim(twin, "c", "1 upsert", None)]
    assert twin.went_direct("TransactWriteItems", {"TransactItems": again})
    status, read = twin.call("BatchGetItem", {"RequestItems": {twin.table: {"Keys": keys}}})
    assert status == 200
    assert {item["record_id"]["S"] for item in read["Responses"][twin.table]} == {"a", "b", "~lock"}
    assert read["ConsumedCapacity"] == [{"TableName": twin.table, "CapacityUnits": 3.0}]
    marker = key("t1", "~markers") | {"pending": {"M": {"ns": {"SS": ["b", "c"]}}}, "expires_at": {"N": "9"}}
    assert twin.went_direct("PutItem", {"TableName": twin.table, "Item": marker})
    drop = {"ConditionExpression": "lock_token = :token", "ExpressionAttributeValues": {":token": {"S": "t1"}}}
    assert twin.went_direct("DeleteItem", {"TableName": twin.table, "Key": key("~lock")} | drop)
    assert [item["record_id"]["S"] for item in twin.items()] == ["a", "b", "c", "t1"]


def test_a_failed_condition_is_moto_s_conditional_check_failed_and_changes_nothing(twin: Twin) -> None:
    lock = key("~lock") | {"lock_token": {"S": "t1"}, "lock_until": {"N": "2000"}}
    take = {"TableName": twin.table, "Item": lock, "ConditionExpression": LOCK}
    twin.call("PutItem", take | {"ExpressionAttributeValues": {":now": {"N": "1000"}}})
    taken = take | {"Item": lock | {"lock_token": {"S": "t2"}}, "ExpressionAttributeValues": {":now": {"N": "1500"}}}
    assert not twin.went_direct("PutItem", taken)  # moto's way answers the refusal
    status, error = twin.call("PutItem", taken)
    assert status == 400
    assert error["__type"].endswith("#ConditionalCheckFailedException")
    drop = {"ConditionExpression": "lock_token = :token", "ExpressionAttributeValues": {":token": {"S": "t2"}}}
    status, error = twin.call("DeleteItem", {"TableName": twin.table, "Key": key("~lock")} | drop)
    assert (status, error["message"]) == (400, "The conditional request failed")
    assert twin.items() == [lock]


def test_a_cancelled_transaction_has_moto_s_reasons_and_writes_nothing(twin: Twin) -> None:
    twin.call("TransactWriteItems", {"TransactItems": [claim(twin, "a", "1 upsert", None)]})
    stale = [
        claim(twin, "b", "1 upsert", None),
        claim(twin, "a", "2 upsert", "0 upsert"),  # a is at "1 upsert": changed since this read
        claim(twin, "c", "1 upsert", None),
    ]
    stale[1]["Put"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    assert not twin.went_direct("TransactWriteItems", {"TransactItems": stale})
    status, error = twin.call("TransactWriteItems", {"TransactItems": stale})
    assert status == 400
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed", "None"]
    assert error["CancellationReasons"][1]["Item"] == key("a") | {"state": {"S": "1 upsert"}}
    assert [item["record_id"]["S"] for item in twin.items()] == ["a"]


@pytest.mark.parametrize(
    ("operation", "request_of"),
    [
        ("BatchGetItem", lambda table: {"RequestItems": {"missing-" + table: {"Keys": [key("a")]}}}),
        ("BatchGetItem", lambda table: {"RequestItems": {table: {"Keys": [key("a"), key("a")]}}}),
        ("BatchGetItem", lambda table: {"RequestItems": {table: {"Keys": [{"namespace": {"S": "ns"}}]}}}),
        ("BatchGetItem", lambda table: {"RequestItems": {table: {"Keys": [key(str(n)) for n in range(101)]}}}),
        ("PutItem", lambda table: {"TableName": table, "Item": {"namespace": {"S": "ns"}}}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a"), "ConditionExpression": "size = :v"}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a"), "ConditionExpression": "x = :missing"}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("") | {"n": {"N": "1"}}}),
        ("DeleteItem", lambda table: {"TableName": table, "Key": key("a") | {"extra": {"S": "x"}}}),
        (
            "TransactWriteItems",
            lambda table: {
                "TransactItems": [
                    {"Put": {"TableName": table, "Item": key("a")}},
                    {"Delete": {"TableName": table, "Key": key("a")}},
                ]
            },
        ),
        (
            "TransactWriteItems",
            lambda table: {
                "TransactItems": [
                    {"Put": {"TableName": table, "Item": key("a"), "ExpressionAttributeNames": {"#unused": "x"}}}
                ]
            },
        ),
    ],
)
def test_a_request_moto_refuses_is_refused_with_moto_s_own_error(twin: Twin, operation: str, request_of: Any) -> None:
    request = request_of(twin.table)
    assert not twin.went_direct(operation, request)
    status, error = twin.call(operation, request)
    assert status == 400 or (status, error) == (500, "KeyError")  # moto fails on a condition's missing value
    assert twin.items() == []


@pytest.mark.parametrize(
    ("operation", "request_of", "headers"),
    [
        ("PutItem", lambda table: {"TableName": table, "Item": key("a"), "ReturnValues": "ALL_OLD"}, {}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a") | {"b": {"B": "AAEC"}}}, {}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a"), "ConditionExpression": None}, {}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a"), "ReturnConsumedCapacity": "TOTAL"}, {}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a") | {"n": {"N": 5}}}, {}),
        ("PutItem", lambda table: {"TableName": table, "Item": key("a")}, {"Origin": "http://example.com"}),
        ("DeleteItem", lambda table: {"TableName": table, "Key": key("a"), "ReturnValues": "ALL_OLD"}, {}),
        (
            "TransactWriteItems",
            lambda table: {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": table,
                            "Key": key("a"),
                            "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"S": "x"}},
                        }
                    }
                ]
            },
            {},
        ),
        (
            "TransactWriteItems",
            lambda table: {
                "TransactItems": [{"Put": {"TableName": table, "Item": key("a")}}],
                "ClientRequestToken": "t",
            },
            {},
        ),
        (
            "BatchGetItem",
            lambda table: {"RequestItems": {table: {"Keys": [key("a")], "ProjectionExpression": "v"}}},
            {},
        ),
    ],
)
def test_requests_outside_the_guards_shapes_go_moto_s_whole_way(
    twin: Twin, operation: str, request_of: Any, headers: dict[str, str]
) -> None:
    twin.call("PutItem", {"TableName": twin.table, "Item": key("a") | {"v": {"S": "old"}}})
    assert not twin.went_direct(operation, request_of(twin.table), **headers)
    twin.items()  # and the tables agree afterwards


def test_items_of_every_plain_type_read_back_as_moto_writes_them(twin: Twin) -> None:
    attributes = {
        "s": {"S": ""},
        "n": {"N": "-1.50"},
        "ss": {"SS": ["b", "a"]},
        "ns": {"NS": ["1", "2.5"]},
        "bool": {"BOOL": False},
        "null": {"NULL": True},
        "empty_m": {"M": {}},
        "empty_l": {"L": []},
        "nested": {"M": {"l": {"L": [{"S": "x"}, {"M": {"n": {"N": "0"}}}, {"SS": ["q"]}]}}},
    }
    assert twin.went_direct("PutItem", {"TableName": twin.table, "Item": key("a") | attributes})
    request = {"RequestItems": {twin.table: {"Keys": [key("a"), key("absent")], "ConsistentRead": True}}}
    assert twin.went_direct("BatchGetItem", request)
    _, read = twin.call("BatchGetItem", request)
    assert read["Responses"][twin.table] == [key("a") | attributes]


def test_an_item_with_binary_attributes_is_read_back_by_moto_s_whole_way(twin: Twin) -> None:
    twin.call("PutItem", {"TableName": twin.table, "Item": key("a") | {"b": {"B": "AAEC"}, "bs": {"BS": ["AQ=="]}}})
    assert not twin.went_direct("BatchGetItem", {"RequestItems": {twin.table: {"Keys": [key("a")]}}})


def test_only_attribute_values_moto_parses_unchanged_count_as_plain() -> None:
    assert plain_value({"M": {"a": {"L": [{"S": "x"}, {"NULL": True}, {"NS": ["1"]}]}}})
    for odd in ({"B": "AA=="}, {"N": 1}, {"S": "a", "N": "1"}, {}, {"SS": "a"}, {"M": {"a": {"S": None}}}, {"X": "a"}):
        assert not plain_value(odd)
