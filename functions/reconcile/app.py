"""Reconcile function: on a schedule, compares the version guard's table with the index (docs/ordering.md)."""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from vector_relay.metrics import function_metrics
from vector_relay.operations.reconcile import metric_counts
from vector_relay.operations.reconcile_run import run_scheduled_reconcile

logger = Logger()
metrics = function_metrics()
LOGGED_MISMATCHES = 100  # each named in the log up to this many per run; the metrics count them all


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = run_scheduled_reconcile(context.get_remaining_time_in_millis)
    for mismatch in report.mismatches[:LOGGED_MISMATCHES]:
        logger.warning("reconcile mismatch", extra=mismatch.as_json())
    counts = metric_counts(report)
    for metric, value in counts.items():
        metric.emit(metrics, value)
    values = {metric.name: value for metric, value in counts.items()}
    summary = {**values, "pages": report.pages, "complete": report.complete}
    logger.info(
        "reconcile pass" if report.complete else "reconcile pass stopped for time; next run goes on", extra=summary
    )
    return summary
