"""The sweep of retired keys, in ``finishSecret``: revoke this secret's keys once their grace is over.

Several deployments may share one Pinecone project, so the sweep revokes only keys this secret
holds: a key named ``vector-relay-rotation-<version>`` is this secret's when ``<version>`` is one
of its versions and that version stores that key's id. Another deployment's keys are left alone,
and so is a key of this secret whose retirement time is unknown (logged, and counted as
``KeysKeptRetirementUnknown``): a key kept is a cost, a key wrongly revoked is an outage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from vector_relay.keys.key_secret import KeySecret
from vector_relay.keys.rotation_secret import (
    KEY_NAME_PREFIX,
    RotationDependencies,
    RotationError,
    parse_version,
    read_current,
    read_version,
)
from vector_relay.metrics import KEYS_KEPT_RETIREMENT_UNKNOWN
from vector_relay.pinecone.errors import PineconeRequestError

logger = Logger(child=True)


def revoke_retired_keys(
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
    current = read_current(deps, arn)
    if deps.admin is None:
        if previous_version is not None:
            previous = read_version(deps, arn, previous_version)
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
        previous = read_version(deps, arn, previous_version)
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
    KEYS_KEPT_RETIREMENT_UNKNOWN.emit_now(kept)


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
