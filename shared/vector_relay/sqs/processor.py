"""A Powertools batch processor whose handler sees the whole SQS batch at once.

Powertools' :class:`BatchProcessor` calls a handler per record. Writing to Pinecone well needs the
whole batch (to coalesce records into few requests), so this subclass overrides only ``process()``:
the handler takes every record and returns the failed ones as ``{message_id: exception}``.
Response building, the partial-failure report and the "entire batch failed" error stay Powertools'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.aws_clients import FINISH_SECONDS, invocation_deadline

BatchHandler = Callable[[list[SQSRecord], LambdaContext | None], Mapping[str, BaseException]]


class WholeBatchProcessor(BatchProcessor):
    """Runs one handler over the whole batch; the messages it names fail, the rest succeed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(event_type=EventType.SQS, **kwargs)

    def process(self) -> list[tuple[Any, ...]]:
        records = [SQSRecord(raw) for raw in self.records]
        handler: BatchHandler = self.handler
        context: LambdaContext | None = getattr(self, "lambda_context", None)
        try:
            if context is None:
                failures = dict(handler(records, context))
            else:  # every AWS call of the batch ends before the invocation must return
                with invocation_deadline(context.get_remaining_time_in_millis() / 1000 - FINISH_SECONDS):
                    failures = dict(handler(records, context))
        except Exception as batch_error:  # the handler could not sort the batch: every message is retried
            failures = {record.message_id: batch_error for record in records}
        results: list[tuple[Any, ...]] = []
        for record in records:
            error = failures.get(record.message_id)
            if error is None:
                results.append(self.success_handler(record=record, result=None))
            else:
                results.append(self.failure_handler(record=record, exception=(type(error), error, error.__traceback__)))
        return results
