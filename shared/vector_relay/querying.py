"""The query worker's batch logic: validate every query, dead-letter the poison, answer the rest.

This build validates (including the reply allow-list) and dead-letters; running queries and
sending replies is not enabled yet, so valid queries are reported as batch item failures and stay
on the queue.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.contract import ValidationContext
from vector_relay.errors import TransientError
from vector_relay.validation import parse_query_message
from vector_relay.worker import WorkerDependencies, sort_batch


class QueriesNotEnabledError(TransientError):
    """Valid queries stay on the queue until this build answers them."""


def handle_query_batch(
    records: list[SQSRecord], context: LambdaContext | None, deps: WorkerDependencies
) -> Mapping[str, BaseException]:
    """Return the messages that must be retried, by message id. Poison is dead-lettered and acknowledged."""
    validation = ValidationContext(
        tenants=deps.tenants.current(), index=deps.index.current(), reply_queues=deps.settings.reply_queue_allow_list
    )
    batch = sort_batch(records, deps, parse_query_message, validation)
    for record, _message in batch.valid:
        batch.failures[record.message_id] = QueriesNotEnabledError("answering queries is not enabled in this build")
    return batch.failures
