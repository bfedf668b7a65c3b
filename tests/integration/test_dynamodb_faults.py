"""The DynamoDB fault proxy (relay_local.dynamodb_faults) in front of moto's server: writes held, applied late, twice.

Late writes are released by ``flush()`` (or by their own short timer, waited for with a ceiling),
never raced against: what the client sees is decided before the write reaches moto.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

from relay_local.dynamodb_faults import DynamoDBFaultProxy, FaultRule, FaultSpecError
from tests.conftest import wait_until
from tests.integration.conftest import create_version_table

TABLE = "faulted"
OTHER = "untouched"


@pytest.fixture
def tables(dynamodb_faults: DynamoDBFaultProxy) -> None:
    create_version_table(TABLE)
    create_version_table(OTHER)


def client(read_timeout: float = 10.0) -> Any:
    """A client through the proxy with one attempt per call, as the version guard's (GUARD_PROFILE)."""
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=read_timeout)
    return boto3.client("dynamodb", config=config)


def put(dynamodb: Any, record_id: str, table: str = TABLE) -> None:
    dynamodb.put_item(TableName=table, Item={"namespace": {"S": "ns"}, "record_id": {"S": record_id}})


def stored(record_id: str, table: str = TABLE) -> dict[str, Any]:
    """The item as moto has it (read through the proxy: reads have no rule here)."""
    key = {"namespace": {"S": "ns"}, "record_id": {"S": record_id}}
    return boto3.client("dynamodb").get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})


def late_forwards(proxy: DynamoDBFaultProxy) -> list[tuple[str, str | None, int]]:
    return [(e["forwarded"], e["operation"], e["status"]) for e in proxy.state()["journal"] if "forwarded" in e]


def test_a_held_write_reaches_moto_after_its_client_timed_out(
    dynamodb_faults: DynamoDBFaultProxy, tables: None
) -> None:
    dynamodb_faults.add_rule("PutItem", table=TABLE, hold_ms=600_000, times=1)  # held until flushed

    with pytest.raises(ReadTimeoutError):
        put(client(read_timeout=0.2), "x")

    assert stored("x") == {}  # the client has given up; the write has not reached moto
    assert dynamodb_faults.pending() == 1
    assert dynamodb_faults.flush() == 1
    assert stored("x")["record_id"] == {"S": "x"}  # applied after its client was told it failed
    assert late_forwards(dynamodb_faults) == [("held", "PutItem", 200)]


