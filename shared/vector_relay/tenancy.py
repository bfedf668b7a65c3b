"""Tenant -> namespace, the one rule that keeps tenants apart.

A message names its tenant; the namespace always comes from the tenant registry (configuration),
never from the message, so no message can reach another tenant's records. The registry is JSON
``{"tenant": "namespace", ...}``, given inline (``TENANT_REGISTRY``) or in an SSM parameter
(``TENANT_REGISTRY_PARAMETER``, re-read after ``TENANT_REGISTRY_TTL_SECONDS``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from vector_relay.errors import ConfigurationError

MAX_NAMESPACE_CHARS = 512
DEFAULT_NAMESPACE = "__default__"


@dataclass(frozen=True, slots=True)
class TenantRegistry(Mapping[str, str]):
    """An immutable, validated tenant -> namespace mapping. Distinct tenants never share a namespace."""

    _namespaces: Mapping[str, str]

    @classmethod
    def from_json(cls, text: str, *, source: str) -> TenantRegistry:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"tenant registry from {source} is not JSON: {error.msg}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f'tenant registry from {source} must be a JSON object {{"tenant": "namespace"}}')
        return cls.from_mapping(raw, source=source)

    @classmethod
    def from_mapping(cls, raw: Mapping[object, object], *, source: str) -> TenantRegistry:
        problems: list[str] = []
        owners: dict[str, str] = {}
        for tenant, namespace in raw.items():
            if not isinstance(tenant, str) or not tenant:
                problems.append(f"tenant {tenant!r} must be a non-empty string")
            elif not isinstance(namespace, str) or not _valid_namespace(namespace):
                problems.append(f"tenant {tenant!r}: namespace must be 1-512 ASCII characters without NUL")
            elif namespace in owners:
                problems.append(f"tenants {owners[namespace]!r} and {tenant!r} share namespace {namespace!r}")
            else:
                owners[namespace] = tenant
        if problems:
            raise ConfigurationError(f"tenant registry from {source} is invalid: " + "; ".join(problems))
        return cls({tenant: namespace for namespace, tenant in owners.items()})

    def namespace_for(self, tenant: str) -> str:
        """The tenant's namespace. Callers validate the tenant first; an unknown one here is a bug."""
        return self._namespaces[tenant]

    def __getitem__(self, tenant: str) -> str:
        return self._namespaces[tenant]

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __len__(self) -> int:
        return len(self._namespaces)


def _valid_namespace(namespace: str) -> bool:
    return 1 <= len(namespace) <= MAX_NAMESPACE_CHARS and namespace.isascii() and "\x00" not in namespace


class TenantRegistrySource:
    """Gives the current registry: parsed once when inline, re-read from SSM after ``ttl_seconds``.

    ``read_parameter`` returns the parameter's value (the worker passes an SSM call); ``clock`` is
    injectable for tests. A failed re-read keeps serving the last good registry and raises only
    when there has never been one.
    """

    def __init__(
        self,
        *,
        inline: str | None,
        parameter_name: str | None,
        read_parameter: Callable[[str], str],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bool(inline) == bool(parameter_name):
            raise ConfigurationError("set exactly one of TENANT_REGISTRY and TENANT_REGISTRY_PARAMETER")
        self._parameter_name = parameter_name
        self._read_parameter = read_parameter
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._registry: TenantRegistry | None = None
        self._loaded_at = 0.0
        if inline:
            self._registry = TenantRegistry.from_json(inline, source="TENANT_REGISTRY")

    def current(self) -> TenantRegistry:
        if self._parameter_name is None:
            assert self._registry is not None
            return self._registry
        with self._lock:
            if self._registry is None or self._clock() - self._loaded_at >= self._ttl_seconds:
                self._refresh(self._parameter_name)
            assert self._registry is not None
            return self._registry

    def _refresh(self, name: str) -> None:
        try:
            text = self._read_parameter(name)
            registry = TenantRegistry.from_json(text, source=f"SSM parameter {name}")
        except Exception:
            if self._registry is None:
                raise
            return  # keep serving the last good registry; the next call tries the parameter again
        self._registry = registry
        self._loaded_at = self._clock()
