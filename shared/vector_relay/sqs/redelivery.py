"""Bringing messages back: sooner than the visibility timeout, or as a fresh copy on their last delivery."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.errors import OutOfTimeError
from vector_relay.sqs.limits import SQS_MAX_BATCH_ENTRIES
from vector_relay.sqs.message_age import first_message_id, first_sent_attribute, first_sent_ms
from vector_relay.sqs.queues import queue_url

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

MAX_RETRY_DELAY_SECONDS = 900  # never more than a Lambda's longest timeout: the queue's own timeout is longer
MAX_SQS_DELAY_SECONDS = 900  # SendMessage's DelaySeconds limit


def retry_soon(sqs: SQSClient, entries: list[tuple[SQSRecord, float]]) -> None:
    """Make messages visible again after the given seconds instead of the queue's visibility timeout.

    Best effort: if SQS refuses, they come back when the visibility timeout ends (still not refused).
    """
    by_queue: dict[str, list[tuple[SQSRecord, int]]] = {}
    for record, seconds in entries:
        by_queue.setdefault(record.event_source_arn, []).append((record, math.ceil(seconds)))
    for arn, waiting in by_queue.items():
        try:
            url = queue_url(sqs, arn)
            for chunk in itertools.batched(waiting, SQS_MAX_BATCH_ENTRIES, strict=False):
                sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": record.receipt_handle, "VisibilityTimeout": seconds}
                        for i, (record, seconds) in enumerate(chunk)
                    ],
                )
        except (ClientError, BotoCoreError, OutOfTimeError) as error:
            logger.warning("could not bring messages back sooner", extra={"queue": arn, "error": str(error)})


def requeue(sqs: SQSClient, record: SQSRecord, delay_seconds: float) -> bool:
    """Send ``record`` again as a new message (its receive count starts over), delayed ``delay_seconds``.

    For a message that only waits (another worker's hold, or behind a write of its namespace that
    does) and is on its last delivery: waiting is never a failure, and a record written often can
    keep a message waiting through ``maxReceiveCount`` deliveries. The copy is the same write (the
    version guard orders it like the original) and carries the original's first send time, so it is
    no younger than the write (:mod:`vector_relay.sqs.message_age`). False when SQS refused the copy.
    """
    delay = min(max(math.ceil(delay_seconds), 0), MAX_SQS_DELAY_SECONDS)
    try:
        sqs.send_message(
            QueueUrl=queue_url(sqs, record.event_source_arn),
            MessageBody=record.body,
            DelaySeconds=delay,
            MessageAttributes=first_sent_attribute(first_sent_ms(record), first_message_id(record)),
        )
    except (ClientError, BotoCoreError, OutOfTimeError) as failure:
        logger.warning(
            "could not requeue a waiting message", extra={"message_id": record.message_id, "error": str(failure)}
        )
        return False
    logger.info("waiting on its last delivery: sent again", extra={"message_id": record.message_id, "delay": delay})
    return True
