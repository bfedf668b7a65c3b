"""The Pinecone API key and the client built from it, read from Secrets Manager, never in logs or errors.

The secret is JSON (format in docs/rotation.md, read by :mod:`vector_relay.keys.key_secret`):
``{"api_key": "...", "key_id": "...", "project_id": "...", ...}``. A worker keeps the key it read,
with the secret version it came from, while its container is warm, and builds a new Pinecone
client only when that version changes:

* **TTL**: after ``API_KEY_CACHE_TTL_SECONDS`` the next request re-reads the secret's ``AWSCURRENT``
  version (and the rotation marker, when one is configured); a different version id means a new key
  and a new client, the same one means nothing changes until the next TTL.
* **Rotation marker**: the SSM parameter the rotation function sets to the version it is about to
  promote. It is read with the TTL; when it has moved but ``AWSCURRENT`` has not yet (the
  promotion is a moment away), the next check comes after :data:`PROMOTION_RECHECK_SECONDS`
  instead of a whole TTL.
* **401/403**: the request that was refused re-reads the secret at once and is retried one time
  with the key it finds. If that key is refused too, the failure is transient (never poison) and is
  counted as ``AuthFailure``.

However many requests of an invocation hit an expired TTL or a refusal at the same moment, the
secret is read once. The key's value is never in a ``repr``, a log line, a metric or an error;
its ``key_id`` may be.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger

from vector_relay.errors import FailureKind
from vector_relay.keys.key_secret import parse_key_secret
from vector_relay.pinecone.data_plane import PineconeGateway
from vector_relay.pinecone.errors import PineconeRequestError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = Logger(child=True)

# After the rotation marker moves ahead of AWSCURRENT, how soon the version is checked again.
PROMOTION_RECHECK_SECONDS = 5.0
# After a failed check (Secrets Manager or SSM unreachable), how soon it is tried again; the cached
# key keeps serving meanwhile (a refusal still triggers an immediate re-read).
FAILED_CHECK_RETRY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key and where it came from. ``repr`` and ``str`` never show the value."""

    value: str = field(repr=False)
    version_id: str
    key_id: str = ""

    def __str__(self) -> str:
        return f"ApiKey(key_id={self.key_id!r}, version_id={self.version_id!r})"


def read_api_key(secrets: SecretsManagerClient, secret_arn: str) -> ApiKey:
    """Read the AWSCURRENT version of the API-key secret.

    A malformed value is a :class:`~vector_relay.keys.key_secret.MalformedSecretError` (a
    ``ConfigurationError``) naming the secret and version, never the value.
    """
    response = secrets.get_secret_value(SecretId=secret_arn, VersionStage="AWSCURRENT")
    version_id = response["VersionId"]
    secret = parse_key_secret(response.get("SecretString"), f"secret {secret_arn} version {version_id}")
    return ApiKey(value=secret.api_key, version_id=version_id, key_id=secret.key_id)


