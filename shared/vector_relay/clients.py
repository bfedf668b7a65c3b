"""AWS clients, built on first use and reused across warm invocations.

Built lazily (not at import) so moto or the local stack is in place before a client exists; tests
call ``cache_clear()`` on each factory. ``AWS_ENDPOINT_URL`` (read by boto3 itself) points every
client at the local stack.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

# Standard retry mode: at most AWS_ATTEMPTS attempts in all (the first and two jittered retries of
# throttling, 5xx and connection errors), tight timeouts so a stuck call cannot eat the Lambda's
# deadline. botocore reads ``max_attempts`` as the number of *retries*; ``total_max_attempts`` is the
# number of attempts, which is what is meant here.
AWS_ATTEMPTS = 3
AWS_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": AWS_ATTEMPTS}, connect_timeout=3, read_timeout=10
)


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def sqs_client() -> SQSClient:
    return _session().client("sqs", config=AWS_CONFIG)


@cache
def ssm_client() -> SSMClient:
    return _session().client("ssm", config=AWS_CONFIG)


@cache
def secrets_client() -> SecretsManagerClient:
    return _session().client("secretsmanager", config=AWS_CONFIG)


# The version guard writes claims under a short lock only while LOCK_WRITE_MARGIN_SECONDS of it
# remain, so one DynamoDB call must end well inside that: one attempt (a failure is retried by SQS),
# at most 0.5 s to connect and 1.5 s to answer. Its parameters are built by code, so botocore's
# validation of them is skipped (it costs about a fifth of the client's time per request).
GUARD_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=0.5,
    read_timeout=1.5,
    parameter_validation=False,
)


@cache
def dynamodb_client() -> DynamoDBClient:
    return _session().client("dynamodb", config=GUARD_CONFIG)


@cache
def s3_client() -> S3Client:
    return _session().client("s3", config=AWS_CONFIG)


def clear_client_caches() -> None:
    """Forget every cached client (tests, and the local stack when it restarts moto)."""
    for factory in (_session, sqs_client, ssm_client, secrets_client, s3_client, dynamodb_client):
        factory.cache_clear()
