"""Route a poison message to the dead-letter queue, with its reasons, exactly once per receive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.contract.messages import DeadLetterAttributes
from vector_relay.errors import PoisonMessageError, TransientError
from vector_relay.sqs.dead_letter import send_to_dead_letter_queue
from vector_relay.sqs.message_age import first_sent_ms

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)


def dead_letter_attributes(record: SQSRecord, error: PoisonMessageError) -> DeadLetterAttributes:
    """What the DLQ copy of ``record`` says about why it is there."""
    return DeadLetterAttributes(
        error_code=error.error_code,
        error_detail=error.detail,
        source_queue=record.event_source_arn,
        source_message_id=record.message_id,
        receive_count=int(record.attributes.approximate_receive_count),
        first_sent_at=first_sent_ms(record),
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
