"""``vector-relay index``: create, describe, wait for, configure and delete the index (docs/index-lifecycle.md).

The same code as the ``Custom::PineconeIndex`` resource (vector_relay.operations.index_lifecycle). The key is
``PINECONE_API_KEY`` when set, else the deployment's secret (``--stack`` / ``--outputs``); the
control plane is Pinecone's, or ``PINECONE_CONTROL_HOST`` (the local stack's emulator).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import spinner

if TYPE_CHECKING:
    from vector_relay.operations.index_lifecycle import IndexAdmin
    from vector_relay.pinecone.control_plane import IndexDescription


@click.group()
def index() -> None:
    """Create, describe, wait for, configure and delete the Pinecone index."""


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


@contextmanager
def _admin(ctx: Context) -> Iterator[IndexAdmin]:
    """An index admin with the key, or exit 2 saying where the key should have come from."""
    from vector_relay.pinecone.control_plane import PineconeIndexAdmin

    key = ctx.api_key()
    admin = PineconeIndexAdmin(api_key=key, control_host=ctx.environment("PINECONE_CONTROL_HOST") or None)
    try:
        yield admin
    finally:
        admin.close()


@contextmanager
def _errors() -> Iterator[None]:
    """Pinecone's and the lifecycle's errors as exit codes: 1 refused or failed, 2 could not run."""
    from vector_relay.errors import FailureKind
    from vector_relay.operations.index_lifecycle import IndexLifecycleError
    from vector_relay.pinecone.errors import PineconeRequestError

    try:
        yield
    except IndexLifecycleError as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(EXIT_FOUND) from None
    except PineconeRequestError as error:
        if error.kind is FailureKind.AUTH:
            raise CannotRun(f"Pinecone refused the API key: {error}") from None
        raise CannotRun(str(error)) from None


def _as_json(found: IndexDescription) -> dict[str, Any]:
    return {
        "name": found.name,
        "host": found.host,
        "state": found.state,
        "ready": found.ready,
        "dimension": found.dimension,
        "metric": found.metric,
        "cloud": found.cloud,
        "region": found.region,
        "deletion_protection": found.deletion_protection,
        "tags": found.tags,
    }


def _show(found: IndexDescription, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_as_json(found), indent=2))
        return
    kind = "sparse" if found.dimension is None else f"dimension {found.dimension}"
    protection = "on" if found.deletion_protection else "off"
    click.echo(f"{found.name}: {found.state} ({kind}, metric {found.metric}, {found.cloud} {found.region})")
    click.echo(f"  host                 {found.host}")
    click.echo(f"  deletion protection  {protection}")
    click.echo(f"  tags                 {found.tags or '-'}")


def _wait(admin: IndexAdmin, name: str, timeout: float, quiet: bool) -> IndexDescription:
    from vector_relay.operations.index_lifecycle import wait_ready

    deadline = time.monotonic() + timeout
    progress = spinner("index {task.fields[name]}: {task.fields[state]}", quiet=quiet)
    task = progress.add_task("wait", total=None, name=name, state="?")

    def on_poll(found: IndexDescription) -> None:
        progress.update(task, state=found.state)

    with progress:
        return wait_ready(admin, name, time_left=lambda: deadline - time.monotonic(), on_poll=on_poll)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the index as one JSON document.")
timeout_option = click.option(
    "--timeout", default=600.0, show_default=True, type=click.FloatRange(min=0), help="Seconds to wait for Ready."
)


@index.command()
@click.argument("name")
@json_option
@click.pass_obj
def describe(ctx: Context, name: str, as_json: bool) -> None:
    """Show the index: state, host, shape, deletion protection, tags."""
    with _admin(ctx) as admin, _errors():
        found = admin.describe(name)
    if found is None:
        raise CannotRun(f"no index named {name} in this project")
    _show(found, as_json)


@index.command()
@click.argument("name")
@click.option("--dimension", type=click.IntRange(1, 20_000), help="A dense index of this dimension (or --sparse).")
@click.option("--sparse", is_flag=True, help="A sparse-only index (or --dimension N); its metric is dotproduct.")
@click.option(
    "--metric",
    type=click.Choice(["cosine", "dotproduct", "euclidean"]),
    help="Default: cosine for a dense index, dotproduct for a sparse one.",
)
@click.option("--cloud", default="aws", show_default=True)
@click.option("--region", "region_name", default="us-east-1", show_default=True)
@click.option("--deletion-protection/--no-deletion-protection", default=True, show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the index is Ready.")
@timeout_option
@json_option
@click.pass_obj
def create(
    ctx: Context,
    name: str,
    dimension: int | None,
    sparse: bool,
    metric: str | None,
    cloud: str,
    region_name: str,
    deletion_protection: bool,
    tags: tuple[str, ...],
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create the index, or adopt an existing one of the same shape (exit 1 if it has another).

    Dense or sparse is said, never assumed: --dimension N (dense) or --sparse.
    """
    from vector_relay.operations.index_lifecycle import IndexLifecycleError, IndexSpec, ensure

    if (dimension is None) == (not sparse):
        raise click.UsageError(
            "say which kind of index: --dimension N for dense vectors (the dimension of your embeddings, "
            "e.g. 384), or --sparse for sparse vectors only"
            if dimension is None
            else "--dimension and --sparse exclude each other: a dense index has a dimension, a sparse one none"
        )
    metric = metric or ("dotproduct" if dimension is None else "cosine")
    properties = {
        "Name": name,
        "Dimension": "" if dimension is None else str(dimension),
        "Metric": metric,
        "Cloud": cloud,
        "Region": region_name,
        "DeletionProtection": "true" if deletion_protection else "false",
        "Tags": _tags(tags),
    }
    try:
        spec = IndexSpec.from_properties(properties)
    except IndexLifecycleError as error:  # a name Pinecone does not allow, ...: bad usage, nothing asked of Pinecone
        raise click.UsageError(str(error)) from None
    with _admin(ctx) as admin, _errors():
        ensured = ensure(admin, spec)
        if not as_json:
            click.echo(ensured.message)
        found = _wait(admin, name, timeout, as_json) if wait else ensured.index
    _show(found, as_json)


