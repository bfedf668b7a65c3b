"""``vector-relay top``: a live view of one deployment's queues, dead letters, tenants and latest errors.

Gathering and drawing are apart: a :class:`Watcher` reads the deployment into a snapshot (plain
values, no clients), and :mod:`vector_relay_cli.top_view` draws it with rich (tested from a
hand-made snapshot); ``--once --json`` prints the same data.

What is read, and how often (each refresh is ``--interval`` seconds):

* every refresh: ``GetQueueAttributes`` of each queue the stack outputs name (visible, in flight,
  delayed);
* when a DLQ's count changed, or a minute passed: up to ``--max`` of its messages, read as ``dlq
  inspect`` reads them (``vector_relay.operations.redrive``: received with a visibility timeout,
  made visible again at once, never deleted), to count them by ``error_code`` and name the latest;
* once a minute (CloudWatch keeps these per minute; asking more often returns the same numbers and
  costs the same): ``GetMetricData`` for each queue's ``AWS/SQS ApproximateAgeOfOldestMessage`` and
  each registered tenant's ``VectorRelay`` counts (and the dead letters counted under tenant ``-``),
  one query per tenant, metric and service (no ``SEARCH``), at most 500 queries a request.

A dead letter's body (vectors, metadata) is never kept, shown or printed: only its id, code, reason
and time.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.live import Live

from vector_relay.metrics import UNREGISTERED_TENANT
from vector_relay_cli.context import Context
from vector_relay_cli.dlq_commands import UNNAMED_CODE
from vector_relay_cli.errors import CannotRun
from vector_relay_cli.top_view import (
    WINDOW_MINUTES,
    DeadLetterCounts,
    QueueDepth,
    RecentError,
    Snapshot,
    TenantRates,
    clock_time,
    render,
    snapshot_json,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef
    from mypy_boto3_sqs import SQSClient

DEFAULT_INTERVAL_SECONDS = 2.0
DEFAULT_SAMPLED = 100  # dead letters read per DLQ to count by code (ten ReceiveMessage calls)
METRICS_EVERY_SECONDS = 60.0  # CloudWatch figures are per minute
DEAD_LETTERS_EVERY_SECONDS = 60.0  # a DLQ whose count did not change is read again after this long
RECENT_ERRORS = 8  # rows of the last-errors panel
GET_METRIC_DATA_MAX_QUERIES = 500  # CloudWatch's limit of MetricDataQueries in one GetMetricData request

# The queues a deployment's stack outputs name: (what the view calls it, output, is it a DLQ).
QUEUE_OUTPUTS = (
    ("ingest", "IngestQueueUrl", False),
    ("ingest DLQ", "IngestDeadLetterQueueUrl", True),
    ("query", "QueryQueueUrl", False),
    ("query DLQ", "QueryDeadLetterQueueUrl", True),
    ("receipt retry", "ReceiptRetryQueueUrl", False),
    ("receipt retry DLQ", "ReceiptRetryDeadLetterQueueUrl", True),
)


# ---------------------------------------------------------------- gathering


@dataclass(frozen=True, slots=True)
class WatchedQueue:
    queue: str
    url: str
    dead_letter: bool


def deployment_queues(outputs: Mapping[str, str]) -> list[WatchedQueue]:
    """The queues the stack outputs name, in the view's order (an output a stack lacks is left out)."""
    return [WatchedQueue(label, outputs[key], dlq) for label, key, dlq in QUEUE_OUTPUTS if outputs.get(key)]


@dataclass(frozen=True, slots=True)
class _Letter:
    """What is kept of a dead letter read: no body."""

    message_id: str
    error_code: str
    reason: str
    sent_at_ms: int


@dataclass(frozen=True, slots=True)
class _Sample:
    held: int
    read_at: float
    letters: tuple[_Letter, ...]


@dataclass(frozen=True, slots=True)
class _Figures:
    read_at: float
    ages: Mapping[str, float]  # by queue name
    tenants: tuple[TenantRates, ...]


