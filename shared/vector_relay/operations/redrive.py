"""What an operator's DLQ tools need: read a DLQ without consuming it, and judge each message again.

Reading: messages are received with a short visibility timeout and, when the scan is over, made
visible again at once (``ChangeMessageVisibility`` 0); if the reader dies, they come back by
themselves when the timeout ends. Nothing is deleted. Judging: a message is checked against
today's contract, tenant registry (binding and schema) and index shape, as the worker would, so a
redrive sends back only what would now be accepted.

Where a message goes back to comes from SQS, never from the message: the queues whose redrive
policy names the DLQ (``ListDeadLetterSourceQueues``). A ``source_queue`` attribute is only a
choice among those queues, and the tenant binding is judged against the queue the message will
really be sent to; whoever can send to a DLQ can write any attribute (docs/security.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.contract.parsing import parse_write_message
from vector_relay.contract.tenant_schemas import message_problems
from vector_relay.errors import PoisonMessageError
from vector_relay.sqs.limits import SQS_MAX_BATCH_ENTRIES, SQS_MAX_RECEIVE_MESSAGES
from vector_relay.sqs.message_age import FIRST_MESSAGE_ATTRIBUTE, FIRST_SENT_ATTRIBUTE, first_sent_attribute
from vector_relay.tenancy import TenantRegistry

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
    source_queue: str  # the source queue's ARN as the message's attribute says, "" when it has none
    moved_from: str = ""  # the source queue's ARN as SQS says for a message its redrive policy moved
    first_sent_ms: int = 0  # when its write was first sent: carried onto the redriven copy (message_age)
    first_message_id: str = ""  # the producer's original's id: carried onto the redriven copy (write receipts)


@dataclass(frozen=True, slots=True)
class SourceQueue:
    """A queue whose redrive policy names the DLQ: one a dead letter may go back to."""

    url: str
    arn: str


def source_queues(sqs: SQSClient, dlq_url: str) -> list[SourceQueue]:
    """The queues whose ``RedrivePolicy`` names the DLQ at ``dlq_url``, as SQS lists them, by ARN."""
    paginator = sqs.get_paginator("list_dead_letter_source_queues")
    urls = [url for page in paginator.paginate(QueueUrl=dlq_url) for url in page.get("queueUrls", [])]
    return sorted((SourceQueue(url, queue_arn(sqs, url)) for url in urls), key=lambda queue: queue.arn)


def queue_arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def redrive_target(
    letter: DeadLetter, sources: Sequence[SourceQueue], unnamed: SourceQueue | None = None
) -> SourceQueue | None:
    """The source queue ``letter`` goes back to, or None when it must stay.

    The DLQ's only source queue, whatever the message says. With several: the one SQS moved it
    from (``DeadLetterQueueSourceArn``), else the one its ``source_queue`` attribute names; a
    message naming none of them stays, and one naming nothing goes to ``unnamed`` (the operator's
    choice among them) when given.
    """
    if len(sources) == 1:
        return sources[0]
    named = letter.moved_from or letter.source_queue
    if not named:
        return unnamed
    return next((queue for queue in sources if queue.arn == named), None)


def read_all(sqs: SQSClient, url: str, limit: int | None = None) -> Iterator[DeadLetter]:
    """Every message of the queue (up to ``limit``), each once; hidden for the scan, not consumed."""
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        batch = min(SQS_MAX_RECEIVE_MESSAGES, limit - len(seen)) if limit is not None else SQS_MAX_RECEIVE_MESSAGES
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


def held_by_another_reader(sqs: SQSClient, url: str, held_here: int) -> int:
    """About how many of the queue's messages someone else has hidden now, besides the ``held_here`` a scan holds.

    A scan cannot see a message another reader received (``vector-relay top`` and ``dlq inspect``
    hide what they read for a moment); SQS's in-flight count says how many there are (approximately).
    """
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return max(int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) - held_here, 0)


def send_back(sqs: SQSClient, url: str, letter: DeadLetter) -> None:
    """Send ``letter``'s body to queue ``url`` as a new message carrying when its write was first sent, so
    the copy is judged by the write's age, not its own (``write_expired``). Raises what SQS raises."""
    sqs.send_message(
        QueueUrl=url,
        MessageBody=letter.body,
        MessageAttributes=first_sent_attribute(letter.first_sent_ms, letter.first_message_id),
    )


def release(sqs: SQSClient, url: str, letters: list[DeadLetter]) -> None:
    """Make messages read by a scan visible again now (best effort: the timeout does it anyway)."""
    for chunk in itertools.batched(letters, SQS_MAX_BATCH_ENTRIES, strict=False):
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": letter.receipt_handle, "VisibilityTimeout": 0}
            for i, letter in enumerate(chunk)
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _dead_letter(message: Mapping[str, Any]) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})
    sent_at_ms = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
    first_sent = [sent_at_ms]  # a DLQ message is no younger than its own send (SQS's moves keep that time)
    try:
        parsed = DeadLetterAttributes.from_message_attributes(attributes)
        code, detail, source = parsed.error_code, parsed.error_detail, parsed.source_queue
        first_sent += [parsed.first_sent_at] if parsed.first_sent_at is not None else []
        original = parsed.first_message_id or parsed.source_message_id
    except ValueError:  # moved by SQS's redrive policy: no reasons attached, its own attributes (and id) kept
        code, detail, source = "", "", ""
        carried = attributes.get(FIRST_SENT_ATTRIBUTE, {}).get("StringValue", "")
        first_sent += [int(carried)] if carried.isdigit() else []
        original = attributes.get(FIRST_MESSAGE_ATTRIBUTE, {}).get("StringValue", "") or message["MessageId"]
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        sent_at_ms=int(message.get("Attributes", {}).get("SentTimestamp", "0")),
        error_code=code,
        error_detail=detail,
        source_queue=source,
        moved_from=message.get("Attributes", {}).get("DeadLetterQueueSourceArn", ""),
        first_sent_ms=min(first_sent),
        first_message_id=original,
    )


def judge(body: str, target_queue_arn: str, registry: TenantRegistry, index: IndexShape | None) -> str | None:
    """The code a write message sent to ``target_queue_arn`` would be dead-lettered with today, or None when the
    relay would take it from there."""
    try:
        message = parse_write_message(body, ValidationContext(tenants=registry, index=index))
        problem = registry.binding_problem(target_queue_arn, message.tenant)
        if problem is not None:
            raise PoisonMessageError([problem])
        violations = message_problems(registry.schema_for(message.tenant), message)
        if violations:
            raise PoisonMessageError(violations)
    except PoisonMessageError as poison:
        return poison.error_code
    return None
