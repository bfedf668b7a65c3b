"""Send a poison message to the dead-letter queue: the original body, unchanged, with the reasons as attributes.

If the send fails for any reason the message is reported as a batch item failure, so SQS keeps it
(and its redrive policy eventually moves it): a poison message is never dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.errors import PoisonMessageError, TransientError
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES
from vector_relay.sqs.message_age import first_message_id, first_sent_ms

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

logger = Logger(child=True)

# Characters SQS accepts in bodies and attribute values (the SQS message quotas page); any other
# character in a reason is replaced, so a strange metadata key cannot make the DLQ send fail.
_NOT_ALLOWED_IN_SQS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_safe(text: str) -> str:
    """``text`` with every character SQS rejects replaced by U+FFFD."""
    return _NOT_ALLOWED_IN_SQS.sub("\ufffd", text)


def attributes_size(attributes: dict[str, dict[str, str]]) -> int:
    """Bytes SQS counts for message attributes: each name, data type and value."""
    return sum(
        len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        for name, value in attributes.items()
    )


def fit_attributes(body: str, attributes: DeadLetterAttributes) -> dict[str, dict[str, str]]:
    """SQS attributes for ``attributes``; ``error_detail`` is shortened if body and attributes exceed the limit."""
    safe = attributes.model_copy(update={"error_detail": sqs_safe(attributes.error_detail) or attributes.error_code})
    encoded = safe.to_message_attributes()
    room = SQS_MAX_MESSAGE_BYTES - len(body.encode()) - attributes_size(encoded)
    if room >= 0:
        return encoded
    detail = encoded["error_detail"]["StringValue"].encode()
    keep = max(len(detail) + room - 3, 1)
    encoded["error_detail"]["StringValue"] = detail[:keep].decode(errors="ignore") + "..."
    return encoded


def send_to_dead_letter_queue(sqs: SQSClient, *, queue_url: str, body: str, attributes: DeadLetterAttributes) -> str:
    """Send ``body`` to the DLQ with ``attributes``; return the new message id. Raises on any failure."""
    message_attributes: dict[str, MessageAttributeValueTypeDef] = {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in fit_attributes(body, attributes).items()
    }
    response = sqs.send_message(QueueUrl=queue_url, MessageBody=body, MessageAttributes=message_attributes)
    return response["MessageId"]


def dead_letter_attributes(record: SQSRecord, error: PoisonMessageError) -> DeadLetterAttributes:
    """What the DLQ copy of ``record`` says about why it is there."""
    return DeadLetterAttributes(
        error_code=error.error_code,
        error_detail=error.detail,
        source_queue=record.event_source_arn,
        source_message_id=record.message_id,
        receive_count=int(record.attributes.approximate_receive_count),
        first_sent_at=first_sent_ms(record),
        first_message_id=first_message_id(record),
    )


def route_poison(sqs: SQSClient, *, dead_letter_queue_url: str, record: SQSRecord, error: PoisonMessageError) -> None:
    """Send ``record`` to the DLQ. Raises :class:`TransientError` if that fails, so the message is kept and retried."""
    attributes = dead_letter_attributes(record, error)
    try:
        send_to_dead_letter_queue(sqs, queue_url=dead_letter_queue_url, body=record.body, attributes=attributes)
    except Exception as send_error:
        logger.exception(
            "dead-letter send failed; the message stays on its queue", extra={"message_id": record.message_id}
        )
        raise TransientError(f"could not send message {record.message_id} to the dead-letter queue") from send_error
    logger.warning(
        "message dead-lettered",
        extra={"message_id": record.message_id, "error_code": error.error_code, "error_codes": list(error.error_codes)},
    )
