"""``TransactWriteItems`` on the local stack's moto server (relay_local.moto_server): all or nothing, as in DynamoDB.

The version guard's claims are transactions of conditional puts (docs/ordering.md); the local stack
replaces moto's implementation (which copied whole tables on every call) for transactions of
``Put``, ``Delete`` and ``ConditionCheck``. These tests hold it to what DynamoDB answers.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import create_version_table

TABLE = "moto-transactions"


def key(record_id: str) -> dict[str, Any]:
    return {"namespace": {"S": "ns"}, "record_id": {"S": record_id}}


def item(record_id: str, state: str) -> dict[str, Any]:
    return key(record_id) | {"state": {"S": state}}


def put_if(record_id: str, state: str, *, read: str | None) -> dict[str, Any]:
    """A put on condition that the item is as read: absent (None) or with that state."""
    if read is None:
        return {
            "Put": {
                "TableName": TABLE,
                "Item": item(record_id, state),
                "ConditionExpression": "attribute_not_exists(record_id)",
            }
        }
    return {
        "Put": {
            "TableName": TABLE,
            "Item": item(record_id, state),
            "ConditionExpression": "#state = :read",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":read": {"S": read}},
        }
    }


def states() -> dict[str, str]:
    found = boto3.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {entry["record_id"]["S"]: entry["state"]["S"] for entry in found}


@pytest.fixture
def table(aws: str) -> None:
    create_version_table(TABLE)
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item("a", "1"))
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=item("b", "1"))


@pytest.mark.usefixtures("table")
def test_a_transaction_whose_conditions_hold_applies_every_action() -> None:
    boto3.client("dynamodb").transact_write_items(
        TransactItems=[
            put_if("a", "2", read="1"),
            put_if("c", "1", read=None),
            {"Delete": {"TableName": TABLE, "Key": key("b")}},
        ]
    )
    assert states() == {"a": "2", "c": "1"}


@pytest.mark.usefixtures("table")
def test_one_failed_condition_cancels_the_whole_transaction_with_each_actions_reason() -> None:
    with pytest.raises(ClientError) as refused:
        boto3.client("dynamodb").transact_write_items(
            TransactItems=[
                put_if("a", "2", read="1"),
                put_if("b", "2", read="0"),  # b is at 1: changed since this "read"
                put_if("c", "1", read=None),
            ]
        )
    error = refused.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in error["CancellationReasons"]] == ["None", "ConditionalCheckFailed", "None"]
    assert states() == {"a": "1", "b": "1"}


@pytest.mark.usefixtures("table")
def test_two_actions_on_one_item_are_refused() -> None:
    with pytest.raises(ClientError) as refused:
        boto3.client("dynamodb").transact_write_items(
            TransactItems=[put_if("a", "2", read="1"), {"Delete": {"TableName": TABLE, "Key": key("a")}}]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert states() == {"a": "1", "b": "1"}


@pytest.mark.usefixtures("table")
def test_a_put_refused_midway_leaves_every_item_as_it_was() -> None:
    oversized = item("z", "x" * 410_000)  # over DynamoDB's 400 KB item limit: refused when applied
    with pytest.raises(ClientError):
        boto3.client("dynamodb").transact_write_items(
            TransactItems=[put_if("a", "2", read="1"), {"Put": {"TableName": TABLE, "Item": oversized}}]
        )
    assert states() == {"a": "1", "b": "1"}
