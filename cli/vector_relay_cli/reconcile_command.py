"""``vector-relay reconcile``: the version guard's recorded versions against the index (docs/ordering.md)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import spinner

if TYPE_CHECKING:
    from vector_relay.version_guard import VersionGuard

METRIC_SERVICE = "reconcile"  # the dimension the scheduled function's metrics carry; the alarm watches it


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
    """
    from vector_relay.api_key_cache import read_api_key
    from vector_relay.errors import VectorRelayError
    from vector_relay.pinecone_gateway import RecordReader
    from vector_relay.reconcile import Report, compare, guard_pages, metric_values

    deployment = ctx.deployment()
    table = deployment.output("WriteVersionTableName")
    host = deployment.output("PineconeIndexHost")
    secret_arn = deployment.output("PineconeApiKeySecretArn")
    secrets = ctx.secrets()
    try:
        reader = RecordReader(host=host, read_key=lambda: read_api_key(secrets, secret_arn).value)
    except (ClientError, BotoCoreError, VectorRelayError) as error:
        raise CannotRun(f"cannot read the Pinecone API key from {secret_arn}: {error}") from None
    pages = guard_pages(ctx.dynamodb(), table, namespaces=namespaces or None)
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
        publish(ctx, values)
    if as_json:
        click.echo(_json(report, values))
    else:
        _print_human(report, values, show, repair)
    if len(report.mismatches) > report.repaired:
        sys.exit(EXIT_FOUND)


def _repair_guard(ctx: Context, table: str) -> VersionGuard:
    """The version guard a repair holds its records through, with the workers' short DynamoDB client.

    The guard's claim lock relies on each call ending within its profile (vector_relay.clients.GUARD_PROFILE).
    A repair keeps each item's own expiry, so the guard's TTL setting is not used.
    """
    import boto3

    from vector_relay.clients import GUARD_CONFIG
    from vector_relay.settings import Settings
    from vector_relay.version_guard import VersionGuard

    try:
        dynamodb = boto3.client("dynamodb", region_name=ctx.region, config=GUARD_CONFIG)
    except Exception as error:  # no region, no credentials configuration, ...
        raise CannotRun(f"cannot make an AWS dynamodb client: {error}") from None
    ttl_seconds = Settings.model_fields["write_version_ttl_seconds"].default
    return VersionGuard(dynamodb, table, ttl_seconds=ttl_seconds)


def publish(ctx: Context, values: dict[str, int]) -> None:
    from vector_relay.observability import METRIC_NAMESPACE

    data: Any = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "service", "Value": METRIC_SERVICE}],
            "Value": float(value),
            "Unit": "Count",
        }
        for name, value in values.items()
    ]
    try:
        ctx.cloudwatch().put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=data)
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot publish the metrics: {error}") from None


def _json(report: Any, values: dict[str, int]) -> str:
    import json

    from vector_relay.reconcile import MISMATCH_KINDS

    counts = report.counts()
    return json.dumps(
        {
            "checked": report.checked,
            "in_flight": report.in_flight,
            "repaired": report.repaired,
            "mismatches_total": values["ReconcileMismatches"],
            "counts": {kind: counts.get(kind, 0) for kind in MISMATCH_KINDS},
            "mismatches": [m.as_json() for m in report.mismatches],
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
