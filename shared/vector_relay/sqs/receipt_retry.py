"""ReceiptsFunction's edge: write receipts their tenant's queue did not take, sent again from the retry queue.

The ingest worker sends a receipt its tenant's receipt queue refused (throttled, missing, its key
refused) to the relay's own retry queue (``RECEIPT_RETRY_QUEUE_URL``, :mod:`vector_relay.ingest.receipts`).
ReceiptsFunction consumes that queue; each message is one receipt body, which
:func:`resend` sends as it is to the queue the tenant's registry
entry names now. A message is:

* ``resent``: its tenant's queue took it; acknowledged (``ReceiptsResent``);
* ``dropped``: the tenant has no receipt queue now; acknowledged (``ReceiptsDropped``);
* ``invalid``: not a receipt, so it can never be sent; acknowledged (``ReceiptsInvalid``) and logged
  by its message id and the error's type only: never the body, nor the validation error's text,
  which quotes it;
* a batch item failure when SQS refused or failed (the tenant's queue missing, throttling, its key
  refused, too little of the invocation left): SQS delivers it again after the visibility timeout,
  and after ``maxReceiveCount`` its redrive policy parks it in the retry queue's DLQ (alarmed). The
  write is never applied again for a receipt's sake.

Outcomes are counted in :meth:`ReceiptRetryProcessor.success_handler`, as Powertools' examples
count them, not in the record handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

from vector_relay import tracing
from vector_relay.contract.receipts import Receipt
from vector_relay.deadline import FINISH_SECONDS, invocation_deadline
from vector_relay.metrics import RECEIPTS_DROPPED, RECEIPTS_INVALID, RECEIPTS_RESENT, Metric
from vector_relay.tenancy import TenantRegistry

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.base import SuccessResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs import SQSClient

logger = Logger(child=True)

Outcome = Literal["resent", "dropped", "invalid"]
OUTCOME_METRICS: dict[Outcome, Metric] = {
    "resent": RECEIPTS_RESENT,
    "dropped": RECEIPTS_DROPPED,
    "invalid": RECEIPTS_INVALID,
}


def resend(sqs: SQSClient, registry: TenantRegistry, body: str) -> bool:
    """Send a receipt from the retry queue to its tenant's receipt queue as the registry names it now.

    False when the tenant has no receipt queue any more (the receipt is dropped, and logged);
    raises what SQS raises (the retry queue's message is then retried). The body is the contract's
    (:class:`~vector_relay.contract.receipts.Receipt`): one that is not is refused with ``ValueError``.
    """
    receipt = Receipt.model_validate_json(body)
    destination = registry.receipts_for(receipt.tenant) if receipt.tenant in registry else None
    if destination is None:
        logger.warning("a retried receipt's tenant has no receipt queue now; dropped", extra={"tenant": receipt.tenant})
        return False
    with tracing.span("receipt resend") as span:
        span.annotate("tenant", receipt.tenant)
        sqs.send_message(QueueUrl=destination, MessageBody=body)
    return True


def receipt_resender(
    registry: Callable[[], TenantRegistry], sqs: Callable[[], SQSClient]
) -> Callable[[SQSRecord], Outcome]:
    """The record handler: sends one retried receipt again; raises what SQS (or the registry's read) raises."""

    def resend_record(record: SQSRecord) -> Outcome:
        tenants = registry()  # a registry that cannot be read fails the message: retried, never dropped
        client = sqs()
        try:
            sent = resend(client, tenants, record.body)
        except ValueError as error:  # pydantic's ValidationError is one: the body is not a receipt
            logger.warning(
                "not a write receipt; dropped",
                extra={"message_id": record.message_id, "error": type(error).__name__},
            )
            return "invalid"
        return "resent" if sent else "dropped"

    return resend_record


class ReceiptRetryProcessor(BatchProcessor):
    """Powertools' SQS batch processor, with each send bounded by the invocation's time and each outcome counted.

    A batch whose every message failed is reported like any other (``raise_on_entire_batch_failure=False``):
    each message is retried by SQS either way, and the function's ``Errors`` stay for faults of the
    function itself.
    """

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False, **kwargs)
        self._metrics = metrics

    def process(self) -> list[tuple[Any, ...]]:
        context = getattr(self, "lambda_context", None)
        if context is None:  # a direct call without Lambda's context: no bound
            return super().process()
        with invocation_deadline(context.get_remaining_time_in_millis() / 1000 - FINISH_SECONDS):
            return super().process()

    def success_handler(self, record: Any, result: Any) -> SuccessResponse:
        OUTCOME_METRICS[result].emit(self._metrics, 1)
        return super().success_handler(record, result)
