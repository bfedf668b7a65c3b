"""The DynamoDB stand-in (relay_local.dynamodb_standin) answers the version guard's calls as moto's server does.

The guard runs a workload of its own against moto (claims new, stale, busy and duplicate, a
tombstone, 250 records in groups, releases, a claim lock taken, refused, renewed, lost and dropped,
transactions refused for changed items) through a client that records every call and its answer.
The same calls, in the same order, are then made to the stand-in, and each answer must be the
same: the same items, the same error codes, the same cancellation reasons. A request the stand-in
does not serve is refused, never guessed.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from relay_local.dynamodb_standin import running
from tests.integration.conftest import create_version_table
from tests.integration.test_version_guard import Clock
from vector_relay.aws_clients import aws_credentials, dynamodb_client
from vector_relay.ingest.dynamodb_json import JsonDynamoDB
from vector_relay.ingest.guard_records import LOCK_SECONDS, LOCK_WAIT_SECONDS, ClaimLock, GuardedWrite, Verdict
from vector_relay.ingest.version_guard import VersionGuard

TABLE = "standin-versions"

type Answer = tuple[str, Any]


class Recording(JsonDynamoDB):
    """The guard's client, keeping every call it made and what came back."""

    calls: list[tuple[str, dict[str, Any], Answer]]

    def send(self, operation: str, request: dict[str, Any] | bytes) -> Callable[[], dict[str, Any]]:
        sent = orjson.loads(request if isinstance(request, bytes) else orjson.dumps(request))
        answered = super().send(operation, request)

        def recorded() -> dict[str, Any]:  # every call of the guard comes here, sent at once or not
            try:
                answer = answered()
            except ClientError as error:
                self.calls.append((operation, sent, refusal(error)))
                raise
            self.calls.append((operation, sent, ("answer", normalised(answer))))
            return answer

        return recorded


def refusal(error: ClientError) -> Answer:
    reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
    return ("refused", (error.response["Error"]["Code"], reasons))


