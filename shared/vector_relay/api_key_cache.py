"""The Pinecone API key, read from Secrets Manager and kept in memory, never in logs or errors.

The secret is JSON: ``{"api_key": "...", "key_id": "...", "project_id": "..."}``. Workers read it
once and keep it while the container is warm; when Pinecone refuses the key (401/403) they re-read
the secret at once (it may just have been rotated) and retry the request one time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vector_relay.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key and where it came from. ``repr`` and ``str`` never show the value."""

    value: str = field(repr=False)
    version_id: str
    key_id: str = ""

    def __str__(self) -> str:
        return f"ApiKey(key_id={self.key_id!r}, version_id={self.version_id!r})"


def read_api_key(secrets: SecretsManagerClient, secret_arn: str) -> ApiKey:
    """Read the AWSCURRENT version of the API-key secret."""
    response = secrets.get_secret_value(SecretId=secret_arn)
    try:
        payload = json.loads(response["SecretString"])
        value = payload["api_key"]
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError(f'secret {secret_arn} must be JSON with a string "api_key"') from None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f'secret {secret_arn} must be JSON with a string "api_key"')
    return ApiKey(value=value, version_id=response["VersionId"], key_id=str(payload.get("key_id", "")))


class ApiKeyCache:
    """Holds the current key; :meth:`refresh` re-reads it, once for any number of concurrent callers."""

    def __init__(self, read: Callable[[], ApiKey]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._key: ApiKey | None = None

    def current(self) -> ApiKey:
        with self._lock:
            if self._key is None:
                self._key = self._read()
            return self._key

    def refresh(self, stale: ApiKey) -> ApiKey:
        """A fresh read, unless another caller already replaced ``stale`` since it was handed out."""
        with self._lock:
            if self._key is None or self._key.version_id == stale.version_id:
                self._key = self._read()
            return self._key
