"""``vector-relay receipts``: what became of the messages a producer sent, from the tenant's receipt queue.

The relay sends one write receipt per ingest message to the queue the tenant's registry entry names
(``receipts``); ``receipts wait`` reads it with the producer library's reader
(``vector_relay.producer.ReceiptReader``): the receipts of the given message ids are printed as
JSON lines (the bodies as the relay sent them) and deleted, every other message on the queue is
made visible again at once, and a copy of a receipt already printed is deleted without printing it
again. The lines are what ``vector-relay query --after-receipts FILE`` reads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun

if TYPE_CHECKING:
    from vector_relay.contract.receipts import Receipt

DEFAULT_TIMEOUT_SECONDS = 60.0


@click.group()
def receipts() -> None:
    """Wait for the write receipts of messages sent to the relay (docs/producer.md)."""


@receipts.command()
@click.argument("message_ids", nargs=-1)
@click.option("--queue", "queue_url", metavar="URL", help="The tenant's receipt queue.")
@click.option("--tenant", help="Instead of --queue: the receipt queue the tenant's registry entry names.")
@click.option(
    "--ids-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Message ids, one a line (as `load --message-ids` writes them; '-': stdin), besides any given as arguments.",
)
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for every receipt.",
)
@click.pass_obj
def wait(
    ctx: Context,
    message_ids: tuple[str, ...],
    queue_url: str | None,
    tenant: str | None,
    ids_file: Path | None,
    timeout: float,
) -> None:
    """Print the receipts of MESSAGE_IDs (SendMessage's ids) as JSON lines, once each, as they are read.

    Exit 0 when every message has a receipt; 1 when one's latest receipt says it was dead-lettered
    (its error code is printed on stderr; a redrive may still apply it); 2 when a receipt did not
    come within --timeout (the missing ids are named; the receipts that came are printed).
    """
    from vector_relay.producer import ReceiptReader

    wanted = list(message_ids) + (_read_ids(ids_file) if ids_file is not None else [])
    if not wanted:
        raise click.UsageError("give the message ids to wait for (arguments, or --ids-file)")
    url = _queue(ctx, queue_url, tenant)
    try:
        found = ReceiptReader(ctx.sqs(), url).wait(wanted, timeout=timeout)
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read receipts from {url}: {error}") from None
    for receipt in found.receipts:
        click.echo(receipt.body())
    dead = [latest for m in dict.fromkeys(wanted) if (latest := found.latest(m)) and latest.fate == "dead_lettered"]
    for receipt in dead:
        click.echo(
            f"message {receipt.message_id} was dead-lettered: {receipt.error_code} "
            "(vector-relay dlq inspect; once fixed, a redrive sends an applied receipt)",
            err=True,
        )
    if found.missing:
        raise CannotRun(
            f"no receipt within {timeout:g} s for {len(found.missing)} of {len(dict.fromkeys(wanted))} messages: "
            f"{', '.join(found.missing)}. Is the ingest worker running (make status)? A receipt comes once a "
            f"message's fate is final; is {url} the queue the tenant's registry entry names (receipts)?"
        )
    if dead:
        raise SystemExit(EXIT_FOUND)


def _queue(ctx: Context, queue_url: str | None, tenant: str | None) -> str:
    if (queue_url is None) == (tenant is None):
        raise click.UsageError("give exactly one of --queue and --tenant")
    if queue_url is not None:
        return queue_url
    registry = ctx.tenant_registry()
    if tenant not in registry:
        raise CannotRun(f"tenant {tenant!r} is not in the tenant registry ({', '.join(sorted(registry)) or 'none'})")
    url = registry.receipts_for(str(tenant))
    if url is None:
        raise CannotRun(
            f"tenant {tenant!r} has no receipt queue: its registry entry names none (receipts), so the relay sends "
            "it no receipts"
        )
    return url


def _read_ids(path: Path) -> list[str]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        raise CannotRun(f"cannot read --ids-file {path}: {error.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_receipts(path: Path, option: str) -> list[Receipt]:
    """The receipts of a JSON-lines file as ``receipts wait`` prints them; exit 2 naming a line that is none."""
    from pydantic import ValidationError

    from vector_relay.contract.receipts import Receipt

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as error:
        raise CannotRun(f"cannot read {option} {path}: {error.strerror}") from None
    found: list[Receipt] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append(Receipt.model_validate_json(line))
        except ValidationError as error:
            reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'receipt'}: {e['msg']}" for e in error.errors())
            raise CannotRun(
                f"line {number} of {option} {path} is not a write receipt (as `receipts wait` prints): {reasons}"
            ) from None
    return found
