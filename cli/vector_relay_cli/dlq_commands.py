"""``vector-relay dlq``: look into a dead-letter queue without consuming it, and redrive what is valid again.

Redrive is send-then-delete: a message is sent to its source queue first and deleted from the DLQ
only after SQS took it, so a crash in between leaves a duplicate (which the version guard makes
harmless), never a loss. The source queue is one SQS names as the DLQ's source
(``ListDeadLetterSourceQueues``), never one a message names on its own. Each message is judged
with today's registry, schema and index, and its tenant binding against the queue it will be sent
to; what is still poison stays where it is. Queries are never redriven: nobody waits for their answer.

Purge deletes what an operator selected (by ``error_code``, by age) after showing the counts and
asking; only the messages counted are deleted, never one that arrived while the question was open.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import bar

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from vector_relay.operations.redrive import DeadLetter, SourceQueue

QUEUES = {"ingest": ("IngestDeadLetterQueueUrl", "IngestQueueUrl"), "query": ("QueryDeadLetterQueueUrl", None)}
CRASH_AFTER_SENDS = "VECTOR_RELAY_REDRIVE_CRASH_AFTER_SENDS"  # a testing aid: die between a send and its delete
PURGE_NOW_MS = "VECTOR_RELAY_PURGE_NOW_MS"  # a testing aid: the clock --older-than is measured by (epoch ms)


@click.group()
def dlq() -> None:
    """Inspect a dead-letter queue, redrive what is valid now to its source queue, purge what is not wanted."""


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
    from vector_relay.operations.redrive import read_all, release

    sqs = ctx.sqs()
    dlq_url = _dlq_url(ctx, queue, url)
    try:
        letters = list(read_all(sqs, dlq_url, limit))
        release(sqs, dlq_url, letters)
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read {dlq_url}: {error}") from None
    by_code: dict[str, list[Any]] = {}
    for letter in letters:
        by_code.setdefault(_code_name(letter.error_code), []).append(letter)
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
@click.option(
    "--target-url",
    help="For a DLQ with several source queues: the one of them that messages naming no source queue go to.",
)
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

    The source queue is the DLQ's, as SQS lists it; when the DLQ has several, the one the message
    names (a message naming none of them stays). Exit 1 when some selected messages stay.
    """
    from vector_relay.operations.redrive import (
        held_by_another_reader,
        judge,
        read_all,
        redrive_target,
        release,
        send_back,
    )

    if queue == "query" and not url:
        raise CannotRun("queries are not redriven: whoever asked has stopped waiting; publish the question again")
    sqs = ctx.sqs()
    dlq_url = _dlq_url(ctx, queue, url)
    sources, unnamed = _source_queues(sqs, dlq_url, target_url)
    registry, shape = _today(ctx)
    try:
        letters = list(read_all(sqs, dlq_url, limit))
        # Messages another reader had hidden (`vector-relay top`, `dlq inspect`) were not seen by this scan.
        held = held_by_another_reader(sqs, dlq_url, len(letters)) if limit is None else 0
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read {dlq_url}: {error}") from None
    selected = [x for x in letters if not codes or x.error_code in codes]
    still: Counter[str] = Counter()
    no_source = 0
    movable: list[tuple[DeadLetter, SourceQueue]] = []
    for letter in selected:
        target = redrive_target(letter, sources, unnamed)
        if target is None:
            no_source += 1
            continue
        verdict = judge(letter.body, target.arn, registry, shape)
        if verdict is not None:
            still[verdict] += 1
        else:
            movable.append((letter, target))
    moved: list[Any] = []
    failed = 0
    if not dry_run:
        crash_after = int(ctx.environment(CRASH_AFTER_SENDS) or 0)
        progress = bar("redrive", quiet=as_json)
        with progress:
            task = progress.add_task("redrive", total=len(movable))
            for letter, destination in movable:
                try:
                    send_back(sqs, destination.url, letter)
                except (ClientError, BotoCoreError) as error:
                    click.echo(f"could not send {letter.message_id} back (it stays): {error}", err=True)
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
        "no_source_queue": no_source,
        "held_by_another_reader": held,
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
        if no_source:
            click.echo(
                f"  no source queue: {no_source} (left in the DLQ: they name none of its source queues"
                f" {', '.join(q.arn for q in sources)}; --target-url picks one for messages that name none)"
            )
        if held:
            click.echo(
                f"  held by another reader: about {held} (not looked at: hidden by `vector-relay top` or `dlq"
                " inspect` while this ran; left in the DLQ, run redrive again)"
            )
    if still or failed or no_source or held:
        raise SystemExit(EXIT_FOUND)


