"""The producer library's reply reader against moto: a reply is matched by correlation id and deleted, a large
reply's pointer is followed into S3, and replies to other queries stay on the queue, visible."""

from __future__ import annotations

import json
import re

import boto3
import pytest

from vector_relay.contract.replies import QueryReplyError, QueryReplyOk
from vector_relay.producer import read_reply, wait_for_reply


def reply(correlation_id: str, **fields: object) -> str:
    body = {"schema_version": 1, "correlation_id": correlation_id, "status": "ok", "tenant": "acme"}
    return json.dumps(body | (fields or {"matches": [{"id": "doc-1#0", "score": 0.9}]}))


def test_the_reply_with_the_correlation_id_is_returned_and_deleted_and_the_others_stay_visible(aws: str) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="replies")["QueueUrl"]
    for body in [reply("other-1"), "not json", reply("mine"), reply("other-2")]:
        sqs.send_message(QueueUrl=url, MessageBody=body)

    found = wait_for_reply(sqs, url, "mine", timeout=60)

    assert isinstance(found, QueryReplyOk)
    assert (found.correlation_id, [m.id for m in found.matches or []]) == ("mine", ["doc-1#0"])
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert sorted(m["Body"] for m in left) == sorted([reply("other-1"), "not json", reply("other-2")])


def test_no_reply_is_none_at_the_deadline_with_the_others_released(aws: str) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="replies")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=reply("other"))
    readings = iter([0.0, 0.0, 0.0, 5.0])  # the injected clock: two looks, then past the deadline

    assert wait_for_reply(sqs, url, "mine", timeout=1, poll_seconds=0, clock=lambda: next(readings)) is None

    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("1", "0")


def test_a_pointer_to_s3_is_followed_and_needs_an_s3_client(aws: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    s3.put_object(Bucket="results", Key="tenants/acme/2026/01/01/m-1.json", Body=reply("big").encode())
    pointer = reply("big", result_location={"bucket": "results", "key": "tenants/acme/2026/01/01/m-1.json"})

    assert [m.id for m in read_reply(pointer, s3=s3).matches or []] == ["doc-1#0"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=re.escape("stored in S3 (s3://results/tenants/acme/2026/01/01/m-1.json)")):
        read_reply(pointer)
    error = read_reply(json.dumps({"schema_version": 1, "status": "error", "error": {"code": "x", "message": "y"}}))
    assert isinstance(error, QueryReplyError)
