"""Secrets Manager rotation of the Pinecone API key: the entry checks and the four steps.

Alternating keys: a rotation mints a new key and makes it ``AWSCURRENT``; the key it replaces
becomes ``AWSPREVIOUS`` and stays valid, so a worker still holding it keeps working until its cache
TTL re-reads the secret. The key from the rotation before that is revoked in ``finishSecret``, but
only once it has been out of ``AWSCURRENT`` for ``KEY_REVOCATION_GRACE_SECONDS`` (at least the
workers' cache TTL plus their timeout); otherwise a later rotation revokes it.

The sweep of retired keys (this secret's only: several deployments may share one Pinecone
project) is :mod:`vector_relay.keys.retired_keys`; what every step reads and refuses with,
:mod:`vector_relay.keys.rotation_secret`.

Entry checks (every step, as in AWS's rotation template): the secret is the one this function
rotates (``PINECONE_SECRET_ARN``), rotation is enabled on it, the token is one of its versions; a
token already ``AWSCURRENT`` means the rotation finished and the step does nothing; otherwise the
token must carry ``AWSPENDING``.

Each step checks before it acts, so any step can crash and be run again:

* ``createSecret``: a pending version that already has a value is kept (a retried step, or a key
  an operator staged by hand in manual mode). Otherwise a key named after the token is minted
  through the Admin API and stored as ``AWSPENDING``. A key of that name found at Pinecone is one
  an earlier attempt minted and crashed before storing; Pinecone never shows a key's value twice,
  so that key is revoked and a new one minted: never two keys for one token.
* ``setSecret``: nothing to set at Pinecone (a key is live when minted); the pending value is
  checked: same project as the current key, a different key, a key id.
* ``testSecret``: index stats with the pending key only.
* ``finishSecret``: revoke this secret's retired keys, set the rotation marker to the new version, move
  ``AWSCURRENT``. The label move is the last action: a retried ``finishSecret`` stops at the entry
  checks once the label has moved, so nothing may be left to do after it.

Secret format and the operator's runbook: docs/rotation.md. Key values never reach logs or errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from vector_relay.aws_clients import secrets_client, ssm_client
from vector_relay.keys.key_secret import KeySecret, parse_admin_account
from vector_relay.keys.retired_keys import revoke_retired_keys
from vector_relay.keys.rotation_secret import (
    AWSCURRENT,
    AWSPENDING,
    AWSPREVIOUS,
    DEFAULT_ROLES,
    KeyAdmin,
    RotationDependencies,
    RotationError,
    _read_pending,
    _require_pending,
    key_name_for,
    read_current,
)
from vector_relay.pinecone.admin_api import PineconeKeyAdmin
from vector_relay.pinecone.data_plane import check_api_key
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.settings import Settings, get_settings

logger = Logger(child=True)


class RotationEvent(BaseModel):
    """The event Secrets Manager sends a rotation function, once per step."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"] = Field(alias="Step")
    secret_id: str = Field(alias="SecretId", min_length=1)
    client_request_token: str = Field(alias="ClientRequestToken", min_length=1)


def rotation_dependencies(settings: Settings) -> RotationDependencies:
    settings.check_rotation_timing()
    secrets = secrets_client()

    def admin() -> KeyAdmin:
        arn = settings.require("pinecone_admin_secret_arn")
        text = secrets.get_secret_value(SecretId=arn, VersionStage=AWSCURRENT).get("SecretString")
        account = parse_admin_account(text, f"admin secret {arn}")  # a ConfigurationError, without the value
        return PineconeKeyAdmin(
            client_id=account.client_id,
            client_secret=account.client_secret,
            host=settings.pinecone_control_host,
            oauth_url=settings.pinecone_oauth_url or None,
        )

    def check(api_key: str) -> None:
        check_api_key(
            host=settings.pinecone_index_host, api_key=api_key, timeout=settings.pinecone_request_timeout_seconds
        )

    return RotationDependencies(
        settings=settings,
        secrets=secrets,
        ssm=ssm_client(),
        admin=admin if settings.rotation_mode == "admin_api" else None,
        check_key=check,
    )


def run_rotation_step(event: RotationEvent, deps: RotationDependencies | None = None) -> None:
    """Check the event against the secret's state, then run its step (each step is safe to repeat)."""
    deps = deps or rotation_dependencies(get_settings())
    token = event.client_request_token
    metadata = deps.secrets.describe_secret(SecretId=event.secret_id)
    arn = metadata["ARN"]
    if arn != deps.settings.pinecone_secret_arn:
        raise RotationError(f"secret {arn} is not the one this function rotates ({deps.settings.pinecone_secret_arn})")
    if not metadata.get("RotationEnabled"):
        raise RotationError(f"secret {arn} is not enabled for rotation")
    versions = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        raise RotationError(f"secret {arn} has no version {token} to rotate")
    if AWSCURRENT in versions[token]:
        logger.info("version already AWSCURRENT: the rotation finished", extra={"version_id": token})
        return
    if AWSPENDING not in versions[token]:
        raise RotationError(f"version {token} of secret {arn} is not AWSPENDING")
    steps: dict[str, Callable[[RotationDependencies, str, str], None]] = {
        "createSecret": create_secret,
        "setSecret": set_secret,
        "testSecret": test_secret,
        "finishSecret": finish_secret,
    }
    try:
        steps[event.step](deps, arn, token)
    finally:
        deps.close()


