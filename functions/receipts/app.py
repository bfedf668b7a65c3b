"""Receipts function: consumes the receipt retry queue and sends each write receipt again to its tenant's queue."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay import tracing
from vector_relay.dependencies import receipt_resender
from vector_relay.metrics import function_metrics
from vector_relay.sqs.receipt_retry import ReceiptRetryProcessor

logger = Logger()
metrics = function_metrics()
processor = ReceiptRetryProcessor(metrics, logger=logger)
resend_receipt = receipt_resender()  # the registry and the SQS client are built on first use


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")  # the batch's first message
@tracing.capture_lambda_handler  # X-Ray, when the template's Tracing parameter is true (vector_relay.tracing)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=resend_receipt, processor=processor, context=context)
