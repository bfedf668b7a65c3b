"""What every subcommand shares: where the relay is, and AWS clients (``AWS_ENDPOINT_URL`` is honoured)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import click

from vector_relay_cli.deployment import Deployment, from_file, from_stack
from vector_relay_cli.errors import CannotRun

NAME_A_RELAY = (
    "for the local stack, paste the export lines `make up` prints (or `source .local-stack/env`); for a deployed "
    "one, give --stack NAME (or VECTOR_RELAY_STACK), or its outputs with --outputs FILE (or VECTOR_RELAY_OUTPUTS)"
)
WHICH_RELAY = f"which relay? none is named: {NAME_A_RELAY}"  # also what a missing region means then

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

    from vector_relay.tenancy import TenantRegistry


@dataclass
class Context:
    """What every subcommand shares: where the relay is, and AWS clients (``AWS_ENDPOINT_URL`` is honoured)."""

    stack: str | None
    outputs: Path | None
    region: str | None
    _deployment: Deployment | None = field(default=None, init=False)

    def deployment(self) -> Deployment:
        if self._deployment is None:
            if self.stack and self.outputs:
                raise click.UsageError("give --stack or --outputs, not both")
            if self.outputs:
                self._deployment = from_file(self.outputs)
            elif self.stack:
                self._deployment = from_stack(self._client("cloudformation"), self.stack)
            else:
                raise CannotRun(WHICH_RELAY)
        return self._deployment

    def environment(self, name: str) -> str:
        """An environment variable the operator set ("" when unset); the only place the CLI reads one."""
        import os

        return os.environ.get(name, "")

    def api_key(self) -> str:
        """``PINECONE_API_KEY``, else the deployment's secret; exit 2 saying where it should have come from."""
        from botocore.exceptions import BotoCoreError, ClientError

        from vector_relay.errors import VectorRelayError
        from vector_relay.keys.api_key_cache import read_api_key

        key = self.environment("PINECONE_API_KEY")
        if key:
            return key
        if not self.stack and not self.outputs:
            raise CannotRun(
                "no Pinecone API key and no relay named: set PINECONE_API_KEY, or name the relay whose secret "
                f"holds it: {NAME_A_RELAY}"
            )
        arn = self.deployment().output("PineconeApiKeySecretArn")
        try:
            return read_api_key(self.secrets(), arn).value
        except (ClientError, BotoCoreError, VectorRelayError) as error:
            raise CannotRun(f"cannot read the Pinecone API key from {arn}: {error}") from None

    def read_registry(self) -> tuple[str, str]:
        """The tenant registry's SSM parameter name and its JSON (exit 2 if it cannot be read)."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = self.deployment().output("TenantRegistryParameterName")
        try:
            return name, str(self.ssm().get_parameter(Name=name)["Parameter"]["Value"])
        except (ClientError, BotoCoreError) as error:
            raise CannotRun(f"cannot read the tenant registry {name}: {error}") from None

    def tenant_registry(self) -> TenantRegistry:
        """The tenant registry as the workers read it (exit 2 if it cannot be read or is not valid)."""
        from vector_relay.errors import ConfigurationError
        from vector_relay.tenancy import TenantRegistry

        parameter, text = self.read_registry()
        try:
            return TenantRegistry.from_json(text, source=f"SSM parameter {parameter}")
        except ConfigurationError as error:
            raise CannotRun(str(error)) from None

    def sqs(self) -> SQSClient:
        return self._client("sqs")  # type: ignore[no-any-return]

    def ssm(self) -> SSMClient:
        return self._client("ssm")  # type: ignore[no-any-return]

    def dynamodb(self) -> DynamoDBClient:
        return self._client("dynamodb")  # type: ignore[no-any-return]

    def secrets(self) -> SecretsManagerClient:
        return self._client("secretsmanager")  # type: ignore[no-any-return]

    def cloudwatch(self) -> CloudWatchClient:
        return self._client("cloudwatch")  # type: ignore[no-any-return]

    def s3(self) -> S3Client:
        return self._client("s3")  # type: ignore[no-any-return]

    def _client(self, service: str) -> Any:
        from botocore.exceptions import NoRegionError

        try:
            return boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
        except NoRegionError:
            if not self.stack and not self.outputs:  # a shell without the export lines: the region is not the news
                raise CannotRun(WHICH_RELAY) from None
            raise CannotRun(
                "no AWS region: give --region, or set AWS_DEFAULT_REGION (or a region in your AWS profile)"
            ) from None
        except Exception as error:  # no credentials configuration, ...
            raise CannotRun(f"cannot make an AWS {service} client: {error}") from None
