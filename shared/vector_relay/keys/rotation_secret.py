"""What every rotation step works with: the secret's stages, its versions' keys, the Admin API, the refusal.

Used by the steps (:mod:`vector_relay.keys.rotation`) and the sweep of retired keys
(:mod:`vector_relay.keys.retired_keys`). Key values never reach logs or errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from vector_relay.errors import VectorRelayError
from vector_relay.keys.key_secret import API_KEY, PROJECT_ID, KeySecret, MalformedSecretError, parse_key_secret
from vector_relay.pinecone.admin_api import ApiKeyInfo, CreatedApiKey
from vector_relay.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

logger = Logger(child=True)

KEY_NAME_PREFIX = "vector-relay-rotation-"
DEFAULT_ROLES = ("ProjectEditor",)
AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"


class RotationError(VectorRelayError):
    """A step refused to act. The secret is left as it was; the message never holds a key value."""


def key_name_for(token: str) -> str:
    """The Pinecone key name of the rotation with this token (Pinecone allows 80 characters)."""
    return f"{KEY_NAME_PREFIX}{token}"[:80]


def parse_version(text: str | None, where: str) -> KeySecret:
    """One version of the secret, with the key and the project rotation needs; :class:`RotationError`
    naming ``where`` (never the value) when it is malformed."""
    try:
        return parse_key_secret(text, where, required=(API_KEY, PROJECT_ID))
    except MalformedSecretError as error:
        raise RotationError(str(error)) from None


class KeyAdmin(Protocol):
    """What rotation needs from Pinecone's Admin API (:class:`~vector_relay.pinecone.admin_api.PineconeKeyAdmin`)."""

    def list_keys(self, project_id: str) -> list[ApiKeyInfo]: ...
    def describe_key(self, key_id: str) -> ApiKeyInfo | None: ...
    def create_key(self, project_id: str, name: str, roles: Sequence[str]) -> CreatedApiKey: ...
    def delete_key(self, key_id: str) -> bool: ...
    def close(self) -> None: ...


@dataclass(slots=True)
class RotationDependencies:
    """Everything a step touches; built from the settings by :func:`rotation_dependencies`."""

    settings: Settings
    secrets: SecretsManagerClient
    ssm: SSMClient
    admin: Callable[[], KeyAdmin] | None  # None: manual mode
    check_key: Callable[[str], None]  # one data-plane call with the given key; raises PineconeRequestError
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _admin: KeyAdmin | None = None

    def key_admin(self) -> KeyAdmin:
        if self.admin is None:
            raise RotationError("manual mode has no Admin API access")
        if self._admin is None:
            self._admin = self.admin()
        return self._admin

    def close(self) -> None:
        """Close the Admin API client, if a step opened one."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def read_current(deps: RotationDependencies, arn: str) -> KeySecret:
    response = deps.secrets.get_secret_value(SecretId=arn, VersionStage=AWSCURRENT)
    return parse_version(response.get("SecretString"), f"the AWSCURRENT version {response['VersionId']}")


def _read_pending(deps: RotationDependencies, arn: str, token: str) -> KeySecret | None:
    """The pending version's key, or None while it has no value yet."""
    try:
        response = deps.secrets.get_secret_value(SecretId=arn, VersionId=token, VersionStage=AWSPENDING)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    if not response.get("SecretString"):
        return None
    return parse_version(response["SecretString"], f"the AWSPENDING version {token}")


def _require_pending(deps: RotationDependencies, arn: str, token: str) -> KeySecret:
    pending = _read_pending(deps, arn, token)
    if pending is None:
        raise RotationError(f"version {token} has no value yet; createSecret has not run")
    return pending


def read_version(deps: RotationDependencies, arn: str, version: str) -> KeySecret | None:
    try:
        response = deps.secrets.get_secret_value(SecretId=arn, VersionId=version)
        return parse_version(response.get("SecretString"), f"version {version}")
    except (ClientError, RotationError) as error:
        logger.warning("could not read an older version", extra={"version_id": version, "error": str(error)})
        return None
