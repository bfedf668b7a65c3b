"""Send a poison message to the dead-letter queue: the original body, unchanged, with the reasons as attributes.

If the send fails for any reason the caller must report the message as a batch item failure, so
SQS keeps it (and its redrive policy eventually moves it): a poison message is never dropped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vector_relay.contract.messages import DeadLetterAttributes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# SQS's message limit, body and attributes together (1 MiB since 2026; the SendMessage reference:
# "The maximum size is 1 MiB or 1,048,576 bytes").
SQS_MAX_MESSAGE_BYTES = 1_048_576

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
