"""The Pinecone API key and the client built from it, read from Secrets Manager, never in logs or errors.

The secret is JSON: ``{"api_key": "...", "key_id": "...", "project_id": "..."}``. Workers read it
once and keep it while the container is warm; when Pinecone refuses the key (401/403) they re-read
the secret at once (it may just have been rotated) and retry the request one time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vector_relay.errors import ConfigurationError
from vector_relay.pinecone_gateway import FailureKind, PineconeGateway, PineconeRequestError

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


class GatewaySource:
    """The gateway for the current API key, rebuilt when the key changes. Shared across invocations."""

    def __init__(self, keys: ApiKeyCache, build: Callable[[ApiKey], PineconeGateway]) -> None:
        self._keys = keys
        self._build = build
        self._key: ApiKey | None = None
        self._gateway: PineconeGateway | None = None
        self._refreshing: asyncio.Lock | None = None

    async def current(self) -> tuple[ApiKey, PineconeGateway]:
        key = self._key if self._key is not None else await asyncio.to_thread(self._keys.current)
        return key, self._gateway_for(key)

    async def after_auth_failure(self, stale: ApiKey) -> tuple[ApiKey, PineconeGateway]:
        """Re-read the key (once, whatever the number of requests that saw the refusal)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            key = await asyncio.to_thread(self._keys.refresh, stale)
            return key, self._gateway_for(key)

    def _gateway_for(self, key: ApiKey) -> PineconeGateway:
        if self._gateway is None or self._key != key:
            self._gateway = self._build(key)
            self._key = key
        return self._gateway


@dataclass(frozen=True, slots=True)
class Refreshed[T]:
    value: T
    refreshes: int


async def call_with_key_refresh[T](
    gateways: GatewaySource, call: Callable[[PineconeGateway], Awaitable[T]]
) -> Refreshed[T]:
    """Run ``call``; if Pinecone refuses the key, re-read it and run ``call`` once more with the new one."""
    key, gateway = await gateways.current()
    try:
        return Refreshed(await call(gateway), 0)
    except PineconeRequestError as error:
        if error.kind is not FailureKind.AUTH:
            raise
    _, gateway = await gateways.after_auth_failure(key)
    return Refreshed(await call(gateway), 1)
