"""How old a write really is: when it was first sent, however often it was sent again since.

The version guard remembers a record's version (and a delete's tombstone) for
``WRITE_VERSION_TTL_SECONDS`` after its last claim. That is what keeps an old upsert from
resurrecting a deleted record, so it holds only for writes applied within that time of being
sent: a write sent before the delete and applied after the tombstone expired would win.
An original message cannot be older than its queue keeps messages (14 days at most, SQS's
limit, and ``WRITE_VERSION_TTL_SECONDS`` is at least that plus the margin). But SQS's own
``SentTimestamp`` restarts whenever a message is sent again (a busy message requeued on its last
delivery, a DLQ message redriven), so every copy the relay sends carries the original send time
in the ``first_sent_at`` message attribute (epoch ms), and a copy whose write was first sent
longer ago than the guard remembers, less a margin for clocks, is dead-lettered as
``write_expired`` instead of applied (docs/ordering.md, "Deletes are remembered"). Originals are
not judged by their SentTimestamp: a sample event replayed with ``sam local invoke`` carries an
old one and is still a valid write.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vector_relay.errors import Problem

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

FIRST_SENT_ATTRIBUTE = "first_sent_at"
# The id SendMessage gave the producer's original, carried onto every copy the same way: a write
# receipt names the message the producer sent (vector_relay.ingest.receipts), whichever copy landed.
FIRST_MESSAGE_ATTRIBUTE = "first_message_id"
_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
# Writes must be applied this much before the guard may forget their record: SQS's clock (the send
# time) and the workers' clocks (the claim) are not the same clock.
EXPIRY_MARGIN_SECONDS = 3600


def first_sent_ms(record: SQSRecord) -> int:
    """When ``record``'s write was first sent (epoch ms): its ``first_sent_at`` when a copy, else its SentTimestamp."""
    sent = int(record.attributes.sent_timestamp)
    carried = record.message_attributes[FIRST_SENT_ATTRIBUTE]
    value = carried.string_value if carried is not None else None
    if value is not None and value.isdigit():
        return min(int(value), sent)
    return sent


def first_message_id(record: SQSRecord) -> str:
    """The id of the producer's original of ``record``: its ``first_message_id`` when a copy, else its own id.

    Anyone who may send to the queue may set the attribute, so it is taken only in the shape of an SQS
    message id (1-100 letters, digits and hyphens). A sender can point a receipt at another message
    id only for the tenants it may write for anyway (docs/security.md: tenant binding).
    """
    carried = record.message_attributes[FIRST_MESSAGE_ATTRIBUTE]
    value = carried.get("stringValue") if carried is not None else None  # a Binary attribute has none
    return value if isinstance(value, str) and _MESSAGE_ID.fullmatch(value) else record.message_id


def first_sent_attribute(first_sent: int, first_message: str = "") -> dict[str, MessageAttributeValueTypeDef]:
    """The ``MessageAttributes`` that carry the original's send time (and id, when known) onto a copy."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        FIRST_SENT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(first_sent)}
    }
    if first_message:
        attributes[FIRST_MESSAGE_ATTRIBUTE] = {"DataType": "String", "StringValue": first_message}
    return attributes


def expired(record: SQSRecord, *, now: float, remembered_seconds: int) -> Problem | None:
    """``write_expired`` when ``record`` is a copy whose write was first sent longer ago than the guard
    remembers versions, less the margin; None for originals (bounded by their queue's retention)."""
    if record.message_attributes[FIRST_SENT_ATTRIBUTE] is None:
        return None
    age = now - first_sent_ms(record) / 1000
    limit = remembered_seconds - EXPIRY_MARGIN_SECONDS
    if age <= limit:
        return None
    return Problem(
        "write_expired",
        "",
        f"first sent {age / 86_400:.1f} days ago; the version guard remembers versions for "
        f"{remembered_seconds / 86_400:g} days (WRITE_VERSION_TTL_SECONDS), so applied now it could overtake a "
        "delete it no longer remembers. Publish it again with its current version if it is still wanted.",
    )
