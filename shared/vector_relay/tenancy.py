"""Tenant -> namespace, the one rule that keeps tenants apart, and which queues may speak for a tenant.

A message names its tenant; the namespace always comes from the tenant registry (configuration),
never from the message, so no message can reach another tenant's records. The registry is JSON,
given inline (``TENANT_REGISTRY``) or in an SSM parameter (``TENANT_REGISTRY_PARAMETER``, re-read
after ``TENANT_REGISTRY_TTL_SECONDS``). Each tenant maps to its namespace, either directly
(``{"acme": "tenant-acme"}``) or as an object:

    {"acme": {"namespace": "tenant-acme",
              "queues": ["arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-ingest", ...],
              "reply_queues": ["https://sqs.us-east-1.amazonaws.com/123456789012/relay-tenant-acme-replies"],
              "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/relay-tenant-acme-receipts"}}

``queues`` binds the tenant to its own queues (docs/security.md, tenant binding): a message from
one of them must name that tenant, and a message naming the tenant is taken from no other queue.
SQS gives a function no sender identity, so the queue, whose policy admits only the tenant's
producers, is the proof. ``reply_queues`` replaces the global reply allow-list for the tenant.
``receipts`` is the queue the tenant's write receipts go to (:mod:`vector_relay.ingest.receipts`);
a tenant without one gets none.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vector_relay.contract.fields import MAX_TENANT_CHARS
from vector_relay.contract.tenant_schemas import TenantSchema
from vector_relay.errors import ConfigurationError, Problem
from vector_relay.metrics import UNREGISTERED_TENANT

MAX_NAMESPACE_CHARS = 512  # Pinecone's limit on a namespace's name
DEFAULT_NAMESPACE = "__default__"
ENTRY_KEYS = frozenset({"namespace", "queues", "reply_queues", "receipts", "schema"})
_QUEUE_ARN = re.compile(r"arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?")
_QUEUE_URL = re.compile(r"https?://[A-Za-z0-9.:-]+/(\d{12}/)?[A-Za-z0-9_-]{1,80}(\.fifo)?")


@dataclass(frozen=True, slots=True)
class TenantRegistry(Mapping[str, str]):
    """An immutable, validated tenant -> namespace mapping. Distinct tenants never share a namespace.

    Tenants bound to queues (``queues``) and tenants with reply queues of their own are kept beside
    it; a queue serves one tenant at most.
    """

    _namespaces: Mapping[str, str]
    _queues: Mapping[str, frozenset[str]] = field(default_factory=dict)  # tenant -> bound queue ARNs
    _reply_queues: Mapping[str, frozenset[str]] = field(default_factory=dict)  # tenant -> reply queue URLs
    _schemas: Mapping[str, TenantSchema] = field(default_factory=dict)  # tenant -> metadata schema
    _receipts: Mapping[str, str] = field(default_factory=dict)  # tenant -> receipt queue URL
    # namespace -> tenant (distinct tenants never share a namespace): the per-tenant metrics look every namespace up
    _tenants: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tenants", {namespace: tenant for tenant, namespace in self._namespaces.items()})

    @classmethod
    def from_json(cls, text: str, *, source: str) -> TenantRegistry:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"tenant registry from {source} is not JSON: {error.msg}") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(
                f'tenant registry from {source} must be a JSON object {{"tenant": "namespace" or {{"namespace": ...}}}}'
            )
        return cls.from_mapping(raw, source=source)

    @classmethod
    def from_mapping(cls, raw: Mapping[Any, object], *, source: str) -> TenantRegistry:
        problems: list[str] = []
        owners: dict[str, str] = {}
        queue_owners: dict[str, str] = {}
        queues: dict[str, frozenset[str]] = {}
        reply_queues: dict[str, frozenset[str]] = {}
        schemas: dict[str, TenantSchema] = {}
        receipts: dict[str, str] = {}
        for tenant, entry in raw.items():
            if not isinstance(tenant, str) or not tenant:
                problems.append(f"tenant {tenant!r} must be a non-empty string")
                continue
            if (naming := _tenant_name_problem(tenant)) is not None:
                problems.append(f"tenant {tenant!r} {naming}")
                continue
            namespace, bound, replies = _entry(tenant, entry, problems)
            if namespace is None:
                continue
            if namespace in owners:
                problems.append(f"tenants {owners[namespace]!r} and {tenant!r} share namespace {namespace!r}")
                continue
            owners[namespace] = tenant
            for arn in bound:
                if arn in queue_owners:
                    problems.append(f"tenants {queue_owners[arn]!r} and {tenant!r} are both bound to queue {arn}")
                queue_owners[arn] = tenant
            if bound:
                queues[tenant] = bound
            if replies is not None:
                reply_queues[tenant] = replies
            if isinstance(entry, dict) and "receipts" in entry:
                url = entry["receipts"]
                shared_with = next((other for other, taken in receipts.items() if taken == url), None)
                if not isinstance(url, str) or not _QUEUE_URL.fullmatch(url):
                    problems.append(f"tenant {tenant!r}: receipts must be an SQS queue URL")
                elif shared_with is not None:
                    problems.append(f"tenants {shared_with!r} and {tenant!r} share receipt queue {url}")
                else:
                    receipts[tenant] = url
            if isinstance(entry, dict) and "schema" in entry:
                schema = TenantSchema.parse(entry["schema"], f"tenant {tenant!r}", problems)
                if schema is not None:
                    schemas[tenant] = schema
        if problems:
            raise ConfigurationError(f"tenant registry from {source} is invalid: " + "; ".join(problems))
        namespaces = {tenant: namespace for namespace, tenant in owners.items()}
        return cls(namespaces, queues, reply_queues, schemas, receipts)

    def schema_for(self, tenant: str) -> TenantSchema | None:
        """The tenant's metadata schema, if it declares one."""
        return self._schemas.get(tenant)

    def receipts_for(self, tenant: str) -> str | None:
        """The queue the tenant's write receipts go to; None: the tenant gets none."""
        return self._receipts.get(tenant)

    def bound_tenant(self, queue_arn: str) -> str | None:
        """The tenant a queue is bound to, if any."""
        for tenant, arns in self._queues.items():
            if queue_arn in arns:
                return tenant
        return None

    def binding_problem(self, queue_arn: str, tenant: str) -> Problem | None:
        """Why a message from ``queue_arn`` may not act for ``tenant``; None when it may."""
        owner = self.bound_tenant(queue_arn)
        if owner is not None and owner != tenant:
            return Problem(
                "tenant_not_bound", "tenant", f"this queue is bound to tenant '{owner}'; the message names another"
            )
        if owner is None and tenant in self._queues:
            return Problem(
                "tenant_not_bound", "tenant", "the tenant takes messages only from its own queues, not this one"
            )
        return None

    def reply_queues_for(self, tenant: str, default: frozenset[str]) -> frozenset[str]:
        """The queues a query of ``tenant`` may be answered on: its own, or the global allow-list."""
        return self._reply_queues.get(tenant, default)

    def all_reply_queues(self) -> frozenset[str]:
        return frozenset().union(*self._reply_queues.values())

    def namespace_for(self, tenant: str) -> str:
        """The tenant's namespace. Callers validate the tenant first; an unknown one here is a bug."""
        return self._namespaces[tenant]

    def tenant_of_namespace(self, namespace: str) -> str | None:
        """The tenant whose namespace this is (distinct tenants never share one); None if no tenant's."""
        return self._tenants.get(namespace)

    def __getitem__(self, tenant: str) -> str:
        return self._namespaces[tenant]

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __len__(self) -> int:
        return len(self._namespaces)