class Watcher:
    """Reads one deployment into :class:`Snapshot`\\ s; remembers what need not be read at every refresh."""

    def __init__(
        self,
        *,
        deployment: str,
        sqs: SQSClient,
        cloudwatch: CloudWatchClient,
        queues: Sequence[WatchedQueue],
        tenants: Callable[[], Sequence[str]],
        max_sampled: int = DEFAULT_SAMPLED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._deployment = deployment
        self._sqs = sqs
        self._cloudwatch = cloudwatch
        self._queues = list(queues)
        self._tenants = tenants
        self._max_sampled = max_sampled
        self._clock = clock
        self._samples: dict[str, _Sample] = {}  # by DLQ url
        self._figures: _Figures | None = None

    def snapshot(self) -> Snapshot:
        now = self._clock()
        depths = [self._depth(q) for q in self._queues]
        if self._figures is None or now - self._figures.read_at >= METRICS_EVERY_SECONDS:
            self._figures = self._read_figures(now, [d.name for d in depths])
        ages = self._figures.ages
        depths = [dataclasses.replace(d, oldest_age_seconds=ages.get(d.name)) for d in depths]
        dead_letters: list[DeadLetterCounts] = []
        recent: list[RecentError] = []
        for queue, depth in zip(self._queues, depths, strict=True):
            if not queue.dead_letter:
                continue
            sample = self._sample(queue.url, depth.visible + depth.in_flight + depth.delayed, now)
            codes = Counter(x.error_code for x in sample.letters)
            dead_letters.append(
                DeadLetterCounts(queue.queue, sample.held, len(sample.letters), tuple(codes.most_common()))
            )
            recent += [
                RecentError(queue.queue, x.message_id, x.error_code, x.reason, x.sent_at_ms) for x in sample.letters
            ]
        recent.sort(key=lambda e: (-e.sent_at_ms, e.message_id))
        return Snapshot(
            deployment=self._deployment,
            taken_at_ms=int(now * 1000),
            queues=tuple(depths),
            dead_letters=tuple(dead_letters),
            tenants=self._figures.tenants,
            recent_errors=tuple(recent[:RECENT_ERRORS]),
            metrics_at_ms=int(self._figures.read_at * 1000),
        )

    def _depth(self, queue: WatchedQueue) -> QueueDepth:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=[
                "QueueArn",
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return QueueDepth(
            queue=queue.queue,
            name=attributes.get("QueueArn", queue.url).rsplit(":", 1)[-1].rsplit("/", 1)[-1],
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            oldest_age_seconds=None,
            dead_letter=queue.dead_letter,
        )

    def _sample(self, url: str, held: int, now: float) -> _Sample:
        """The DLQ's messages as last read; read again when its count changed or a minute passed.

        Reading a message raises its ApproximateReceiveCount. For these DLQs that changes nothing: a
        DLQ has no redrive policy of its own (template.yaml), so no receive count moves a message
        anywhere, and a redrive sends a new message (its count starts again) judged by the body and
        the error attributes the worker wrote, never by the count. What a read does change, for the
        moment it lasts, is visibility: a ``dlq redrive`` or ``purge`` running at that instant does not
        see the messages being read (as with two ``dlq inspect``); hence reads only when needed, and
        the release at once.
        """
        previous = self._samples.get(url)
        if previous is not None and previous.held == held and now - previous.read_at < DEAD_LETTERS_EVERY_SECONDS:
            return previous
        letters = _peek(self._sqs, url, self._max_sampled) if held else ()
        self._samples[url] = sample = _Sample(held, now, letters)
        return sample

    def _read_figures(self, now: float, queue_names: Sequence[str]) -> _Figures:
        from vector_relay.metrics import (
            METRIC_NAMESPACE,
            POISON_MESSAGES,
            QUERY_REPLIES,
            RECORDS_DELETED,
            RECORDS_UPSERTED,
        )

        tenants = sorted(self._tenants())
        end = datetime.fromtimestamp(now, UTC)
        queries: list[MetricDataQueryTypeDef] = []
        ages: dict[str, str] = {}  # query id: queue name
        for i, name in enumerate(dict.fromkeys(queue_names)):
            ages[f"age{i}"] = name
            queries.append(
                _query(f"age{i}", "AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": name}, "Maximum")
            )
        columns = {"upserted": RECORDS_UPSERTED, "deleted": RECORDS_DELETED, "replies": QUERY_REPLIES}
        columns |= {"poison": POISON_MESSAGES}
        wanted = [(tenant, list(columns)) for tenant in tenants]
        if UNREGISTERED_TENANT not in tenants:  # dead letters whose tenant is not in the registry
            wanted.append((UNREGISTERED_TENANT, ["poison"]))
        counts: dict[str, tuple[str, str]] = {}  # query id: (tenant, column)
        for t, (tenant, tenant_columns) in enumerate(wanted):
            for column in tenant_columns:
                for service in columns[column].emitted_by:
                    query_id = f"t{t}_{column}_{service}"
                    counts[query_id] = (tenant, column)
                    dimensions = {"tenant": tenant, "service": service}
                    queries.append(_query(query_id, METRIC_NAMESPACE, columns[column].name, dimensions, "Sum"))
        values = _metric_values(self._cloudwatch, queries, end - timedelta(minutes=WINDOW_MINUTES), end)
        latest_age = {name: values[query_id][0] for query_id, name in ages.items() if values.get(query_id)}
        sums: dict[str, dict[str, float]] = {tenant: {} for tenant, _ in wanted}
        for query_id, (tenant, column) in counts.items():
            if values.get(query_id):
                sums[tenant][column] = sums[tenant].get(column, 0.0) + sum(values[query_id])
        rates = [
            TenantRates(tenant, *(_per_minute(sums[tenant], column) for column in columns))
            for tenant, _ in wanted
            if tenant != UNREGISTERED_TENANT or sums[tenant]  # its row only when such dead letters were counted
        ]
        return _Figures(now, latest_age, tuple(rates))


def _per_minute(sums: Mapping[str, float], column: str) -> float | None:
    return sums[column] / WINDOW_MINUTES if column in sums else None


def _query(
    query_id: str, namespace: str, name: str, dimensions: Mapping[str, str], stat: str
) -> MetricDataQueryTypeDef:
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
            },
            "Period": 60,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _metric_values(
    cloudwatch: CloudWatchClient, queries: Sequence[MetricDataQueryTypeDef], start: datetime, end: datetime
) -> dict[str, list[float]]:
    """Each query's values, newest first (one GetMetricData request per 500 queries, and its further pages)."""
    values: dict[str, list[float]] = {}
    paginator = cloudwatch.get_paginator("get_metric_data")
    for chunk in itertools.batched(queries, GET_METRIC_DATA_MAX_QUERIES, strict=False):
        pages = paginator.paginate(
            MetricDataQueries=list(chunk), StartTime=start, EndTime=end, ScanBy="TimestampDescending"
        )
        for page in pages:
            for result in page.get("MetricDataResults", []):
                values.setdefault(result["Id"], []).extend(result.get("Values", []))
    return values


