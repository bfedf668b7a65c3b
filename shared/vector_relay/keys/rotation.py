"""Secrets Manager rotation of the Pinecone API key: the entry checks and the four steps.

Alternating keys: a rotation mints a new key and makes it ``AWSCURRENT``; the key it replaces
becomes ``AWSPREVIOUS`` and stays valid, so a worker still holding it keeps working until its cache
TTL re-reads the secret. The key from the rotation before that is revoked in ``finishSecret``, but
only once it has been out of ``AWSCURRENT`` for ``KEY_REVOCATION_GRACE_SECONDS`` (at least the
workers' cache TTL plus their timeout); otherwise a later rotation revokes it.

Several deployments may share one Pinecone project, so the sweep revokes only keys this secret
holds: a key named ``vector-relay-rotation-<version>`` is this secret's when ``<version>`` is one
of its versions and that version stores that key's id. Another deployment's keys are left alone,
and so is a key of this secret whose retirement time is unknown (logged, and counted as
``KeysKeptRetirementUnknown``): a key kept is a cost, a key wrongly revoked is an outage.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from vector_relay.aws_clients import secrets_client, ssm_client
from vector_relay.errors import VectorRelayError
from vector_relay.keys.key_secret import (
    API_KEY,
    PROJECT_ID,
    KeySecret,
    MalformedSecretError,
    parse_admin_account,
    parse_key_secret,
)
from vector_relay.metrics import METRIC_NAMESPACE
from vector_relay.pinecone.admin_api import ApiKeyInfo, CreatedApiKey, PineconeKeyAdmin
from vector_relay.pinecone.data_plane import check_api_key
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.settings import Settings, get_settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

logger = Logger(child=True)

KEY_NAME_PREFIX = "vector-relay-rotation-"
DEFAULT_ROLES = ("ProjectEditor",)
AWSCURRENT = "AWSCURRENT"
AWSPENDING = "AWSPENDING"
AWSPREVIOUS = "AWSPREVIOUS"


class RotationEvent(BaseModel):
    """The event Secrets Manager sends a rotation function, once per step."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"] = Field(alias="Step")
    secret_id: str = Field(alias="SecretId", min_length=1)
    client_request_token: str = Field(alias="ClientRequestToken", min_length=1)


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
    current = _read_current(deps, arn)
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
    current = _read_current(deps, arn)
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
            _revoke_retired_keys(deps, arn, token, pending, current_version, previous_version)
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


# ------------------------------------------------------------------------------------- revocation


def _revoke_retired_keys(
    deps: RotationDependencies,
    arn: str,
    token: str,
    pending: KeySecret,
    current_version: str,
    previous_version: str | None,
) -> None:
    """Revoke this secret's keys that left AWSCURRENT at least the grace ago (two rotations back, and older).

    A key is retired when it left AWSCURRENT; when that happened is read from the rotation marker's
    history (each promotion writes the promoted version there). Only this secret's keys are
    candidates: the AWSPREVIOUS version's key, and keys named after a version of this secret that
    stores that very key (:func:`_owner_of`). Keys in use (pending, current) are never touched,
    other deployments' keys in the same project are left alone, and a key of this secret whose
    retirement time is unknown is kept, logged and counted.
    """
    current = _read_current(deps, arn)
    if deps.admin is None:
        if previous_version is not None:
            previous = _read_version(deps, arn, previous_version)
            if previous is not None and previous.key_id:
                logger.warning(
                    "manual mode: revoke the retired key by hand once its grace is over",
                    extra={"key_id": previous.key_id, "grace_seconds": deps.settings.key_revocation_grace_seconds},
                )
        return
    promotions = _promotions(deps)
    if promotions is None:
        logger.warning("no rotation marker history: retired keys are not revoked (set ROTATION_MARKER_PARAMETER)")
        return
    considered = {pending.key_id, current.key_id}
    retired: dict[str, datetime] = {}  # key_id -> when it left AWSCURRENT
    unknown: dict[str, tuple[str, str]] = {}  # key_id -> (version id, why its retirement time is unknown)
    if previous_version is not None:
        previous = _read_version(deps, arn, previous_version)
        if previous is not None and previous.key_id and previous.key_id not in considered:
            considered.add(previous.key_id)
            left = _left_current_at(promotions, previous_version)
            if left is None and _promoted_at(promotions, previous_version) is None:
                # Never promoted through the marker (the first key, stored by hand): it left with the current one.
                left = _promoted_at(promotions, current_version)
            if left is not None:
                retired[previous.key_id] = left
            else:
                unknown[previous.key_id] = (
                    previous_version,
                    "the marker history does not say when it left AWSCURRENT (a label moved by hand?)",
                )
    admin = deps.key_admin()
    listed = admin.list_keys(current.project_id)
    others: list[str] = []
    for info in listed:
        if info.key_id in considered or not info.name.startswith(KEY_NAME_PREFIX):
            continue
        version = info.name.removeprefix(KEY_NAME_PREFIX)
        if version in (token, current_version, pending.rotation_token):
            continue
        owner, why = _owner_of(deps, arn, version, info.key_id)
        if owner == "another":
            others.append(info.key_id)
            continue
        if owner == "unknown":
            unknown[info.key_id] = (version, why)
            continue
        left = _left_current_at(promotions, version)
        if left is not None:
            retired[info.key_id] = left
        else:
            unknown[info.key_id] = (
                version,
                "its version was never promoted through the marker, or still is current there",
            )
    if others:
        logger.info(
            "keys named like this function's but minted for another secret (another deployment): left alone",
            extra={"key_ids": others},
        )
    listed_ids = {info.key_id for info in listed}
    unknown = {key_id: why for key_id, why in unknown.items() if key_id in listed_ids}  # gone already: nothing kept
    for key_id, (version, why) in unknown.items():
        logger.warning(
            "key kept: when it left AWSCURRENT is unknown; revoke it by hand once no worker can hold it",
            extra={"key_id": key_id, "version_id": version, "reason": why},
        )
    _count_kept_keys(len(unknown))
    grace = deps.settings.key_revocation_grace_seconds
    now = deps.now()
    for key_id, left in retired.items():
        if (now - left).total_seconds() < grace:
            logger.info(
                "retired key still in its grace period; a later rotation revokes it",
                extra={"key_id": key_id, "retired_at": left.isoformat(), "grace_seconds": grace},
            )
            continue
        try:
            revoked = admin.delete_key(key_id)
        except PineconeRequestError as error:
            logger.error(
                "revoking retired keys failed for this key; a later rotation retries it if this function minted it",
                extra={"key_id": key_id, "error": str(error)},
            )
            continue
        logger.info("revoked a retired key", extra={"key_id": key_id, "already_gone": not revoked})


