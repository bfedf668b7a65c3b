"""Logging and metrics conventions shared by the functions.

The metric namespace is fixed in code rather than read from the environment: a missing variable
must not make ``log_metrics`` fail an invocation after its batch was already handled.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics

METRIC_NAMESPACE = "VectorRelay"


def function_metrics() -> Metrics:
    """The Powertools Metrics of a function (service dimension from ``POWERTOOLS_SERVICE_NAME``)."""
    return Metrics(namespace=METRIC_NAMESPACE)