def normalised(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer with its items in a fixed order (BatchGetItem promises none), without request metadata,
    capacity or empty fields: moto reports ``ConsumedCapacity`` unasked (and an empty
    ``ItemCollectionMetrics``), DynamoDB only when the request asks; the guard never asks nor reads them."""
    unasked = ("ResponseMetadata", "ConsumedCapacity")
    answer = {key: value for key, value in answer.items() if key not in unasked and value not in ([], {})}
    if "Responses" in answer:
        answer["Responses"] = {
            table: sorted(items, key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
            for table, items in answer["Responses"].items()
        }
    return answer


def w(record_id: str, version: int, operation: str = "upsert") -> GuardedWrite:
    return GuardedWrite("ns", record_id, version, operation)


def guard_workload(a: VersionGuard, b: VersionGuard, clock: Clock) -> None:
    """What the guard does in service, as two workers: its verdicts checked as test_version_guard checks them."""
    lease = a.lease(30)
    assert a.claim([w("x", 5), w("y", 1, "delete")], lease) == {
        ("ns", "x"): Verdict.CLAIMED,
        ("ns", "y"): Verdict.CLAIMED,
    }
    assert b.claim([w("x", 6)], b.lease(30)) == {("ns", "x"): Verdict.BUSY}  # a's lease holds x
    a.release(lease, [w("x", 5), w("y", 1, "delete")], landed={("ns", "x")})
    assert b.claim([w("x", 4), w("y", 0)], b.lease(30)) == {("ns", "x"): Verdict.STALE, ("ns", "y"): Verdict.STALE}
    assert b.claim([w("x", 5)], b.lease(30)) == {("ns", "x"): Verdict.CLAIMED}  # a redelivery shares the lease
    many = [w(f"r{i}", 3) for i in range(250)]
    lease = b.lease(30)
    assert set(b.claim(many, lease).values()) == {Verdict.CLAIMED}
    b.release(lease, many, landed={write.key for write in many})
    clock.now += 31  # every lease has ended
    assert b.claim([w("x", 7), w("y", 2)], b.lease(30)) == {("ns", "x"): Verdict.CLAIMED, ("ns", "y"): Verdict.CLAIMED}

    held = a._lock("ns")  # the claim lock: taken, refused to another, renewed, lost to a forged token, dropped
    assert held is not None
    started = clock.now
    assert b._lock("ns") is None
    assert clock.now >= started + LOCK_WAIT_SECONDS - 0.5  # refused again and again, then given up
    assert a._renew(held)
    assert not b._renew(ClaimLock("ns", "not-the-holders-token", clock.now + LOCK_SECONDS))
    a._unlock(ClaimLock("ns", "not-the-holders-token", clock.now + LOCK_SECONDS))  # refused: a's lock stays
    assert b._lock("ns") is None
    a._unlock(held)
    taken = b._lock("ns")
    assert taken is not None
    b._unlock(taken)


def test_the_stand_in_answers_every_call_of_the_guard_as_moto_does(aws: str) -> None:
    create_version_table(TABLE)
    clock = Clock()
    recording = Recording(dynamodb_client(), aws_credentials())
    recording.calls = []
    guards = [VersionGuard(recording, TABLE, ttl_seconds=3600, clock=clock, sleep=clock.sleep) for _ in range(2)]  # type: ignore[arg-type]
    guard_workload(*guards, clock)
    made = recording.calls
    operations = {operation for operation, _, _ in made}
    assert operations == {"BatchGetItem", "TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"}
    assert ("refused", ("ConditionalCheckFailedException", [])) in [answer for _, _, answer in made]

    with running() as url:
        stand_in = JsonDynamoDB(dynamodb_client_at(url), aws_credentials())
        for operation, request, expected in made:
            try:
                got: Answer = ("answer", normalised(stand_in._call(operation, request)))
            except ClientError as error:
                got = refusal(error)
            assert got == expected, (operation, request)


def test_refused_transactions_name_each_changed_item_as_moto_does(aws: str) -> None:
    create_version_table(TABLE)
    puts = [
        put("a", "1", None),
        put("b", "1", None),
    ]
    changed = [put("a", "2", "1"), put("b", "2", "0"), put("c", "1", None)]  # b was not as read
    made = []
    moto = JsonDynamoDB(dynamodb_client(), aws_credentials())
    for request in ({"TransactItems": puts}, {"TransactItems": changed}):
        try:
            made.append((request, ("answer", normalised(moto._call("TransactWriteItems", request)))))
        except ClientError as error:
            made.append((request, refusal(error)))
    assert made[1][1] == ("refused", ("TransactionCanceledException", ["None", "ConditionalCheckFailed", "None"]))

    with running() as url:
        stand_in = JsonDynamoDB(dynamodb_client_at(url), aws_credentials())
        for request, expected in made:
            try:
                got: Answer = ("answer", normalised(stand_in._call("TransactWriteItems", request)))
            except ClientError as error:
                got = refusal(error)
            assert got == expected


@pytest.mark.parametrize(
    ("operation", "request_body"),
    [
        ("Scan", {"TableName": TABLE}),
        ("PutItem", {"TableName": TABLE, "Item": {"namespace": {"S": "n"}, "record_id": {"S": "r"}},
                     "ConditionExpression": "size(#s) > :n", "ExpressionAttributeNames": {"#s": "state"},
                     "ExpressionAttributeValues": {":n": {"N": "1"}}}),
        ("UpdateItem", {"TableName": TABLE, "Key": {"namespace": {"S": "n"}, "record_id": {"S": "r"}},
                        "UpdateExpression": "ADD hits :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}),
        ("TransactWriteItems", {"TransactItems": [{"Delete": {"TableName": TABLE,
                                "Key": {"namespace": {"S": "n"}, "record_id": {"S": "r"}}}}]}),
    ],
)  # fmt: skip
def test_what_the_guard_never_sends_is_refused_not_guessed(
    aws: str, operation: str, request_body: dict[str, Any]
) -> None:
    with running() as url:
        stand_in = JsonDynamoDB(dynamodb_client_at(url), aws_credentials())
        with pytest.raises(ClientError) as refused:
            stand_in._call(operation, request_body)
    assert refused.value.response["Error"]["Code"] in ("ValidationException", "UnknownOperationException")


CONDITIONS = [
    "attribute_not_exists(record_id)",
    "attribute_exists(record_id)",
    "attribute_not_exists(record_id) OR (v <= :v AND u < :now)",
    "attribute_not_exists(record_id) OR v <= :v AND u < :now",
    "(attribute_not_exists(record_id) OR v <= :v) AND u < :now",
    "NOT (v < :v) AND #s = :s",
    "v >= :v OR NOT attribute_exists(gone_attribute)",
    "v <> :v",
    "#s <> :v",  # a string against a number
    "gone_attribute = :v",
    "u > :now",
]


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("version", ["3", "4", "5"])
def test_conditions_are_decided_as_moto_decides_them(aws: str, condition: str, version: str) -> None:
    create_version_table(TABLE)
    stored = {"namespace": {"S": "ns"}, "record_id": {"S": "a"}, "s": {"S": "4 upsert 900 t"}, "v": {"N": "4"},
              "u": {"N": "900"}}  # fmt: skip
    request: dict[str, Any] = {
        "TableName": TABLE,
        "Item": {**stored, "v": {"N": "9"}},
        "ConditionExpression": condition,
    }
    values = {":v": {"N": version}, ":now": {"N": "1000"}, ":s": {"S": "4 upsert 900 t"}}
    if used := {key: value for key, value in values.items() if key in condition}:
        request["ExpressionAttributeValues"] = used
    if "#s" in condition:
        request["ExpressionAttributeNames"] = {"#s": "s"}
    outcomes = []
    with running() as url:
        for client in (
            JsonDynamoDB(dynamodb_client(), aws_credentials()),
            JsonDynamoDB(dynamodb_client_at(url), aws_credentials()),
        ):
            client._call("PutItem", {"TableName": TABLE, "Item": stored})
            try:
                client._call("PutItem", request)
                outcomes.append("written")
            except ClientError as error:
                outcomes.append(f"{error.response['Error']['Code']}: {error.response['Error']['Message']}")
    assert outcomes[0].split(":")[0] == outcomes[1].split(":")[0], outcomes  # the codes; the messages differ


def put(record_id: str, state: str, read: str | None) -> dict[str, Any]:
    item = {"namespace": {"S": "ns"}, "record_id": {"S": record_id}, "state": {"S": state}}
    condition: dict[str, Any] = (
        {"ConditionExpression": "attribute_not_exists(record_id)"}
        if read is None
        else {
            "ConditionExpression": "#state = :read",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":read": {"S": read}},
        }
    )
    return {"Put": {"TableName": TABLE, "Item": item, **condition}}


def dynamodb_client_at(url: str) -> Any:
    import boto3

    from vector_relay.aws_clients import GUARD_CONFIG

    return boto3.client("dynamodb", endpoint_url=url, config=GUARD_CONFIG)


def test_the_stand_in_counts_capacity_units_as_dynamodb_bills_the_guards_items(aws: str) -> None:
    with running() as url:
        stand_in = JsonDynamoDB(dynamodb_client_at(url), aws_credentials())
        stand_in._call("TransactWriteItems", {"TransactItems": [put("a", "1", None), put("b", "1", None)]})
        with pytest.raises(ClientError):  # a is no longer absent: the whole transaction is refused
            stand_in._call("TransactWriteItems", {"TransactItems": [put("a", "2", None), put("c", "1", None)]})
        keys = [{"namespace": {"S": "ns"}, "record_id": {"S": r}} for r in ("a", "b", "missing")]
        stand_in._call("BatchGetItem", {"RequestItems": {TABLE: {"Keys": keys, "ConsistentRead": True}}})
        stand_in._call("PutItem", {"TableName": TABLE, "Item": {"namespace": {"S": "ns"}, "record_id": {"S": "m"}}})
        with urllib.request.urlopen(f"{url}/units", timeout=10) as answer:
            units = orjson.loads(answer.read())
    # 2 transactional puts x 2 and one put x 1; the refused transaction's 2 puts x 2 apart; 3 keys read
    assert units == {"read": 3, "write": 5, "refused_write": 4}