def _tenant_name_problem(tenant: str) -> str | None:
    """Why ``tenant`` cannot name a tenant, or None. A tenant's name is a metric dimension's value
    (docs/metrics.md): CloudWatch drops a blank one (its figures would fall into the service-wide
    series), ``-`` counts dead letters of tenants not in the registry, and no message can name a tenant
    longer than the contract allows."""
    if not tenant.strip():
        return "must not be blank"
    if tenant == UNREGISTERED_TENANT:
        return f"is reserved: {UNREGISTERED_TENANT!r} counts dead letters of tenants not in the registry"
    if len(tenant) > MAX_TENANT_CHARS:
        return f"is longer than {MAX_TENANT_CHARS} characters (a message's tenant can be no longer)"
    if any(not character.isprintable() for character in tenant):
        return "must not contain control characters"
    return None


def _entry(tenant: str, entry: object, problems: list[str]) -> tuple[str | None, frozenset[str], frozenset[str] | None]:
    """``(namespace, bound queue ARNs, reply queue URLs or None)`` of one registry entry; problems are appended."""
    if isinstance(entry, str):
        entry = {"namespace": entry}
    if not isinstance(entry, dict):
        problems.append(
            f"tenant {tenant!r}: namespace must be 1-{MAX_NAMESPACE_CHARS} ASCII characters without NUL, "
            'or {"namespace": ...}'
        )
        return None, frozenset(), None
    unknown = sorted(set(map(str, entry)) - ENTRY_KEYS)
    if unknown:
        problems.append(f"tenant {tenant!r}: unknown keys {unknown} (known: {sorted(ENTRY_KEYS)})")
    namespace = entry.get("namespace")
    if not isinstance(namespace, str) or not _valid_namespace(namespace):
        problems.append(f"tenant {tenant!r}: namespace must be 1-{MAX_NAMESPACE_CHARS} ASCII characters without NUL")
        return None, frozenset(), None
    bound = _strings(entry.get("queues", []), f"tenant {tenant!r}: queues", problems)
    for arn in sorted(bound):
        if not _QUEUE_ARN.fullmatch(arn):
            problems.append(f"tenant {tenant!r}: {arn!r} is not an SQS queue ARN")
    replies = entry.get("reply_queues")
    reply_urls = None if replies is None else _strings(replies, f"tenant {tenant!r}: reply_queues", problems)
    return namespace, bound, reply_urls