@dlq.command()
@click.option("--queue", type=click.Choice(sorted(QUEUES)), default="ingest", show_default=True)
@click.option("--url", help="Another DLQ (a tenant's own), instead of --queue.")
@click.option(
    "--code",
    "codes",
    multiple=True,
    help="Only messages dead-lettered with this error_code (repeatable; '' for those SQS moved without one).",
)
@click.option(
    "--older-than",
    metavar="AGE",
    help="Only messages in the DLQ at least this long: 90s, 30m, 12h, 7d.",
)
@click.option("--max", "limit", type=click.IntRange(min=1), help="Look at most at this many messages.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def purge(
    ctx: Context,
    queue: str,
    url: str | None,
    codes: tuple[str, ...],
    older_than: str | None,
    limit: int | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete the selected messages for good, after saying how many of which codes and asking.

    With neither --code nor --older-than, every message is selected. The DLQ is read as inspect
    reads it (nothing is hidden while you answer); after a yes only the messages counted are
    deleted, never one that arrived since. Exit 1 when you answer no (nothing is deleted) or some
    deletes failed; 2 when stdin is not a terminal and --yes is not given.
    """
    from vector_relay.operations.redrive import read_all, release

    min_age_ms = _age_ms(older_than) if older_than is not None else None
    dlq_url = _dlq_url(ctx, queue, url)
    sqs = ctx.sqs()
    now_ms = int(ctx.environment(PURGE_NOW_MS) or time.time() * 1000)

    def selected_from(letters: list[DeadLetter]) -> list[DeadLetter]:
        return [
            x
            for x in letters
            if (not codes or x.error_code in codes) and (min_age_ms is None or now_ms - x.sent_at_ms >= min_age_ms)
        ]

    try:
        letters = list(read_all(sqs, dlq_url, limit))
        release(sqs, dlq_url, letters)
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read {dlq_url}: {error}") from None
    chosen = selected_from(letters)
    by_code = Counter(_code_name(x.error_code) for x in chosen)
    listing = ", ".join(f"{code} {count}" for code, count in by_code.most_common())
    if chosen and not yes:
        if not sys.stdin.isatty():
            raise CannotRun(
                f"purge would delete {len(chosen)} messages from {dlq_url} ({listing}); without a terminal to ask "
                "on, give --yes to delete them (nothing was deleted)"
            )
        click.echo(f"{dlq_url}: {len(chosen)} of {len(letters)} messages selected: {listing}", err=True)
        if not click.confirm(f"Delete these {len(chosen)} messages for good?", default=False, err=True):
            click.echo("nothing was deleted", err=True)
            raise SystemExit(EXIT_FOUND)
    deleted: Counter[str] = Counter()
    failed = 0
    confirmed = {x.message_id for x in chosen}
    if confirmed:
        try:  # read again, all of it (--max could miss a counted one): the first read's receipts may be stale
            again = list(read_all(sqs, dlq_url))
        except (ClientError, BotoCoreError) as error:
            raise CannotRun(f"cannot read {dlq_url}: {error}; nothing was deleted") from None
        doomed = [x for x in again if x.message_id in confirmed]
        kept = [x for x in again if x.message_id not in confirmed]
        for letter in doomed:
            try:
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=letter.receipt_handle)
            except (ClientError, BotoCoreError) as error:
                click.echo(f"could not delete {letter.message_id} (it stays): {error}", err=True)
                failed += 1
                kept.append(letter)
                continue
            deleted[_code_name(letter.error_code)] += 1
        release(sqs, dlq_url, kept)
    gone = len(confirmed) - sum(deleted.values()) - failed  # taken by someone else since the count
    report = {
        "queue": dlq_url,
        "looked_at": len(letters),
        "selected": dict(by_code),
        "deleted": dict(deleted),
        "already_gone": gone,
        "failed": failed,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        done = ", ".join(f"{code} {count}" for code, count in deleted.most_common()) or "nothing"
        click.echo(f"{dlq_url}: looked at {len(letters)}; deleted {sum(deleted.values())} ({done})")
        if gone:
            click.echo(f"  {gone} selected messages were gone before the delete (redriven or deleted meanwhile)")
    if failed:
        raise SystemExit(EXIT_FOUND)


UNNAMED_CODE = "(moved by SQS, no reason)"


def _code_name(code: str) -> str:
    return code or UNNAMED_CODE


def _age_ms(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``7d`` in milliseconds."""
    unit = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}.get(text[-1:])
    if unit is None or not text[:-1].isdigit():
        raise click.BadParameter(
            f"{text!r}: a whole number and a unit, s m h or d (90s, 30m, 12h, 7d)", param_hint="--older-than"
        )
    return int(text[:-1]) * unit


def _source_queues(
    sqs: SQSClient, dlq_url: str, target_url: str | None
) -> tuple[list[SourceQueue], SourceQueue | None]:
    """The DLQ's source queues as SQS lists them, and the one ``--target-url`` names (which must be one of them)."""
    from vector_relay.operations.redrive import queue_arn, source_queues

    try:
        sources = source_queues(sqs, dlq_url)
        target_arn = queue_arn(sqs, target_url) if target_url else None
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot list the source queues of {dlq_url}: {error}") from None
    if not sources:
        raise CannotRun(
            f"no queue's redrive policy names {dlq_url} (ListDeadLetterSourceQueues): there is nowhere to redrive to"
        )
    unnamed = next((q for q in sources if q.arn == target_arn), None)
    if target_url and unnamed is None:
        raise CannotRun(
            f"--target-url {target_url} is not a source queue of {dlq_url}; its source queues are "
            + ", ".join(q.url for q in sources)
        )
    return sources, unnamed


def _today(ctx: Context) -> tuple[Any, Any]:
    """Today's tenant registry and the index's shape (None when the deployment does not name the index)."""
    from vector_relay.errors import ConfigurationError
    from vector_relay.pinecone.control_plane import describe_index_shape
    from vector_relay.pinecone.errors import PineconeRequestError
    from vector_relay.tenancy import TenantRegistry

    parameter, text = ctx.read_registry()
    try:
        registry = TenantRegistry.from_json(text, source=f"SSM parameter {parameter}")
    except ConfigurationError as error:  # nothing can be judged against it: the workers refuse everything too
        raise CannotRun(f"{error}; nothing was moved") from None
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
