"""What ``vector-relay top`` shows: one frame's data (:class:`Snapshot`, plain values) and its drawing.

:mod:`vector_relay_cli.top_command` gathers a snapshot from the deployment; :func:`render` draws it
with rich, so the drawing is tested from a hand-made snapshot, and :func:`snapshot_json` is what
``--once --json`` prints. A snapshot never holds a dead letter's body: only its id, code, reason and time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from vector_relay.metrics import UNREGISTERED_TENANT

# Tenants' rates: the sum over these last minutes, per minute; a queue's oldest-message age: its latest
# datapoint within them ("-" when there is none).
WINDOW_MINUTES = 5

# ---------------------------------------------------------------- the data of one frame


@dataclass(frozen=True, slots=True)
class QueueDepth:
    queue: str  # "ingest", "ingest DLQ", ...
    name: str  # the SQS queue name (CloudWatch's QueueName)
    visible: int
    in_flight: int
    delayed: int
    oldest_age_seconds: float | None  # CloudWatch's latest ApproximateAgeOfOldestMessage; None: no datapoint
    dead_letter: bool


@dataclass(frozen=True, slots=True)
class DeadLetterCounts:
    queue: str
    held: int  # visible + in flight + delayed, as GetQueueAttributes said before the read
    sampled: int  # messages read
    codes: tuple[tuple[str, int], ...]  # (error_code, count among those read), most first

    @property
    def partial(self) -> bool:
        """Fewer messages were read than the DLQ holds: the counts are a sample."""
        return self.sampled < self.held


@dataclass(frozen=True, slots=True)
class RecentError:
    queue: str
    message_id: str
    error_code: str  # UNNAMED_CODE for a message SQS's redrive policy moved
    reason: str  # the error_detail attribute, never the body
    sent_at_ms: int  # its SentTimestamp in the DLQ


@dataclass(frozen=True, slots=True)
class TenantRates:
    """A tenant's counts per minute over the window; None where CloudWatch has no datapoint."""

    tenant: str
    upserted: float | None
    deleted: float | None
    replies: float | None
    poison: float | None  # ingest and query together


