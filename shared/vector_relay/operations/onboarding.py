"""Tenant onboarding: a registry entry written, and the tenant's namespace created with its metadata schema.

Pinecone fixes a namespace's metadata indexing when the namespace is created, so the namespace is
made before any record arrives, indexing exactly the schema's filterable fields (none declared
filterable, or no schema: everything is indexed, Pinecone's default). A schema change that would
change the type of a field of a tenant whose namespace already holds records is refused unless
forced: every record upserted again with the old type would then be poison (docs/contract.md,
evolving a schema).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vector_relay.contract.tenant_schemas import TenantSchema
from vector_relay.errors import ConfigurationError
from vector_relay.pinecone.control_plane import NamespaceDescription
from vector_relay.tenancy import TenantRegistry


class Namespaces(Protocol):
    def describe(self, name: str) -> NamespaceDescription | None: ...

    def create(self, name: str, filterable: list[str] | None) -> NamespaceDescription: ...


class OnboardingRefused(Exception):
    """The change would hurt the tenant's data; the message says why and how to do it safely."""


@dataclass(slots=True)
class Onboarded:
    registry_json: str  # the whole registry to write back
    messages: list[str] = field(default_factory=list)


def onboard(
    registry_json: str, tenant: str, entry: Mapping[str, Any], namespaces: Namespaces, *, force: bool = False
) -> Onboarded:
    """Add or replace ``tenant``'s registry entry and make sure its namespace exists with the schema's indexing."""
    try:
        current: dict[str, Any] = json.loads(registry_json) if registry_json.strip() else {}
    except ValueError as error:
        raise ConfigurationError(f"the tenant registry is not JSON: {error}") from None
    if not isinstance(current, dict):
        raise ConfigurationError("the tenant registry must be a JSON object")
    updated = {**current, tenant: dict(entry)}
    registry = TenantRegistry.from_mapping(updated, source="the updated registry")  # validates everything
    namespace = registry.namespace_for(tenant)
    schema = registry.schema_for(tenant)
    found = namespaces.describe(namespace)
    result = Onboarded(json.dumps(updated, indent=2, sort_keys=True))
    old_schema = _old_schema(current, tenant)
    if found is not None and found.record_count and old_schema is not None and schema is not None and not force:
        changed = [
            f"{name} ({old.type} -> {schema.fields[name].type})"
            for name, old in old_schema.fields.items()
            if name in schema.fields and schema.fields[name].type != old.type
        ]
        if changed:
            raise OnboardingRefused(
                f"tenant {tenant}'s namespace {namespace} holds {found.record_count:,} records and the new schema "
                f"changes the type of {', '.join(changed)}: records written again with the old type would be "
                "refused. Add a new field, backfill it and switch filters to it (docs/contract.md), or use --force"
            )
    filterable = None if schema is None else sorted(n for n, f in schema.fields.items() if f.filterable) or None
    if found is None:
        namespaces.create(namespace, filterable)
        indexing = "every metadata field" if filterable is None else f"only {', '.join(filterable)}"
        result.messages.append(f"created namespace {namespace}, indexing {indexing}")
    else:
        result.messages.append(f"namespace {namespace} exists ({found.record_count:,} records)")
        wanted = None if filterable is None else frozenset(filterable)
        if found.indexed_fields != wanted:
            have = "every field" if found.indexed_fields is None else ", ".join(sorted(found.indexed_fields))
            result.messages.append(
                f"note: Pinecone fixed its metadata indexing at creation ({have}); the schema's filterable fields "
                "are checked by the relay, but indexing cannot change without a new namespace"
            )
    result.messages.append(f"registry entry for {tenant} written")
    return result


def _old_schema(registry: Mapping[str, Any], tenant: str) -> TenantSchema | None:
    entry = registry.get(tenant)
    if not isinstance(entry, dict) or "schema" not in entry:
        return None
    problems: list[str] = []
    return TenantSchema.parse(entry["schema"], tenant, problems)