def test_a_short_hold_answers_the_client_that_waits_for_it(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    dynamodb_faults.add_rule("PutItem", table=TABLE, hold_ms=50, times=1)
    put(client(), "x")
    assert stored("x")["record_id"] == {"S": "x"}
    assert dynamodb_faults.pending() == 0


def test_a_dropped_write_is_applied_later_on_its_own(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    dynamodb_faults.script("BatchWriteItem", {"drop_then_apply_after_ms": 600_000}, {"drop_then_apply_after_ms": 50})
    dynamodb = client()
    items = [{"PutRequest": {"Item": {"namespace": {"S": "ns"}, "record_id": {"S": r}}}} for r in ("a", "b")]

    with pytest.raises(ConnectionClosedError):  # answered at once: the connection dropped, no answer
        dynamodb.batch_write_item(RequestItems={TABLE: items[:1]})
    with pytest.raises(ConnectionClosedError):
        dynamodb.batch_write_item(RequestItems={TABLE: items[1:]})

    wait_until(lambda: stored("b") != {}, "the write dropped with a 50 ms delay was applied")
    assert stored("a") == {}  # its 10 minutes are not over
    assert dynamodb_faults.flush() == 1
    assert stored("a") != {}
    assert late_forwards(dynamodb_faults) == [("applied late", "BatchWriteItem", 200)] * 2


def test_a_dropped_write_without_apply_never_lands(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    dynamodb_faults.script("PutItem", "drop", table=TABLE)
    with pytest.raises(ConnectionClosedError):
        put(client(), "x")
    assert dynamodb_faults.flush() == 0
    assert stored("x") == {}


def count(record_id: str) -> int:
    return int(stored(record_id).get("n", {"N": "0"})["N"])


def increment(dynamodb: Any, record_id: str) -> None:
    dynamodb.update_item(
        TableName=TABLE,
        Key={"namespace": {"S": "ns"}, "record_id": {"S": record_id}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )


def test_a_duplicated_write_is_applied_twice(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    dynamodb_faults.script("UpdateItem", {"duplicate": True}, {"duplicate": True, "duplicate_after_ms": 600_000})
    dynamodb = client()

    increment(dynamodb, "now")  # one call, one answer ...
    assert count("now") == 2  # ... applied twice before it came back

    increment(dynamodb, "later")
    assert count("later") == 1  # the copy comes later: here, when flushed
    assert dynamodb_faults.flush() == 1
    assert count("later") == 2
    assert late_forwards(dynamodb_faults) == [("duplicate", "UpdateItem", 200)] * 2


def test_rules_touch_only_their_operation_and_table(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    dynamodb_faults.add_rule("write", table=TABLE, drop=True)
    dynamodb = client()
    put(dynamodb, "x", table=OTHER)
    assert dynamodb.scan(TableName=TABLE)["Items"] == []  # reads pass
    for call in (
        lambda: put(dynamodb, "x"),
        lambda: increment(dynamodb, "x"),
        lambda: dynamodb.delete_item(TableName=TABLE, Key={"namespace": {"S": "ns"}, "record_id": {"S": "x"}}),
        lambda: dynamodb.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": {"namespace": {"S": "ns"}, "record_id": {"S": "t"}}}}]
        ),
    ):
        with pytest.raises(ConnectionClosedError):
            call()
    assert stored("x", OTHER) != {}
    assert [e["operation"] for e in dynamodb_faults.state()["journal"]] == [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
    ]


def dropped_pattern(proxy: DynamoDBFaultProxy, rounds: int = 40) -> list[int]:
    """Which of ``rounds`` puts through ``proxy`` a 50% drop rule hit, in order."""
    proxy.add_rule("PutItem", table=TABLE, drop=True, rate=0.5)
    hits = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
        dynamodb = client()
    for i in range(rounds):
        try:
            put(dynamodb, f"r{i}")
        except ConnectionClosedError:
            hits.append(i)
    return hits


def test_rules_are_seeded_and_reproducible(aws: str, tables: None) -> None:
    patterns = []
    for seed in (7, 7, 8):
        with DynamoDBFaultProxy(aws, seed=seed) as proxy:
            patterns.append(dropped_pattern(proxy))
            if seed == 8:
                proxy.clear()  # rules gone, the dice back at the seed: the same faults again
                patterns.append(dropped_pattern(proxy))
    seven, seven_again, eight, eight_cleared = patterns
    assert seven == seven_again
    assert eight == eight_cleared
    assert seven != eight
    assert 5 < len(seven) < 35


def control(proxy: DynamoDBFaultProxy, method: str, path: str, payload: object | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{proxy.url}/_faults{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_control_api_over_http(dynamodb_faults: DynamoDBFaultProxy, tables: None) -> None:
    rule = control(dynamodb_faults, "POST", "/rules", {"operation": "PutItem", "drop_then_apply_after_ms": 600_000})
    with pytest.raises(ConnectionClosedError):
        put(client(), "x")
    state = control(dynamodb_faults, "GET", "")
    assert [r["id"] for r in state["rules"]] == [rule["id"]]
    assert state["pending"] == 1
    assert control(dynamodb_faults, "POST", "/flush", {}) == {"flushed": 1}
    assert stored("x") != {}
    control(dynamodb_faults, "DELETE", "")
    assert control(dynamodb_faults, "GET", "") == {"rules": [], "pending": 0, "journal": []}


@pytest.mark.parametrize(
    "raw",
    [
        {"operation": "PutItem"},
        {"operation": "PutItem", "drop": True, "duplicate": True},
        {"operation": "PutItem", "hold_ms": 10, "drop_then_apply_after_ms": 10},
        {"operation": "PutItem", "hold_ms": -1},
        {"operation": "PutItem", "hold_ms": 1, "rate": 2},
        {"operation": "PutItem", "sequence": []},
        {"operation": "PutItem", "status": 500},
    ],
)
def test_rules_that_cannot_be_understood_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(FaultSpecError):
        FaultRule.from_json(raw)
