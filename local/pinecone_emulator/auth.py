"""API keys, the project, service-account credentials and OAuth bearer tokens.

Secrets are never stored or shown: keys are kept as SHA-256 digests and identified by their id.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROLES = (
    "ProjectEditor",
    "ProjectViewer",
    "ControlPlaneEditor",
    "ControlPlaneViewer",
    "DataPlaneEditor",
    "DataPlaneViewer",
)
TOKEN_LIFETIME_SECONDS = 1800
READ_OPERATIONS = frozenset(
    {
        "list_indexes",
        "describe_index",
        "query",
        "fetch",
        "fetch_by_metadata",
        "describe_index_stats",
        "list",
        "describe_namespace",
        "list_namespaces",
    }
)
CONTROL_OPERATIONS = frozenset({"create_index", "list_indexes", "describe_index", "configure_index", "delete_index"})
ROLE_GRANTS: dict[str, set[tuple[str, str]]] = {
    "ProjectEditor": {("control", "write"), ("control", "read"), ("data", "write"), ("data", "read")},
    "ProjectViewer": {("control", "read"), ("data", "read")},
    "ControlPlaneEditor": {("control", "write"), ("control", "read")},
    "ControlPlaneViewer": {("control", "read")},
    "DataPlaneEditor": {("data", "write"), ("data", "read")},
    "DataPlaneViewer": {("data", "read")},
}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def anonymous_label(secret: str) -> str:
    """How an unknown key appears in counters: a short hash, never the key."""
    return f"unknown:{digest(secret)[:8]}"


def permits(roles: list[str], operation: str) -> bool:
    """Whether a key with ``roles`` may call ``operation``: its plane (control or data) and access (read or write)."""
    plane = "control" if operation in CONTROL_OPERATIONS else "data"
    access = "read" if operation in READ_OPERATIONS else "write"
    return any((plane, access) in ROLE_GRANTS.get(role, set()) for role in roles)


@dataclass
class ApiKey:
    id: str
    name: str
    project_id: str
    roles: list[str]
    secret_digest: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "project_id": self.project_id, "roles": list(self.roles)}


@dataclass
class Project:
    id: str
    name: str
    organization_id: str
    max_pods: int = 0
    force_encryption_with_cmek: bool = False
    created_at: str = "2026-01-01T00:00:00Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "max_pods": self.max_pods,
            "force_encryption_with_cmek": self.force_encryption_with_cmek,
            "organization_id": self.organization_id,
            "created_at": self.created_at,
        }


@dataclass
class KeyRing:
    """Who may call: API keys for the control and data planes, a service account for the Admin API."""

    project: Project
    client_id: str
    client_secret_digest: str
    initial_keys: list[str]
    allow_any_key: bool = False
    keys: dict[str, ApiKey] = field(default_factory=dict)
    by_digest: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token digest -> expiry (monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.keys.clear()
            self.by_digest.clear()
            self.tokens.clear()
            for position, secret in enumerate(self.initial_keys):
                self._add(
                    ApiKey(
                        f"initial-key-{position}",
                        f"initial-key-{position}",
                        self.project.id,
                        ["ProjectEditor"],
                        digest(secret),
                    )
                )

    def _add(self, key: ApiKey) -> None:
        self.keys[key.id] = key
        self.by_digest[key.secret_digest] = key.id

    def restore(self, keys: list[ApiKey]) -> None:
        with self.lock:
            for key in keys:
                self._add(key)

    def identify(self, secret: str | None) -> ApiKey | None:
        """The live key behind *secret*, or None (missing, unknown or revoked)."""
        if not secret:
            return None
        with self.lock:
            key_id = self.by_digest.get(digest(secret))
            if key_id is not None:
                return self.keys[key_id]
        if self.allow_any_key:
            return ApiKey(anonymous_label(secret), "any-key", self.project.id, ["ProjectEditor"], digest(secret))
        return None

    def create_key(self, name: str, roles: list[str]) -> tuple[ApiKey, str]:
        secret = "pcsk_" + secrets.token_urlsafe(48)
        key = ApiKey(str(uuid.uuid4()), name, self.project.id, roles, digest(secret))
        with self.lock:
            self._add(key)
        return key, secret

    def get(self, key_id: str) -> ApiKey | None:
        with self.lock:
            return self.keys.get(key_id)

    def list(self) -> list[ApiKey]:
        with self.lock:
            return list(self.keys.values())

    def delete(self, key_id: str) -> bool:
        with self.lock:
            key = self.keys.pop(key_id, None)
            if key is None:
                return False
            self.by_digest.pop(key.secret_digest, None)
            return True

    def check_client(self, client_id: object, client_secret: object) -> bool:
        return (
            isinstance(client_id, str)
            and isinstance(client_secret, str)
            and secrets.compare_digest(client_id, self.client_id)
            and secrets.compare_digest(digest(client_secret), self.client_secret_digest)
        )

    def mint_token(self) -> str:
        token = "emu_" + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[digest(token)] = time.monotonic() + TOKEN_LIFETIME_SECONDS
        return token

    def check_token(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization[len("Bearer ") :].strip()
        with self.lock:
            expiry = self.tokens.get(digest(token))
        return expiry is not None and expiry > time.monotonic()
