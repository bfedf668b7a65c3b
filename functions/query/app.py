"""Query worker: consumes the query queue and answers on each request's reply queue."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay import snapstart
from vector_relay.metrics import function_metrics
from vector_relay.query.service import handle_query_batch
from vector_relay.sqs.processor import WholeBatchProcessor
from vector_relay.sqs.worker import worker_dependencies

logger = Logger()
metrics = function_metrics()
processor = WholeBatchProcessor(logger=logger)
snapstart.register_worker()  # hooks for Lambda SnapStart (template parameter SnapStart)


def handle_batch(records: list[SQSRecord], context: LambdaContext | None) -> dict[str, BaseException]:
    return dict(handle_query_batch(records, context, worker_dependencies(metrics)))


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId")  # the batch's first message
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=handle_batch, processor=processor, context=context)