def _strings(value: object, what: str, problems: list[str]) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.append(f"{what} must be a list of non-empty strings")
        return frozenset()
    return frozenset(value)


def _valid_namespace(namespace: str) -> bool:
    return 1 <= len(namespace) <= MAX_NAMESPACE_CHARS and namespace.isascii() and "\x00" not in namespace


REREAD_INTERVAL_SECONDS = 5.0  # a container reads the registry to confirm a refusal at most this often


class TenantRegistrySource:
    """Gives the current registry: parsed once when inline, re-read from SSM after ``ttl_seconds``.

    ``read_parameter`` returns the parameter's value (the worker passes an SSM call); ``clock``
    (monotonic) and ``wall_clock`` (epoch seconds) are injectable for tests. A failed re-read keeps
    serving the last good registry and raises only when there has never been one.

    Before a worker refuses a message for its tenant it may read the parameter again at once
    (:meth:`reread`), but no more often than every ``reread_interval_seconds``; :meth:`read_at`
    says when the registry in hand was read, so a refusal can be weighed against the time the
    message was sent.
    """

    def __init__(
        self,
        *,
        inline: str | None,
        parameter_name: str | None,
        read_parameter: Callable[[str], str],
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reread_interval_seconds: float = REREAD_INTERVAL_SECONDS,
    ) -> None:
        if bool(inline) == bool(parameter_name):
            raise ConfigurationError("set exactly one of TENANT_REGISTRY and TENANT_REGISTRY_PARAMETER")
        self._parameter_name = parameter_name
        self._read_parameter = read_parameter
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._wall_clock = wall_clock
        self._reread_interval = reread_interval_seconds
        self._lock = threading.Lock()
        self._registry: TenantRegistry | None = None
        self._loaded_at = 0.0
        self._read_at = -math.inf  # epoch seconds at which the registry in hand was read
        self._reread_at = -math.inf  # monotonic time of the last reread()
        if inline:
            self._registry = TenantRegistry.from_json(inline, source="TENANT_REGISTRY")
            self._read_at = math.inf  # configuration: no later read can differ

    @property
    def reread_interval(self) -> float:
        """The least time between two :meth:`reread` calls that read the parameter."""
        return self._reread_interval

    @property
    def rereadable(self) -> bool:
        """Whether reading again could give another registry (it lives in SSM, not inline)."""
        return self._parameter_name is not None

    def current(self) -> TenantRegistry:
        if self._parameter_name is None:
            assert self._registry is not None
            return self._registry
        with self._lock:
            if self._registry is None or self._clock() - self._loaded_at >= self._ttl_seconds:
                self._refresh(self._parameter_name)
            assert self._registry is not None
            return self._registry

    def read_at(self) -> float:
        """When the registry in hand was read (epoch seconds; infinity when inline, -infinity before the first read)."""
        with self._lock:
            return self._read_at

    def age(self) -> float:
        """Seconds since the registry in hand was read (0 when inline)."""
        with self._lock:
            if self._parameter_name is None:
                return 0.0
            return self._clock() - self._loaded_at if self._registry is not None else math.inf

    def reread_wait(self) -> float:
        """Seconds until :meth:`reread` may read the parameter again (0: now)."""
        with self._lock:
            return max(0.0, self._reread_at + self._reread_interval - self._clock())

    def reread(self) -> TenantRegistry:
        """Read the parameter now, whatever the cache's age; the last good registry if that read fails."""
        if self._parameter_name is None:
            return self.current()
        with self._lock:
            self._reread_at = self._clock()
            self._refresh(self._parameter_name)
            assert self._registry is not None
            return self._registry

    def _refresh(self, name: str) -> None:
        started = self._wall_clock()  # the value read is at least as new as this
        try:
            text = self._read_parameter(name)
            registry = TenantRegistry.from_json(text, source=f"SSM parameter {name}")
        except Exception:
            if self._registry is None:
                raise
            return  # keep serving the last good registry; the next call tries the parameter again
        self._registry = registry
        self._loaded_at = self._clock()
        self._read_at = started
