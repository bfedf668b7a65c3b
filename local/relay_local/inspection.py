"""Reading what landed where, without changing it: queue depths, DLQ messages and their reasons, index stats."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

SQS_VISIBILITY_FOR_PEEK = 5  # seconds a peeked message is hidden before it is made visible again


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    error_code: str
    error_detail: str
    source_queue: str
    receive_count: str
    body: str

    @property
    def reason(self) -> str:
        return self.error_detail or "(no reason attribute: moved by the redrive policy after maxReceiveCount)"


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


def peek_messages(sqs: Any, url: str, limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` visible messages of a queue, left on it (each receive counts, as in any SQS console)."""
    seen: dict[str, dict[str, Any]] = {}
    while len(seen) < limit:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=SQS_VISIBILITY_FOR_PEEK,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen[message["MessageId"]] = message
    if seen:
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(seen.values())
        ]
        for start in range(0, len(entries), 10):
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries[start : start + 10])
    return list(seen.values())


def drain_messages(sqs: Any, url: str, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """Every visible message of a queue, removed."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    return messages


def dead_letter(message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})

    def text(name: str) -> str:
        return str(attributes.get(name, {}).get("StringValue", ""))

    return DeadLetter(
        message_id=message["MessageId"],
        error_code=text("error_code") or "(none)",
        error_detail=text("error_detail"),
        source_queue=text("source_queue"),
        receive_count=text("receive_count") or message.get("Attributes", {}).get("ApproximateReceiveCount", ""),
        body=message["Body"],
    )


def emulator_get(url: str, path: str) -> Any:
    """A control endpoint of the Pinecone emulator (no API key needed)."""
    with urllib.request.urlopen(f"{url}/_emulator/{path}", timeout=10) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def namespace_counts(pinecone_url: str, index_name: str) -> dict[str, int]:
    """Records per namespace of one index, from the emulator's state (``{"namespaces": {name: count}}``)."""
    state = emulator_get(pinecone_url, "state")
    for index in state.get("indexes", []):
        if index.get("name") == index_name:
            return {str(name): int(count) for name, count in index.get("namespaces", {}).items()}
    return {}
