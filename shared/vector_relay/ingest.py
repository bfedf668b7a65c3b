"""The ingest worker's batch logic: validate every message, dead-letter the poison, apply the rest.

This build validates and dead-letters; applying valid writes to Pinecone (coalesced, parallel,
deadline-aware) is not enabled yet, so valid messages are reported as batch item failures and stay
on the queue: nothing valid is acknowledged without being applied.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.contract import ValidationContext
from vector_relay.errors import TransientError
from vector_relay.validation import parse_write_message
from vector_relay.worker import WorkerDependencies, sort_batch


class WritesNotEnabledError(TransientError):
    """Valid writes stay on the queue until this build applies them to Pinecone."""


def handle_ingest_batch(
    records: list[SQSRecord], context: LambdaContext | None, deps: WorkerDependencies
) -> Mapping[str, BaseException]:
    """Return the messages that must be retried, by message id. Poison is dead-lettered and acknowledged."""
    validation = ValidationContext(tenants=deps.tenants.current(), index=deps.index)
    batch = sort_batch(records, deps, parse_write_message, validation)
    for record, _message in batch.valid:
        batch.failures[record.message_id] = WritesNotEnabledError(
            "applying writes to Pinecone is not enabled in this build"
        )
    return batch.failures
