"""Queue lookups the edge makes: a queue's URL from its ARN, and the DLQ its redrive policy names."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

from vector_relay.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@cache
def queue_url(sqs: SQSClient, arn: str) -> str:
    """The URL of the queue ``arn`` names (arn:aws:sqs:<region>:<account>:<name>), asked once per client."""
    *_, account, name = arn.split(":")
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


@cache
def redrive_target_url(sqs: SQSClient, queue_arn: str) -> str:
    """The URL of the DLQ named by a queue's redrive policy, asked once per client."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url(sqs, queue_arn), AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ConfigurationError(f"tenant queue {queue_arn} has no redrive policy, so its poison has nowhere to go")
    return queue_url(sqs, json.loads(policy)["deadLetterTargetArn"])