def _peek(sqs: SQSClient, url: str, limit: int) -> tuple[_Letter, ...]:
    """Up to ``limit`` of the DLQ's messages as ``dlq inspect`` reads them, made visible again at once (also when
    the read is interrupted); only their ids, codes, reasons and times are kept."""
    from vector_relay.operations.redrive import DeadLetter, read_all, release

    read: list[DeadLetter] = []
    try:
        read.extend(read_all(sqs, url, limit))
    finally:
        release(sqs, url, read)
    return tuple(_Letter(x.message_id, x.error_code or UNNAMED_CODE, x.error_detail, x.sent_at_ms) for x in read)


# ---------------------------------------------------------------- the command


@click.command()
@click.option(
    "--interval",
    metavar="SECONDS",
    default=DEFAULT_INTERVAL_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="Seconds between refreshes of the queues' figures (CloudWatch's are read once a minute).",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (no live view; for scripts).")
@click.option(
    "--max",
    "limit",
    metavar="N",
    default=DEFAULT_SAMPLED,
    show_default=True,
    type=click.IntRange(min=1),
    help="Dead letters read per DLQ to count by code; a DLQ holding more is shown as sampled.",
)
@click.option("--json", "as_json", is_flag=True, help="With --once: the frame's data as one JSON document.")
@click.pass_obj
def top(ctx: Context, interval: float, once: bool, limit: int, as_json: bool) -> None:
    """Queues (depth, in flight, delayed, oldest age), DLQs by error_code, tenants' rates, the latest errors.

    Live until q (or Ctrl-C); --once prints one frame and exits 0 (2 when it cannot run). Consumes
    nothing: dead letters are read as `dlq inspect` reads them and made visible again at once.
    """
    if as_json and not once:
        raise click.UsageError("--json prints one frame: give --once too")
    console = Console()
    if not once and not console.is_terminal:
        raise click.UsageError("the live view needs a terminal: give --once to print one frame")
    deployment = ctx.deployment()
    queues = deployment_queues(deployment.outputs)
    if not queues:
        raise CannotRun(
            f"{deployment.source} names none of the relay's queues ({', '.join(k for _, k, _ in QUEUE_OUTPUTS)})"
        )
    watcher = Watcher(
        deployment=deployment.source,
        sqs=ctx.sqs(),
        cloudwatch=ctx.cloudwatch(),
        queues=queues,
        tenants=lambda: list(ctx.tenant_registry()),
        max_sampled=limit,
    )
    if once:
        snapshot = watcher.snapshot()
        if as_json:
            click.echo(json.dumps(snapshot_json(snapshot), indent=2))
        else:
            wide = console if console.is_terminal else Console(width=max(console.width, 120))
            wide.print(render(snapshot))
        return
    try:
        with key_presses(sys.stdin) as read_key:
            watch(watcher, console, interval, read_key)
    except KeyboardInterrupt:
        return


def watch(
    watcher: Watcher,
    console: Console,
    interval: float,
    read_key: Callable[[float], str],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Draw a frame every ``interval`` seconds until ``read_key`` returns q. A refresh that fails keeps the last
    figures on screen with the error above them (the first one fails the command)."""
    snapshot = watcher.snapshot()
    with Live(render(snapshot, live=True), console=console, screen=True, auto_refresh=False) as live:
        while True:
            deadline = clock() + interval
            while (left := deadline - clock()) > 0:
                if read_key(left) in ("q", "Q"):
                    return
            try:
                snapshot = watcher.snapshot()
            except (ClientError, BotoCoreError, click.ClickException) as error:
                message = error.format_message() if isinstance(error, click.ClickException) else str(error)
                since = clock_time(snapshot.taken_at_ms)
                snapshot = dataclasses.replace(snapshot, problem=f"refresh failed, figures of {since}: {message}")
            live.update(render(snapshot, live=True), refresh=True)


@contextmanager
def key_presses(stream: IO[str]) -> Iterator[Callable[[float], str]]:
    """A function that waits up to its argument's seconds for one key press on ``stream`` (a terminal, put in
    cbreak mode while the block runs: keys come without Enter, Ctrl-C still interrupts) and returns it, or "".
    Without a terminal it only waits."""

    def wait_only(seconds: float) -> str:
        time.sleep(seconds)
        return ""

    if sys.platform == "win32" or not stream.isatty():
        yield wait_only
        return
    import os
    import select
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)

    def read_key(seconds: float) -> str:
        ready, _, _ = select.select([fd], [], [], seconds)
        return os.read(fd, 1).decode(errors="replace") if ready else ""

    try:
        tty.setcbreak(fd)
        yield read_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