def _count_kept_keys(kept: int) -> None:
    """The ``KeysKeptRetirementUnknown`` metric, written at once (the rotation handler flushes no ``Metrics``)."""
    with single_metric(name="KeysKeptRetirementUnknown", unit=MetricUnit.Count, value=kept, namespace=METRIC_NAMESPACE):
        pass  # written as the block ends


_NOT_A_VERSION = frozenset({"ResourceNotFoundException", "ValidationException", "InvalidParameterException"})


def _owner_of(
    deps: RotationDependencies, arn: str, version: str, key_id: str
) -> tuple[Literal["this", "another", "unknown"], str]:
    """Whose is the key ``key_id`` named after ``version``: this secret's, another secret's, or unknown (and why).

    This secret's when ``version`` is one of its versions and stores that key id. A version id no
    other secret has (Secrets Manager's tokens are UUIDs) is the identity: another deployment's
    keys are named after versions of its own secret. A version Secrets Manager has since deleted
    looks like another secret's; its key is kept too.
    """
    try:
        response = deps.secrets.get_secret_value(SecretId=arn, VersionId=version)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in _NOT_A_VERSION:
            return "another", ""
        return "unknown", f"reading version {version} of this secret failed ({code})"
    try:
        stored = parse_version(response.get("SecretString"), f"version {version}")
    except RotationError as error:
        return "unknown", str(error)
    if stored.key_id != key_id:
        return "unknown", f"version {version} stores another key (this one was minted but never stored)"
    return "this", ""


def _promotions(deps: RotationDependencies) -> list[tuple[str, datetime]] | None:
    """(promoted version id, when) from the marker's history, oldest first; None without a marker."""
    name = deps.settings.rotation_marker_parameter
    if not name:
        return None
    history: list[tuple[str, datetime]] = []
    paginator = deps.ssm.get_paginator("get_parameter_history")
    try:
        for page in paginator.paginate(Name=name):
            for entry in page.get("Parameters", []):
                if "Value" in entry and "LastModifiedDate" in entry:
                    history.append((entry["Value"], entry["LastModifiedDate"]))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return []
        raise
    return history


def _promoted_at(promotions: list[tuple[str, datetime]], version: str) -> datetime | None:
    """When ``version`` was last promoted."""
    times = [when for value, when in promotions if value == version]
    return times[-1] if times else None


def _left_current_at(promotions: list[tuple[str, datetime]], version: str) -> datetime | None:
    """When ``version`` stopped being current: the first promotion of another version after its last one."""
    last = max((i for i, (value, _) in enumerate(promotions) if value == version), default=None)
    if last is None:
        return None
    return next((when for value, when in promotions[last + 1 :] if value != version), None)


# ------------------------------------------------------------------------------------ secret reads


def _roles_like(admin: KeyAdmin, current: KeySecret) -> tuple[str, ...]:
    """The current key's roles (least privilege carries over), else Pinecone's default."""
    if current.roles:
        return current.roles
    info = admin.describe_key(current.key_id) if current.key_id else None
    return info.roles if info is not None and info.roles else DEFAULT_ROLES


def _read_current(deps: RotationDependencies, arn: str) -> KeySecret:
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


def _read_version(deps: RotationDependencies, arn: str, version: str) -> KeySecret | None:
    try:
        response = deps.secrets.get_secret_value(SecretId=arn, VersionId=version)
        return parse_version(response.get("SecretString"), f"version {version}")
    except (ClientError, RotationError) as error:
        logger.warning("could not read an older version", extra={"version_id": version, "error": str(error)})
        return None
