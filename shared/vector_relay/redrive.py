"""What an operator's DLQ tools need: read a DLQ without consuming it, and judge each message again.

Reading: messages are received with a short visibility timeout and, when the scan is over, made
visible again at once (``ChangeMessageVisibility`` 0); if the reader dies, they come back by
themselves when the timeout ends. Nothing is deleted. Judging: a message is checked against
today's contract, tenant registry (binding and schema) and index shape, as the worker would, so a
redrive sends back only what would now be accepted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vector_relay.contract import DeadLetterAttributes, IndexShape, ValidationContext
from vector_relay.errors import PoisonMessageError
from vector_relay.schemas import message_problems
from vector_relay.tenancy import TenantRegistry
from vector_relay.validation import parse_write_message

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

READ_VISIBILITY_SECONDS = 60  # how long a message read by a scan stays hidden if the scan dies


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    receipt_handle: str
    body: str
    sent_at_ms: int
    error_code: str  # "" for a message SQS's redrive policy moved (no attributes)
    error_detail: str
    source_queue: str  # the source queue's ARN, "" when unknown


def read_all(sqs: SQSClient, url: str, limit: int | None = None) -> Iterator[DeadLetter]:
    """Every message of the queue (up to ``limit``), each once; hidden for the scan, not consumed."""
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        batch = min(10, limit - len(seen)) if limit is not None else 10
        response = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=batch,
            VisibilityTimeout=READ_VISIBILITY_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        for message in messages:
            if message["MessageId"] in seen:
                continue
            seen.add(message["MessageId"])
            yield _dead_letter(message)


def release(sqs: SQSClient, url: str, letters: list[DeadLetter]) -> None:
    """Make messages read by a scan visible again now (best effort: the timeout does it anyway)."""
    for start in range(0, len(letters), 10):
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for i, letter in enumerate(letters[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _dead_letter(message: Mapping[str, Any]) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})
    try:
        parsed = DeadLetterAttributes.from_message_attributes(attributes)
        code, detail, source = parsed.error_code, parsed.error_detail, parsed.source_queue
    except ValueError:  # moved by SQS's redrive policy: no reasons attached
        code, detail, source = "", "", ""
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        sent_at_ms=int(message.get("Attributes", {}).get("SentTimestamp", "0")),
        error_code=code,
        error_detail=detail,
        source_queue=source,
    )


def judge(body: str, source_queue_arn: str, registry: TenantRegistry, index: IndexShape | None) -> str | None:
    """The code a write message would be dead-lettered with today, or None when the relay would take it."""
    try:
        message = parse_write_message(body, ValidationContext(tenants=registry, index=index))
        problem = registry.binding_problem(source_queue_arn, message.tenant) if source_queue_arn else None
        if problem is not None:
            raise PoisonMessageError([problem])
        violations = message_problems(registry.schema_for(message.tenant), message)
        if violations:
            raise PoisonMessageError(violations)
    except PoisonMessageError as poison:
        return poison.error_code
    return None
