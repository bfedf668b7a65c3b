"""``vector-relay reconcile``: the version guard's recorded versions against the index (docs/ordering.md)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import spinner

if TYPE_CHECKING:
    from vector_relay.ingest.version_guard import VersionGuard
    from vector_relay.metrics import Metric
    from vector_relay.operations.reconcile import GuardPage

METRIC_SERVICE: Final = "reconcile"  # the dimension the scheduled function's metrics carry; the alarm watches it


@click.command()
@click.option("--namespace", "namespaces", multiple=True, metavar="NS", help="Only this namespace (repeatable).")
@click.option(
    "--repair",
    is_flag=True,
    help="Delete records that came back after a recorded delete (the one mismatch fixable without the data).",
)
@click.option(
    "--metric",
    is_flag=True,
    help="Publish the counts to CloudWatch (VectorRelay/ReconcileMismatches, service=reconcile), "
    "where ReconcileMismatchesAlarm watches them.",
)
@click.option(
    "--show",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Mismatches listed in the human output (--json lists all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def reconcile(ctx: Context, namespaces: tuple[str, ...], repair: bool, metric: bool, show: int, as_json: bool) -> None:
    """Compare the version guard's table with the index; report mismatches (and with --repair fix one kind).

    Kinds: missing (an upsert is recorded, the index lacks the record), behind (the index holds an
    older version), resurrected (a delete is recorded, the record is back), ahead (the index holds a
    newer version than recorded), unversioned (no _relay_version). Records still under a write's
    lease are skipped and counted as in flight. Exit 1 when a mismatch is left unrepaired.

    Only what the table records is checked: a warning names each tenant namespace whose index
    holds more records than the table knows (a table emptied or expired, writes around the relay).
    """
    from vector_relay.errors import VectorRelayError
    from vector_relay.keys.api_key_cache import read_api_key
    from vector_relay.operations.reconcile import Report, compare, metric_counts, metric_values
    from vector_relay.operations.reconcile_scan import guard_pages
    from vector_relay.pinecone.record_reader import RecordReader

    deployment = ctx.deployment()
    table = deployment.output("WriteVersionTableName")
    host = deployment.output("PineconeIndexHost")
    secret_arn = deployment.output("PineconeApiKeySecretArn")
    secrets = ctx.secrets()
    try:
        reader = RecordReader(host=host, read_key=lambda: read_api_key(secrets, secret_arn).value)
    except (ClientError, BotoCoreError, VectorRelayError) as error:
        raise CannotRun(f"cannot read the Pinecone API key from {secret_arn}: {error}") from None
    recorded: Counter[str] = Counter()  # upserts the table records, per namespace
    pages = _counting(guard_pages(ctx.dynamodb(), table, namespaces=namespaces or None), recorded)
    guard = _repair_guard(ctx, table) if repair else None
    progress = spinner("checked {task.fields[checked]:,} records ({task.fields[found]:,} mismatches)", quiet=as_json)
    task = progress.add_task("reconcile", total=None, checked=0, found=0)

    def on_page(report: Report) -> None:
        progress.update(task, checked=report.checked, found=len(report.mismatches))

    try:
        with progress:
            report = compare(pages, reader, now_ms=int(time.time() * 1000), repair=repair, guard=guard, on_page=on_page)
    except (ClientError, BotoCoreError, VectorRelayError) as error:
        raise CannotRun(f"reconcile stopped: {error}") from None
    finally:
        reader.close()

    values = metric_values(report)
    if metric:
        publish(ctx, metric_counts(report))
    unknown = _not_in_table(ctx, host, recorded, namespaces)
    if as_json:
        click.echo(_json(report, values, unknown))
    else:
        _print_human(report, values, show, repair)
        for namespace, (in_index, in_table) in sorted(unknown.items()):
            click.echo(
                f"warning: namespace {namespace} holds {in_index:,} records in the index, but the version guard's "
                f"table records {in_table:,}: at least {in_index - in_table:,} records were not checked. The table "
                "was emptied (a local stack restarted without its data?) or its items expired "
                "(WRITE_VERSION_TTL_SECONDS), or records were written around the relay"
            )
    if len(report.mismatches) > report.repaired:
        sys.exit(EXIT_FOUND)


def _counting(pages: Iterable[GuardPage], recorded: Counter[str]) -> Iterator[GuardPage]:
    """The pages as they are, counting the upserts the table records in each namespace on the way."""
    for page in pages:
        recorded.update(namespace for namespace, _, state in page.records if state.operation == "upsert")
        yield page


def _not_in_table(
    ctx: Context, host: str, recorded: Counter[str], namespaces: tuple[str, ...]
) -> dict[str, tuple[int, int]]:
    """Tenant namespaces whose index holds more records than the table records: namespace -> (index, table).

    A lower bound (Pinecone's counts may lag a few seconds behind writes); best effort: when the
    registry or the index cannot be read, the reconcile report stands on its own and a note says so.
    """
    from vector_relay.errors import ConfigurationError
    from vector_relay.pinecone.control_plane import NamespaceAdmin
    from vector_relay.pinecone.errors import PineconeRequestError
    from vector_relay.tenancy import TenantRegistry

    try:
        parameter, text = ctx.read_registry()
        registry = TenantRegistry.from_json(text, source=f"SSM parameter {parameter}")
        admin = NamespaceAdmin(host=host, api_key=ctx.api_key())
    except (CannotRun, ConfigurationError) as error:
        click.echo(f"note: records the table does not know were not looked for: {error}", err=True)
        return {}
    found: dict[str, tuple[int, int]] = {}
    try:
        for namespace in sorted(set(registry.values()) | set(recorded)):
            if namespaces and namespace not in namespaces:
                continue
            described = admin.describe(namespace)
            in_index = described.record_count if described is not None else 0
            if in_index > recorded[namespace]:
                found[namespace] = (in_index, recorded[namespace])
    except PineconeRequestError as error:
        click.echo(f"note: records the table does not know were not looked for: {error}", err=True)
    finally:
        admin.close()
    return found


def _repair_guard(ctx: Context, table: str) -> VersionGuard:
    """The version guard a repair holds its records through, with the workers' short DynamoDB client.

    The guard's claim lock relies on each call ending within its profile (vector_relay.aws_clients.GUARD_PROFILE).
    A repair keeps each item's own expiry, so the guard's TTL setting is not used.
    """
    import boto3

    from vector_relay.aws_clients import GUARD_CONFIG
    from vector_relay.ingest.version_guard import VersionGuard
    from vector_relay.settings import Settings

    try:
        dynamodb = boto3.client("dynamodb", region_name=ctx.region, config=GUARD_CONFIG)
    except Exception as error:  # no region, no credentials configuration, ...
        raise CannotRun(f"cannot make an AWS dynamodb client: {error}") from None
    ttl_seconds = Settings.model_fields["write_version_ttl_seconds"].default
    return VersionGuard(dynamodb, table, ttl_seconds=ttl_seconds)


def publish(ctx: Context, counts: dict[Metric, int]) -> None:
    from vector_relay.metrics import METRIC_NAMESPACE, metric_data

    try:
        ctx.cloudwatch().put_metric_data(
            Namespace=METRIC_NAMESPACE, MetricData=metric_data(counts, service=METRIC_SERVICE)
        )
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot publish the metrics: {error}") from None


def _json(report: Any, values: dict[str, int], unknown: dict[str, tuple[int, int]]) -> str:
    import json

    from vector_relay.operations.reconcile import MISMATCH_KINDS

    counts = report.counts()
    return json.dumps(
        {
            "checked": report.checked,
            "in_flight": report.in_flight,
            "repaired": report.repaired,
            "mismatches_total": values["ReconcileMismatches"],
            "counts": {kind: counts.get(kind, 0) for kind in MISMATCH_KINDS},
            "mismatches": [m.as_json() for m in report.mismatches],
            "not_in_table": {ns: {"index": index, "table": table} for ns, (index, table) in sorted(unknown.items())},
        },
        indent=2,
    )


def _print_human(report: Any, values: dict[str, int], show: int, repair: bool) -> None:
    out = Console(highlight=False)
    out.print(
        f"checked {report.checked:,} records; {report.in_flight:,} skipped (a write's lease is still live); "
        f"{values['ReconcileMismatches']:,} mismatches" + (f", {report.repaired:,} repaired" if repair else ""),
        soft_wrap=True,
    )
    if not report.mismatches:
        return
    counts = Table("kind", "records", title=None, box=None, pad_edge=False)
    for kind, count in sorted(report.counts().items()):
        counts.add_row(kind, f"{count:,}")
    out.print(counts)
    listed = Table("namespace", "id", "kind", "recorded", "in index", box=None, pad_edge=False)
    for m in report.mismatches[:show]:
        listed.add_row(
            m.namespace, m.record_id, m.kind, f"{m.recorded_operation} v{m.recorded_version}", m.found_version or "-"
        )
    if show:
        out.print(listed)
    if len(report.mismatches) > show:
        out.print(f"... and {len(report.mismatches) - show:,} more (--show N, or --json for all)", soft_wrap=True)
    if not repair and report.counts().get("resurrected"):
        out.print(
            "resurrected records can be deleted again with --repair; the other kinds need their data republished",
            soft_wrap=True,
        )