class ApiKeyCache:
    """Holds the current key, re-checked after a TTL; thread-safe, one read for many concurrent callers.

    ``read`` returns the secret's AWSCURRENT key. ``read_marker`` (optional) returns the rotation
    marker's value. With ``ttl_seconds=None`` the key is kept until :meth:`refresh`.
    """

    def __init__(
        self,
        read: Callable[[], ApiKey],
        *,
        ttl_seconds: float | None = None,
        read_marker: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._read_marker = read_marker
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._key: ApiKey | None = None
        self._check_at = 0.0
        self._marker: str | None = None
        self.reads = 0

    def fresh(self) -> ApiKey | None:
        """The cached key if it needs no check now (no I/O, safe on the event loop), else None."""
        key = self._key
        if key is None or (self._ttl is not None and self._clock() >= self._check_at):
            return None
        return key

    def current(self) -> ApiKey:
        """The key to use: the cached one, re-checked against the secret (and the marker) once the TTL is up."""
        with self._lock:
            if self._key is None:
                self._key = self._read_now()
                self._marker = self._marker_now(self._key)
            elif self._ttl is not None and self._clock() >= self._check_at:
                self._check()
            return self._key

    def refresh(self, stale: ApiKey) -> ApiKey:
        """A fresh read, unless the key was already re-read since ``stale`` was handed out.

        Identity, not equality: a re-read that finds the same version is a new object, so the
        requests that saw the old one do not each read again.
        """
        with self._lock:
            if self._key is None or self._key is stale:
                self._key = self._read_now()
            return self._key

    def _read_now(self) -> ApiKey:
        key = self._read()
        self.reads += 1
        self._schedule(self._ttl)
        return key

    def _schedule(self, seconds: float | None) -> None:
        if seconds is not None:
            self._check_at = self._clock() + seconds

    def _marker_now(self, key: ApiKey) -> str | None:
        if self._read_marker is None:
            return None
        try:
            return self._read_marker()
        except Exception as error:
            logger.warning("rotation marker unreadable", extra={"key_id": key.key_id, "error": type(error).__name__})
            return self._marker

    def _check(self) -> None:
        assert self._key is not None
        cached = self._key
        marker = self._marker_now(cached)
        try:
            latest = self._read_now()
        except Exception as error:
            # The cached key keeps serving; a refusal from Pinecone still re-reads at once.
            logger.warning(
                "API key version check failed; keeping the cached key",
                extra={"key_id": cached.key_id, "error": type(error).__name__},
            )
            self._schedule(min(self._ttl or 0.0, FAILED_CHECK_RETRY_SECONDS))
            return
        marker_moved = marker is not None and marker != self._marker
        self._marker = marker
        if latest.version_id != cached.version_id:
            logger.info(
                "API key version changed",
                extra={"key_id": latest.key_id, "version_id": latest.version_id, "previous_key_id": cached.key_id},
            )
            self._key = latest
            return
        self._key = cached  # same version: keep the object, so nothing is rebuilt
        if marker_moved and marker != latest.version_id:
            self._schedule(min(self._ttl or 0.0, PROMOTION_RECHECK_SECONDS))


class GatewaySource:
    """The gateway for the current API key, rebuilt when the key changes. Shared across invocations.

    A gateway holds an HTTP connection pool. When the key changes, the gateway of the old key is
    closed as soon as the last request that was using it ends (at once when none is): a request in
    flight on the old key is never cut off, and a warm container never holds more than the pools of
    the keys its requests are using. Requests take a gateway with :meth:`current` or
    :meth:`after_auth_failure` and give it back with :meth:`done` (``call_with_key_refresh`` does both).

    ``on_auth_failure`` is called with the key when a request was refused even after the re-read
    (the worker counts it as the ``AuthFailure`` metric).
    """

    def __init__(
        self,
        keys: ApiKeyCache,
        build: Callable[[ApiKey], PineconeGateway],
        *,
        on_auth_failure: Callable[[ApiKey], None] | None = None,
    ) -> None:
        self._keys = keys
        self._build = build
        self._on_auth_failure = on_auth_failure
        self._key: ApiKey | None = None
        self._gateway: PineconeGateway | None = None
        self._users: dict[PineconeGateway, int] = {}  # requests holding each gateway, current or replaced
        self._checking: asyncio.Lock | None = None
        self._refreshing: asyncio.Lock | None = None

    @property
    def open_gateways(self) -> int:
        """Gateways built and not yet closed: the current one and replaced ones still in use."""
        return len(self._users) + (self._gateway is not None and self._gateway not in self._users)

    async def current(self) -> tuple[ApiKey, PineconeGateway]:
        """The key to use and its gateway, taken for one request: give it back with :meth:`done`."""
        key = self._keys.fresh()
        if key is None:
            if self._checking is None:
                self._checking = asyncio.Lock()
            async with self._checking:  # one check for all the requests waiting on it
                key = self._keys.fresh()
                if key is None:
                    key = await asyncio.to_thread(self._keys.current)
        return key, await self._take(key)

    async def after_auth_failure(self, stale: ApiKey) -> tuple[ApiKey, PineconeGateway]:
        """Re-read the key (once, whatever the number of requests that saw the refusal); as :meth:`current`."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            key = await asyncio.to_thread(self._keys.refresh, stale)
            logger.info(
                "Pinecone refused the API key; re-read the secret",
                extra={"refused_key_id": stale.key_id, "key_id": key.key_id, "version_id": key.version_id},
            )
            return key, await self._take(key)

    async def done(self, gateway: PineconeGateway) -> None:
        """A request has finished with ``gateway``; a replaced gateway is closed with its last request."""
        users = self._users.get(gateway, 0) - 1
        if users > 0:
            self._users[gateway] = users
            return
        self._users.pop(gateway, None)
        if gateway is not self._gateway:
            await _close(gateway)

    def auth_failed(self, key: ApiKey) -> None:
        """A request was refused with a key just re-read from the secret."""
        logger.warning("Pinecone refused the API key re-read from the secret", extra={"key_id": key.key_id})
        if self._on_auth_failure is not None:
            self._on_auth_failure(key)

    async def close(self) -> None:
        """Close every gateway (the worker's dependencies are being dropped; nothing is in flight)."""
        gateways = set(self._users) | ({self._gateway} if self._gateway is not None else set())
        self._users.clear()
        self._gateway = self._key = None
        for gateway in gateways:
            await _close(gateway)

    async def _take(self, key: ApiKey) -> PineconeGateway:
        replaced = None
        if self._gateway is None or self._key != key:
            replaced = self._gateway
            self._gateway = self._build(key)
            self._key = key
        gateway = self._gateway
        self._users[gateway] = self._users.get(gateway, 0) + 1
        if replaced is not None and replaced not in self._users:  # nobody is using it: close it now
            await _close(replaced)
        return gateway


async def _close(gateway: PineconeGateway) -> None:
    try:
        await gateway.close()
    except Exception:  # a pool that fails to close must not fail the request that replaced it
        logger.warning("Closing the Pinecone client of a replaced API key failed", exc_info=True)


@dataclass(frozen=True, slots=True)
class Refreshed[T]:
    """What a call returned, how many key refreshes it took, and whether a refused try before the
    refresh had an attempt that may still be applied (a timeout or 5xx, then the 401): a write
    that succeeds on the new key is then uncertain all the same (docs/ordering.md, "Releasing")."""

    value: T
    refreshes: int
    uncertain: bool = False


async def call_with_key_refresh[T](
    gateways: GatewaySource, call: Callable[[PineconeGateway], Awaitable[T]]
) -> Refreshed[T]:
    """Run ``call``; if Pinecone refuses the key, re-read it and run ``call`` once more with the new one.

    The refused try's uncertainty is kept: on the result, or on the error of the second try."""
    key, gateway = await gateways.current()
    try:
        return Refreshed(await call(gateway), 0)
    except PineconeRequestError as error:
        if error.kind is not FailureKind.AUTH:
            raise
        uncertain = error.uncertain
    finally:
        await gateways.done(gateway)
    key, gateway = await gateways.after_auth_failure(key)
    try:
        return Refreshed(await call(gateway), 1, uncertain)
    except PineconeRequestError as error:
        error.uncertain = error.uncertain or uncertain
        if error.kind is FailureKind.AUTH:
            gateways.auth_failed(key)
        raise
    finally:
        await gateways.done(gateway)