@index.command("wait")
@click.argument("name")
@timeout_option
@json_option
@click.pass_obj
def wait_command(ctx: Context, name: str, timeout: float, as_json: bool) -> None:
    """Wait until the index is Ready (exit 1 if it fails or time runs out)."""
    with _admin(ctx) as admin, _errors():
        if admin.describe(name) is None:
            raise CannotRun(f"no index named {name} in this project")
        found = _wait(admin, name, timeout, as_json)
    _show(found, as_json)


@index.command()
@click.argument("name")
@click.option("--deletion-protection/--no-deletion-protection", default=None, help="Turn deletion protection on/off.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Set a tag (repeatable).")
@click.option("--untag", "untags", multiple=True, metavar="KEY", help="Remove a tag (repeatable).")
@json_option
@click.pass_obj
def configure(
    ctx: Context,
    name: str,
    deletion_protection: bool | None,
    tags: tuple[str, ...],
    untags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Change deletion protection and tags in place (shape, cloud and region never change)."""
    with _admin(ctx) as admin, _errors():
        found = admin.describe(name)
        if found is None:
            raise CannotRun(f"no index named {name} in this project")
        merged = {k: v for k, v in found.tags.items() if k not in untags} | _tags(tags)
        protection = found.deletion_protection if deletion_protection is None else deletion_protection
        found = admin.configure(name, deletion_protection=protection, tags=merged)
    _show(found, as_json)


@index.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete(ctx: Context, name: str, yes: bool) -> None:
    """Delete the index and all its records (exit 1 when deletion protection refuses, 2 when there is no such index)."""
    from vector_relay.operations.index_lifecycle import DeletionProtected
    from vector_relay.operations.index_lifecycle import delete as delete_index

    with _admin(ctx) as admin, _errors():
        found = admin.describe(name)
        if found is None:  # a misspelt name is not "already gone"
            raise CannotRun(f"no index named {name} in this project: nothing was deleted")
        try:
            if found.deletion_protection:  # refused before asking, as Pinecone would refuse after
                raise DeletionProtected(name)
            if not yes:
                click.confirm(f"Delete index {name} and every record in it?", abort=True)
            click.echo(delete_index(admin, name))
        except DeletionProtected as refused:  # said in the command's terms (the stack's resource says it in its own)
            click.echo(
                f"Error: {refused}: turn it off first with `vector-relay index configure {name} "
                "--no-deletion-protection`, then delete again",
                err=True,
            )
            raise SystemExit(EXIT_FOUND) from None
