"""``vector-relay dlq``: look into a dead-letter queue without consuming it, and redrive what is valid again.

Redrive is send-then-delete: a message is sent to its source queue first and deleted from the DLQ
only after SQS took it, so a crash in between leaves a duplicate (which the version guard makes
harmless), never a loss. Each message is judged with today's registry, schema and index first;
what is still poison stays where it is. Queries are never redriven: nobody waits for their answer.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import bar

QUEUES = {"ingest": ("IngestDeadLetterQueueUrl", "IngestQueueUrl"), "query": ("QueryDeadLetterQueueUrl", None)}
CRASH_AFTER_SENDS = "VECTOR_RELAY_REDRIVE_CRASH_AFTER_SENDS"  # a testing aid: die between a send and its delete


@click.group()
def dlq() -> None:
    """Inspect a dead-letter queue, and redrive what is valid now to its source queue."""


def _dlq_url(ctx: Context, queue: str, url: str | None) -> str:
    return url or ctx.deployment().output(QUEUES[queue][0])


@dlq.command()
@click.option("--queue", type=click.Choice(sorted(QUEUES)), default="ingest", show_default=True)
@click.option("--url", help="Another DLQ (a tenant's own), instead of --queue.")
@click.option("--samples", default=2, show_default=True, type=click.IntRange(min=0), help="Messages shown per code.")
@click.option("--max", "limit", type=click.IntRange(min=1), help="Read at most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def inspect(ctx: Context, queue: str, url: str | None, samples: int, limit: int | None, as_json: bool) -> None:
    """Counts by error_code, oldest and newest, samples with their reasons. Consumes nothing.

    Messages are read with a 60 s visibility timeout and made visible again when the scan ends;
    if the command dies, they come back by themselves after those 60 s.
    """
    from vector_relay.redrive import read_all, release

    sqs = ctx.sqs()
    dlq_url = _dlq_url(ctx, queue, url)
    try:
        letters = list(read_all(sqs, dlq_url, limit))
        release(sqs, dlq_url, letters)
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read {dlq_url}: {error}") from None
    by_code: dict[str, list[Any]] = {}
    for letter in letters:
        by_code.setdefault(letter.error_code or "(moved by SQS, no reason)", []).append(letter)
    report: dict[str, Any] = {
        "queue": dlq_url,
        "messages": len(letters),
        "oldest_ms": min((x.sent_at_ms for x in letters), default=None),
        "newest_ms": max((x.sent_at_ms for x in letters), default=None),
        "codes": {
            code: {
                "count": len(group),
                "samples": [
                    {"message_id": x.message_id, "error_detail": x.error_detail, "source_queue": x.source_queue}
                    for x in group[:samples]
                ],
            }
            for code, group in sorted(by_code.items(), key=lambda item: -len(item[1]))
        },
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{dlq_url}: {len(letters)} messages")
    for code, entry in report["codes"].items():
        click.echo(f"  {code:28} {entry['count']:6}")
        for sample in entry["samples"]:
            detail = " ".join(sample["error_detail"].split())[:140]
            click.echo(f"      {sample['message_id']}  {detail}")


@dlq.command()
@click.option("--queue", type=click.Choice(sorted(QUEUES)), default="ingest", show_default=True)
@click.option("--url", help="Another DLQ (a tenant's own), instead of --queue.")
@click.option("--target-url", help="Where messages without a known source queue go (default: the ingest queue).")
@click.option("--code", "codes", multiple=True, help="Only messages dead-lettered with this error_code (repeatable).")
@click.option("--max", "limit", type=click.IntRange(min=1), help="Look at most at this many messages.")
@click.option("--dry-run", is_flag=True, help="Judge and report; move nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def redrive(
    ctx: Context,
    queue: str,
    url: str | None,
    target_url: str | None,
    codes: tuple[str, ...],
    limit: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Send the messages that are valid today back to their source queue; the rest stay, with their new reason.

    Exit 1 when some of the selected messages are still poison.
    """
    from vector_relay.producer import Publisher
    from vector_relay.redrive import judge, read_all, release
    from vector_relay.worker import queue_url

    if queue == "query" and not url:
        raise CannotRun("queries are not redriven: whoever asked has stopped waiting; publish the question again")
    sqs = ctx.sqs()
    dlq_url = _dlq_url(ctx, queue, url)
    registry, shape = _today(ctx)
    default_target = target_url or ctx.deployment().output("IngestQueueUrl")
    try:
        letters = list(read_all(sqs, dlq_url, limit))
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read {dlq_url}: {error}") from None
    selected = [x for x in letters if not codes or x.error_code in codes]
    still: Counter[str] = Counter()
    movable: list[tuple[Any, str]] = []
    for letter in selected:
        verdict = judge(letter.body, letter.source_queue, registry, shape)
        if verdict is not None:
            still[verdict] += 1
        else:
            target = queue_url(sqs, letter.source_queue) if letter.source_queue else default_target
            movable.append((letter, target))
    moved: list[Any] = []
    failed = 0
    if not dry_run:
        crash_after = int(ctx.environment(CRASH_AFTER_SENDS) or 0)
        progress = bar("redrive", quiet=as_json)
        with progress:
            task = progress.add_task("redrive", total=len(movable))
            for letter, target in movable:
                sent = Publisher(target, sqs=sqs).publish_bodies([letter.body])
                if sent.failed:
                    failed += 1
                    continue
                if crash_after and len(moved) + 1 >= crash_after:
                    os._exit(75)  # the test's crash: sent, not yet deleted
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
                moved.append(letter)
                progress.advance(task)
    moved_ids = {x.message_id for x in moved}
    release(sqs, dlq_url, [x for x in letters if x.message_id not in moved_ids])
    report = {
        "queue": dlq_url,
        "looked_at": len(letters),
        "selected": len(selected),
        "valid_now": len(movable),
        "moved": len(moved),
        "failed_to_send": failed,
        "still_poison": dict(still),
        "dry_run": dry_run,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        verb = "would move" if dry_run else "moved"
        done = len(movable) if dry_run else len(moved)
        click.echo(f"{dlq_url}: looked at {len(letters)}, selected {len(selected)}; {verb} {done}")
        for code, count in still.most_common():
            click.echo(f"  still poison: {code:28} {count:6} (left in the DLQ)")
    if still or failed:
        raise SystemExit(EXIT_FOUND)


def _today(ctx: Context) -> tuple[Any, Any]:
    """Today's tenant registry and the index's shape (None when the deployment does not name the index)."""
    from vector_relay.pinecone_gateway import PineconeRequestError, describe_index_shape
    from vector_relay.tenancy import TenantRegistry

    parameter, text = ctx.read_registry()
    registry = TenantRegistry.from_json(text, source=f"SSM parameter {parameter}")
    name = ctx.deployment().outputs.get("PineconeIndexName")
    if not name:
        return registry, None
    try:
        shape = describe_index_shape(
            api_key=ctx.api_key(), name=name, control_host=ctx.environment("PINECONE_CONTROL_HOST") or None
        )
    except PineconeRequestError as error:
        raise CannotRun(f"cannot describe index {name}: {error}") from None
    return registry, shape
