"""The AWS clients' retry settings, as botocore reads them from the built clients."""

from __future__ import annotations

import pytest

from vector_relay.aws_clients import (
    dynamodb_client,
    s3_client,
    secrets_client,
    sqs_client,
    ssm_client,
)


@pytest.mark.parametrize("factory", [sqs_client, ssm_client, secrets_client, s3_client])
def test_each_aws_call_makes_at_most_three_attempts_in_all(factory: object) -> None:
    client = factory()  # type: ignore[operator]
    # what botocore made of the config: "max_attempts": 3 would read back here as 4 attempts
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_the_version_guards_calls_are_never_retried_by_botocore() -> None:
    assert dynamodb_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