# ------------------------------------------------------------------------------------------ steps


def create_secret(deps: RotationDependencies, arn: str, token: str) -> None:
    current = read_current(deps, arn)
    pending = _read_pending(deps, arn, token)
    if pending is not None:
        logger.info("pending key already stored", extra={"version_id": token, "key_id": pending.key_id})
        return
    if deps.admin is None:
        raise RotationError(
            f"manual mode: no key is staged as AWSPENDING for version {token}; stage one (docs/rotation.md)"
        )
    admin = deps.key_admin()
    name = key_name_for(token)
    for orphan in [info for info in admin.list_keys(current.project_id) if info.name == name]:
        # An earlier attempt minted it and crashed before storing it; its value is gone for good.
        admin.delete_key(orphan.key_id)
        logger.warning("revoked a key an interrupted createSecret minted", extra={"key_id": orphan.key_id})
    roles = _roles_like(admin, current)
    created = admin.create_key(current.project_id, name, roles)
    secret = KeySecret(
        api_key=created.value,
        key_id=created.info.key_id,
        project_id=current.project_id,
        key_name=name,
        roles=created.info.roles or tuple(roles),
        created_at=deps.now().isoformat(timespec="seconds"),
        rotation_token=token,
    )
    deps.secrets.put_secret_value(
        SecretId=arn, ClientRequestToken=token, SecretString=secret.to_json(), VersionStages=[AWSPENDING]
    )
    logger.info("new key stored as AWSPENDING", extra={"version_id": token, "key_id": secret.key_id})


def set_secret(deps: RotationDependencies, arn: str, token: str) -> None:
    current = read_current(deps, arn)
    pending = _require_pending(deps, arn, token)
    if pending.project_id != current.project_id:
        raise RotationError(f"pending key {pending.key_id} is for another project than the current key")
    if pending.api_key == current.api_key:
        raise RotationError(f"pending version {token} holds the current key; stage a new one")
    if not pending.key_id:
        raise RotationError(f"pending version {token} has no key_id (needed to revoke the key later)")
    if pending.key_id == current.key_id:
        raise RotationError(f"pending version {token} has the current key's key_id {pending.key_id}")
    if deps.admin is not None and deps.key_admin().describe_key(pending.key_id) is None:
        raise RotationError(f"pending key {pending.key_id} does not exist at Pinecone")
    logger.info("pending key checked", extra={"version_id": token, "key_id": pending.key_id})


def test_secret(deps: RotationDependencies, arn: str, token: str) -> None:
    pending = _require_pending(deps, arn, token)
    try:
        deps.check_key(pending.api_key)
    except PineconeRequestError as error:
        raise RotationError(f"pending key {pending.key_id} failed the index stats call: {error}") from None
    logger.info("pending key works", extra={"version_id": token, "key_id": pending.key_id})


def finish_secret(deps: RotationDependencies, arn: str, token: str) -> None:
    versions = deps.secrets.describe_secret(SecretId=arn).get("VersionIdsToStages", {})
    current_version = next((v for v, stages in versions.items() if AWSCURRENT in stages), None)
    if current_version == token:
        logger.info("version already AWSCURRENT", extra={"version_id": token})
        return
    previous_version = next((v for v, stages in versions.items() if AWSPREVIOUS in stages), None)
    pending = _require_pending(deps, arn, token)
    if current_version is not None:
        try:
            revoke_retired_keys(deps, arn, token, pending, current_version, previous_version)
        except (PineconeRequestError, ClientError, RotationError) as error:
            # The new key matters more than the old one's end: promote anyway; a later rotation retries.
            logger.error("revoking retired keys failed; promoting anyway", extra={"error": str(error)})
    marker = deps.settings.rotation_marker_parameter
    if marker:
        deps.ssm.put_parameter(Name=marker, Value=token, Type="String", Overwrite=True)
    move: dict[str, Any] = {"SecretId": arn, "VersionStage": AWSCURRENT, "MoveToVersionId": token}
    if current_version is not None:
        move["RemoveFromVersionId"] = current_version
    logger.info("promoting the new key", extra={"version_id": token, "key_id": pending.key_id})
    deps.secrets.update_secret_version_stage(**move)
    # Nothing after the label move: a retried finishSecret returns at the entry checks.


def _roles_like(admin: KeyAdmin, current: KeySecret) -> tuple[str, ...]:
    """The current key's roles (least privilege carries over), else Pinecone's default."""
    if current.roles:
        return current.roles
    info = admin.describe_key(current.key_id) if current.key_id else None
    return info.roles if info is not None and info.roles else DEFAULT_ROLES