@dataclass(frozen=True, slots=True)
class Snapshot:
    deployment: str
    taken_at_ms: int
    queues: tuple[QueueDepth, ...]
    dead_letters: tuple[DeadLetterCounts, ...]
    tenants: tuple[TenantRates, ...]
    recent_errors: tuple[RecentError, ...]  # newest first, of the messages read
    metrics_at_ms: int  # when the CloudWatch figures (ages, rates) were read
    rate_window_minutes: int = WINDOW_MINUTES
    problem: str = ""  # the live view's note when a refresh failed (the figures are the last ones read)


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """The frame's data as ``--once --json`` prints it."""
    return {
        "deployment": snapshot.deployment,
        "taken_at_ms": snapshot.taken_at_ms,
        "metrics_at_ms": snapshot.metrics_at_ms,
        "rate_window_minutes": snapshot.rate_window_minutes,
        "queues": [dataclasses.asdict(q) for q in snapshot.queues],
        "dead_letters": [
            {
                "queue": d.queue,
                "held": d.held,
                "sampled": d.sampled,
                "partial": d.partial,
                "codes": dict(d.codes),
            }
            for d in snapshot.dead_letters
        ],
        "tenants": [
            {
                "tenant": t.tenant,
                "per_minute": {
                    "records_upserted": t.upserted,
                    "records_deleted": t.deleted,
                    "query_replies": t.replies,
                    "poison_messages": t.poison,
                },
            }
            for t in snapshot.tenants
        ],
        "recent_errors": [
            {**dataclasses.asdict(e), "age_seconds": max(0, snapshot.taken_at_ms - e.sent_at_ms) // 1000}
            for e in snapshot.recent_errors
        ],
    }


# ---------------------------------------------------------------- drawing


def render(snapshot: Snapshot, *, live: bool = False) -> RenderableType:
    """The frame: a heading, then queues, dead letters by code, tenants' rates and the latest errors."""
    taken = clock_time(snapshot.taken_at_ms)
    heading = Text.assemble(
        ("vector-relay top", "bold"),
        f"  {_line(snapshot.deployment)}  {taken}",
        f"  (CloudWatch figures of {clock_time(snapshot.metrics_at_ms)})",
        ("  q quits" if live else "", "dim"),
    )
    parts: list[RenderableType] = [heading]
    if snapshot.problem:
        parts.append(Text(_line(snapshot.problem), style="bold red"))
    parts += [
        _queues_table(snapshot),
        _dead_letters_table(snapshot),
        _tenants_table(snapshot),
        _errors_table(snapshot),
    ]
    return Group(*parts)


def _queues_table(snapshot: Snapshot) -> Table:
    table = Table(title="Queues", title_justify="left", box=box.SIMPLE_HEAD, expand=False)
    table.add_column("queue")
    table.add_column("name", overflow="fold")
    for heading in ("visible", "in flight", "delayed", "oldest"):
        table.add_column(heading, justify="right")
    for q in snapshot.queues:
        alarming = q.dead_letter and q.visible + q.in_flight + q.delayed > 0
        table.add_row(
            q.queue,
            _plain(q.name),
            f"{q.visible:,}",
            f"{q.in_flight:,}",
            f"{q.delayed:,}",
            "-" if q.oldest_age_seconds is None else _age(q.oldest_age_seconds),
            style="red" if alarming else None,
        )
    return table


def _dead_letters_table(snapshot: Snapshot) -> Table:
    table = Table(title="Dead letters by error_code", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("queue")
    table.add_column("error_code")
    table.add_column("count", justify="right")
    table.add_column("of", style="dim")
    for d in snapshot.dead_letters:
        if not d.held and not d.sampled:
            table.add_row(d.queue, Text("empty", style="dim"), "0", "")
            continue
        note = f"sampled {d.sampled:,} of {d.held:,}" if d.partial else f"all {d.sampled:,}"
        for i, (code, count) in enumerate(d.codes or (("(none read)", 0),)):
            table.add_row(d.queue if i == 0 else "", _plain(code), f"{count:,}", note if i == 0 else "")
    return table


def _tenants_table(snapshot: Snapshot) -> Table:
    table = Table(
        title=f"Tenants, per minute over the last {snapshot.rate_window_minutes} minutes",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("tenant")
    for heading in ("upserted", "deleted", "query replies", "poison"):
        table.add_column(heading, justify="right")
    for t in snapshot.tenants:
        table.add_row(
            Text("- (not registered)") if t.tenant == UNREGISTERED_TENANT else _plain(t.tenant),
            _rate(t.upserted),
            _rate(t.deleted),
            _rate(t.replies),
            _rate(t.poison),
            style="red" if t.poison else None,
        )
    return table


def _errors_table(snapshot: Snapshot) -> Table:
    table = Table(title="Latest dead letters (of those read)", title_justify="left", box=box.SIMPLE_HEAD, expand=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("queue", no_wrap=True)
    table.add_column("error_code", no_wrap=True)
    table.add_column("message id", style="dim", no_wrap=True)
    table.add_column("reason", overflow="ellipsis", no_wrap=True, ratio=1, min_width=20)
    for e in snapshot.recent_errors:
        table.add_row(
            _age(max(0, snapshot.taken_at_ms - e.sent_at_ms) / 1000),
            e.queue,
            _plain(e.error_code),
            _plain(e.message_id),
            _plain(e.reason),
        )
    return table


def _plain(text: str) -> Text:
    """``text`` as a cell taken literally: no rich markup (a reason may quote what a producer sent)."""
    return Text(_line(text))


def _line(text: str) -> str:
    """``text`` as one line of printable characters: no terminal control sequence gets through."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 120 * 60:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def clock_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%H:%M:%SZ")
