"""The JSON of the two Pinecone secrets: the API key's (workers and rotation) and the admin account's.

One parser for each, so the workers, the rotation function and the operator tools read the same
format (docs/rotation.md, "Secret format"). A malformed version is a
:class:`MalformedSecretError` naming the secret and version, never a value: a secret that is not
JSON is not echoed back, and a field's content is never quoted.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, TypeIs

from vector_relay.errors import ConfigurationError

# The API-key secret's fields. Only the key is needed to call Pinecone; rotation needs the project too.
API_KEY = "api_key"
KEY_ID = "key_id"  # without it the key works but rotation cannot revoke it later
PROJECT_ID = "project_id"
KEY_NAME = "key_name"
ROLES = "roles"
CREATED_AT = "created_at"
ROTATION_TOKEN = "rotation_token"  # noqa: S105 - a field name: the secret version the key was minted for
# The admin secret's fields: the service account rotation signs in to the Admin API with.
CLIENT_ID = "client_id"
CLIENT_SECRET = "client_secret"  # noqa: S105 - a field name, not a secret


class MalformedSecretError(ConfigurationError):
    """A secret's value is not the documented JSON. The message names the secret and version, never a value."""


@dataclass(frozen=True, slots=True)
class KeySecret:
    """One version of the API-key secret. ``repr`` never shows the key."""

    api_key: str = field(repr=False)
    key_id: str = ""
    project_id: str = ""
    key_name: str = ""
    roles: tuple[str, ...] = ()
    created_at: str = ""
    rotation_token: str = ""

    def to_json(self) -> str:
        payload: dict[str, Any] = {
            API_KEY: self.api_key,
            KEY_ID: self.key_id,
            PROJECT_ID: self.project_id,
            KEY_NAME: self.key_name,
            ROLES: list(self.roles),
            CREATED_AT: self.created_at,
            ROTATION_TOKEN: self.rotation_token,
        }
        return json.dumps(payload)


def parse_key_secret(text: str | None, where: str, *, required: Collection[str] = (API_KEY,)) -> KeySecret:
    """One version of the API-key secret; :class:`MalformedSecretError` naming ``where`` if it is malformed.

    ``required`` are the fields that must be non-empty strings (the workers need the key; rotation
    the key and the project). Absent optional fields are empty.
    """
    payload = _json_object(text, where)
    missing = [name for name in required if not _non_empty_string(payload.get(name))]
    if missing:
        raise MalformedSecretError(f"{where} needs non-empty strings {', '.join(missing)}")
    api_key = payload.get(API_KEY)
    roles = payload.get(ROLES) or ()
    return KeySecret(
        api_key=api_key if isinstance(api_key, str) else "",
        key_id=str(payload.get(KEY_ID) or ""),
        project_id=str(payload.get(PROJECT_ID) or ""),
        key_name=str(payload.get(KEY_NAME) or ""),
        roles=tuple(str(role) for role in roles) if isinstance(roles, list) else (),
        created_at=str(payload.get(CREATED_AT) or ""),
        rotation_token=str(payload.get(ROTATION_TOKEN) or ""),
    )


@dataclass(frozen=True, slots=True)
class AdminAccount:
    """The Pinecone service account in the admin secret. ``repr`` never shows its secret."""

    client_id: str
    client_secret: str = field(repr=False)


def parse_admin_account(text: str | None, where: str) -> AdminAccount:
    """The admin secret's service account; :class:`MalformedSecretError` naming ``where`` if it is malformed."""
    try:
        payload = _json_object(text, where)
    except MalformedSecretError:
        payload = {}
    client_id, client_secret = payload.get(CLIENT_ID), payload.get(CLIENT_SECRET)
    if not (_non_empty_string(client_id) and _non_empty_string(client_secret)):
        raise MalformedSecretError(f'{where} must be JSON with "{CLIENT_ID}" and "{CLIENT_SECRET}"')
    return AdminAccount(client_id=client_id, client_secret=client_secret)


def _json_object(text: str | None, where: str) -> dict[str, Any]:
    try:
        payload = json.loads(text or "")
    except ValueError:
        raise MalformedSecretError(f"{where} is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedSecretError(f"{where} is not a JSON object")
    return payload


def _non_empty_string(value: object) -> TypeIs[str]:
    return isinstance(value, str) and bool(value)
