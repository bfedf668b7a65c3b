"""``vector-relay tenant``: onboard a tenant (registry entry, namespace with its schema's indexing) and list them.

The registry is the deployment's SSM parameter (output ``TenantRegistryParameterName``); the
workers re-read it within ``TENANT_REGISTRY_TTL_SECONDS``, and the ingest workers also before
refusing a message for its tenant, so a tenant just added is taken at once. The namespace is created in the
deployment's index (``PineconeIndexHost``) before any record arrives, because Pinecone fixes a
namespace's metadata indexing when it is created (docs/contract.md, tenant metadata schemas).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun


@click.group()
def tenant() -> None:
    """Onboard tenants (registry entry, namespace, schema) and list them."""


@tenant.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
@click.pass_obj
def list_tenants(ctx: Context, as_json: bool) -> None:
    """The registry: each tenant, its namespace, whether it is bound to queues and has a schema."""
    from vector_relay.errors import ConfigurationError
    from vector_relay.tenancy import TenantRegistry

    parameter, text = ctx.read_registry()
    try:
        TenantRegistry.from_json(text or "{}", source=f"SSM parameter {parameter}")  # as the workers read it
    except ConfigurationError as error:
        raise CannotRun(str(error)) from None
    registry: dict[str, Any] = json.loads(text or "{}")
    if as_json:
        click.echo(json.dumps(registry, indent=2, sort_keys=True))
        return
    for name, entry in sorted(registry.items()):
        entry = entry if isinstance(entry, dict) else {"namespace": entry}
        schema = entry.get("schema", {}).get("fields", {})
        extras = [f"schema: {', '.join(sorted(schema))}" if schema else "no schema"]
        if entry.get("queues"):
            extras.append(f"bound to {len(entry['queues'])} queues")
        click.echo(f"{name:20} {entry.get('namespace')}  ({'; '.join(extras)})")


@tenant.command("add")
@click.argument("name")
@click.option("--namespace", required=True, help="The tenant's Pinecone namespace.")
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help='A JSON file: {"fields": {"year": {"type": "number", "required": true}}, "extra": "forbid"}.',
)
@click.option("--queue", "queues", multiple=True, metavar="ARN", help="Bind the tenant to this queue (repeatable).")
@click.option("--reply-queue", "reply_queues", multiple=True, metavar="URL", help="A reply queue of its own.")
@click.option("--force", is_flag=True, help="Change field types even though the namespace holds records.")
@click.option("--dry-run", is_flag=True, help="Show the registry that would be written; change nothing.")
@click.pass_obj
def add(
    ctx: Context,
    name: str,
    namespace: str,
    schema_file: Path | None,
    queues: tuple[str, ...],
    reply_queues: tuple[str, ...],
    force: bool,
    dry_run: bool,
) -> None:
    """Add or update a tenant: the namespace is created with its schema's indexing, then the entry is written."""
    from vector_relay.errors import ConfigurationError
    from vector_relay.operations.onboarding import OnboardingRefused, onboard
    from vector_relay.pinecone.control_plane import NamespaceAdmin
    from vector_relay.pinecone.errors import PineconeRequestError

    entry: dict[str, Any] = {"namespace": namespace}
    if schema_file is not None:
        try:
            entry["schema"] = json.loads(schema_file.read_text())
        except ValueError as error:
            raise CannotRun(f"{schema_file} is not JSON: {error}") from None
    if queues:
        entry["queues"] = list(queues)
    if reply_queues:
        entry["reply_queues"] = list(reply_queues)
    parameter, text = ctx.read_registry()
    namespaces = NamespaceAdmin(host=ctx.deployment().output("PineconeIndexHost"), api_key=ctx.api_key())
    try:
        if dry_run:
            namespaces = _ReadOnly(namespaces)  # type: ignore[assignment]
        result = onboard(text, name, entry, namespaces, force=force)
    except ConfigurationError as error:
        raise CannotRun(str(error)) from None
    except OnboardingRefused as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(EXIT_FOUND) from None
    except PineconeRequestError as error:
        raise CannotRun(f"Pinecone: {error}") from None
    finally:
        namespaces.close()
    if dry_run:
        click.echo(result.registry_json)
        return
    try:
        ctx.ssm().put_parameter(Name=parameter, Value=result.registry_json, Overwrite=True, Type="String")
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot write the tenant registry {parameter}: {error}") from None
    for message in result.messages:
        click.echo(message)
    click.echo(
        f"the ingest workers take {name}'s messages at once (they read the registry again before refusing one); "
        "queries may still be refused for up to TENANT_REGISTRY_TTL_SECONDS (60 s by default)"
    )


class _ReadOnly:
    """A namespace admin that describes but does not create (``--dry-run``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def describe(self, name: str) -> Any:
        return self._inner.describe(name)

    def create(self, name: str, filterable: list[str] | None) -> Any:
        click.echo(f"(dry run) would create namespace {name} indexing {filterable or 'every field'}")
        return None

    def close(self) -> None:
        self._inner.close()
