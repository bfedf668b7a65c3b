"""What a dead-lettered message carries besides its body (the original, unchanged)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from vector_relay.contract.fields import StrictModel


class DeadLetterAttributes(StrictModel):
    """The SQS message attributes a dead-lettered message carries. The body is the original, unchanged."""

    error_code: str
    error_detail: str
    source_queue: str
    source_message_id: str
    receive_count: Annotated[int, Field(ge=1)]
    # When the write was first sent (epoch ms), carried onto every copy (vector_relay.sqs.message_age);
    # absent on DLQ messages from before it existed.
    first_sent_at: Annotated[int, Field(ge=0)] | None = None
    # The id of the producer's original message (vector_relay.sqs.message_age.FIRST_MESSAGE_ATTRIBUTE),
    # carried onto a redriven copy so its write receipt names it; absent on DLQ messages from before it existed.
    first_message_id: str | None = None

    def to_message_attributes(self) -> dict[str, dict[str, str]]:
        """The ``MessageAttributes`` argument of ``sqs.send_message``."""
        attributes = {
            "error_code": {"DataType": "String", "StringValue": self.error_code},
            "error_detail": {"DataType": "String", "StringValue": self.error_detail},
            "source_queue": {"DataType": "String", "StringValue": self.source_queue},
            "source_message_id": {"DataType": "String", "StringValue": self.source_message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(self.receive_count)},
        }
        if self.first_sent_at is not None:
            attributes["first_sent_at"] = {"DataType": "Number", "StringValue": str(self.first_sent_at)}
        if self.first_message_id:
            attributes["first_message_id"] = {"DataType": "String", "StringValue": self.first_message_id}
        return attributes

    @classmethod
    def from_message_attributes(cls, attributes: Mapping[str, Mapping[str, Any]]) -> DeadLetterAttributes:
        """Read the attributes back from a received message (``MessageAttributeNames=["All"]``)."""
        return cls.model_validate(
            {name: attributes[name]["StringValue"] for name in cls.model_fields if name in attributes}
        )
