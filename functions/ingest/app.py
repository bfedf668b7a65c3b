"""Ingest worker: consumes the ingest queue (upsert, delete, delete_by_filter, purge_tenant)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay import snapstart, tracing
from vector_relay.dependencies import ingest_worker
from vector_relay.metrics import function_metrics
from vector_relay.sqs.processor import SqsBatchProcessor

logger = Logger()
metrics = function_metrics()
processor = SqsBatchProcessor(logger=logger)
worker = ingest_worker(metrics)  # the edge and the ingest service, built on the container's first invocation
snapstart.register_worker()  # hooks for Lambda SnapStart (template parameter SnapStart)


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")  # the batch's first message
@tracing.capture_lambda_handler  # X-Ray, when the template's Tracing parameter is true (vector_relay.tracing)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=worker, processor=processor, context=context)
