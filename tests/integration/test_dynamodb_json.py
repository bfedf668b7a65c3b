"""The version guard's raw-JSON DynamoDB calls (vector_relay.ingest.dynamodb_json) answer as botocore's do.

Against the local stack's moto server over HTTP: the same response dictionaries, the same
ClientError codes and CancellationReasons, botocore's own errors for a refused connection, and
every other call left to the botocore client.
"""

from __future__ import annotations

import socket
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.integration.conftest import create_version_table
from tests.integration.test_moto_transactions import item, key, put_if
from vector_relay.aws_clients import GUARD_CONFIG, aws_credentials
from vector_relay.ingest.dynamodb_json import JsonDynamoDB

TABLE = "moto-transactions"  # the name put_if writes to


@pytest.fixture
def clients(aws: str) -> tuple[Any, JsonDynamoDB]:
    create_version_table(TABLE)
    plain = boto3.client("dynamodb", config=GUARD_CONFIG)
    plain.put_item(TableName=TABLE, Item=item("a", "1"))
    plain.put_item(TableName=TABLE, Item=item("b", "1|upsert|9|ab"))
    raw = JsonDynamoDB(plain, aws_credentials())
    return plain, raw


def test_a_batch_get_reads_what_botocore_reads(clients: tuple[Any, JsonDynamoDB]) -> None:
    plain, raw = clients
    request = {TABLE: {"Keys": [key("a"), key("b"), key("missing")], "ConsistentRead": True}}

    answer = raw.batch_get_item(RequestItems=request)

    expected = plain.batch_get_item(RequestItems=request)
    assert sorted(answer["Responses"][TABLE], key=str) == sorted(expected["Responses"][TABLE], key=str)
    assert answer.get("UnprocessedKeys", {}) == expected.get("UnprocessedKeys", {}) == {}


def test_a_transaction_applies_and_a_refused_one_says_which_put_was_refused(
    clients: tuple[Any, JsonDynamoDB],
) -> None:
    plain, raw = clients
    raw.transact_write_items(TransactItems=[put_if("a", "2", read="1"), put_if("c", "1", read=None)])
    found = plain.batch_get_item(RequestItems={TABLE: {"Keys": [key("a"), key("c")], "ConsistentRead": True}})
    assert {entry["record_id"]["S"]: entry["state"]["S"] for entry in found["Responses"][TABLE]} == {"a": "2", "c": "1"}

    with pytest.raises(ClientError) as refused:
        raw.transact_write_items(TransactItems=[put_if("a", "3", read="2"), put_if("b", "2", read="0")])

    error = refused.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert refused.value.operation_name == "TransactWriteItems"


def test_an_invalid_request_is_refused_with_dynamodbs_code(clients: tuple[Any, JsonDynamoDB]) -> None:
    _, raw = clients
    with pytest.raises(ClientError) as refused:
        raw.transact_write_items(
            TransactItems=[put_if("a", "2", read="1"), {"Delete": {"TableName": TABLE, "Key": key("a")}}]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_other_calls_are_the_botocore_clients(clients: tuple[Any, JsonDynamoDB]) -> None:
    plain, raw = clients
    assert raw.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE
    assert raw.meta is plain.meta


def test_a_refused_connection_is_botocores_connection_error(aws: str) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    plain = boto3.client("dynamodb", config=GUARD_CONFIG, endpoint_url=f"http://127.0.0.1:{port}")
    raw = JsonDynamoDB(plain, aws_credentials())
    with pytest.raises(EndpointConnectionError):
        raw.batch_get_item(RequestItems={TABLE: {"Keys": [key("a")]}})


def test_a_conditional_put_update_or_delete_that_fails_says_so_as_botocore_does(
    clients: tuple[Any, JsonDynamoDB],
) -> None:
    plain, raw = clients
    raw.put_item(TableName=TABLE, Item=item("e", "1"), ConditionExpression="attribute_not_exists(record_id)")
    refusals = []
    for call in (
        lambda: raw.put_item(
            TableName=TABLE, Item=item("e", "2"), ConditionExpression="attribute_not_exists(record_id)"
        ),
        lambda: raw.update_item(
            TableName=TABLE,
            Key=key("e"),
            UpdateExpression="SET #state = :new",
            ConditionExpression="#state = :read",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":new": {"S": "3"}, ":read": {"S": "0"}},
        ),
        lambda: raw.delete_item(
            TableName=TABLE,
            Key=key("e"),
            ConditionExpression="#state = :read",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":read": {"S": "0"}},
        ),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        refusals.append(refused.value.response["Error"]["Code"])
    assert refusals == ["ConditionalCheckFailedException"] * 3
    assert plain.get_item(TableName=TABLE, Key=key("e"), ConsistentRead=True)["Item"]["state"] == {"S": "1"}
    raw.delete_item(TableName=TABLE, Key=key("e"))
    assert "Item" not in plain.get_item(TableName=TABLE, Key=key("e"), ConsistentRead=True)
