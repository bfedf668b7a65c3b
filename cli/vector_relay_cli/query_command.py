"""``vector-relay query``: ask the relay as a producer does, and print its answer.

The query is built and published with the producer library (``vector_relay.producer``) to the
deployment's query queue; the command then waits on a reply queue for the reply with its
correlation id (``wait_for_reply``): replies to other queries are made visible again at once, the
one it reads is deleted, and a large reply stored in S3 is read from there. Which reply queues a
query may name is the deployment's: the ``ReplyQueueAllowList`` output (the query function's
``REPLY_QUEUE_ALLOW_LIST``), or the tenant's own ``reply_queues`` in the registry, which replace it.
The deployment's example reply queue is the default when the tenant may use it.

``--after-receipts FILE`` asks for read-your-writes: the query carries ``min_lsn``, the highest LSN of
the tenant's ``applied`` receipts in FILE (JSON lines, as ``vector-relay receipts wait`` prints them),
and an answer the relay could not bring up to it (``"fresh": false``) is exit 1, never passed off as
current.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun

if TYPE_CHECKING:
    from vector_relay.contract.replies import Match, QueryReplyError, QueryReplyOk
    from vector_relay.tenancy import TenantRegistry

DEFAULT_TIMEOUT_SECONDS = 30.0


@click.command()
@click.option("--tenant", required=True, help="The tenant whose namespace is searched (it must be in the registry).")
@click.option(
    "--vector-file",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help='A JSON file with the query vector: [0.1, ...] or {"values": [0.1, ...]} ("-": stdin).',
)
@click.option("--id", "record_id", help="Query with the stored record's vector instead.")
@click.option("--filter", "filter_json", metavar="JSON", help='A metadata filter: \'{"year": {"$gte": 2023}}\'.')
@click.option("--top-k", default=10, show_default=True, type=click.IntRange(1, 10_000), help="How many matches.")
@click.option("--metadata/--no-metadata", default=True, show_default=True, help="Ask for each match's metadata.")
@click.option("--values", "include_values", is_flag=True, help="Ask for each match's values too.")
@click.option("--reply-queue", metavar="URL", help="Which of the tenant's allowed reply queues to be answered on.")
@click.option("--queue-url", help="Publish to this query queue (a tenant bound to queues of its own).")
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the reply.",
)
@click.option(
    "--after-receipts",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Answer only once the writes of these receipts are visible: JSON lines as `receipts wait` prints them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the reply as one JSON document.")
@click.pass_obj
def query(
    ctx: Context,
    tenant: str,
    vector_file: Path | None,
    record_id: str | None,
    filter_json: str | None,
    top_k: int,
    metadata: bool,
    include_values: bool,
    reply_queue: str | None,
    queue_url: str | None,
    timeout: float,
    after_receipts: Path | None,
    as_json: bool,
) -> None:
    """Publish a query (by vector or by a stored record's id) and print the matches of its reply.

    Exit 0 with the matches (none is an answer too); 1 when the relay answered with an error
    (its code and message are printed), or could not show the writes of --after-receipts in time
    (``fresh: false``); 2 when the query could not be asked, or no reply came within --timeout.
    """
    from pydantic import ValidationError

    from vector_relay import producer

    if (vector_file is None) == (record_id is None):
        raise click.UsageError("give exactly one of --vector-file and --id")
    vector = _read_vector(vector_file) if vector_file is not None else None
    filter_ = _read_filter(filter_json) if filter_json is not None else None
    min_lsn = _min_lsn(after_receipts, tenant) if after_receipts is not None else None
    deployment = ctx.deployment()
    url = queue_url or deployment.output("QueryQueueUrl")
    registry = _registry(ctx)
    _check_tenant(ctx, registry, tenant, url, queue_url is not None)
    reply_to = _reply_queue(ctx, registry, tenant, reply_queue)
    try:
        message = producer.query(
            tenant,
            reply_to=reply_to,
            vector=vector,
            id=record_id,
            top_k=top_k,
            filter=filter_,
            include_metadata=metadata,
            include_values=include_values,
            min_lsn=min_lsn,
        )
    except ValidationError as error:
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'query'}: {e['msg']}" for e in error.errors())
        raise CannotRun(f"the query is not valid (docs/contract.md): {reasons}") from None
    sqs = ctx.sqs()
    try:
        result = producer.Publisher(url, sqs=sqs).publish([message])
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot publish to {url}: {error}") from None
    if result.failed:
        failed = result.failed[0]
        raise CannotRun(f"{url} did not take the query: {failed.code}: {failed.reason}")
    correlation_id = str(message.correlation_id)
    try:
        reply = producer.wait_for_reply(sqs, reply_to, correlation_id, timeout=timeout, s3=ctx.s3())
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read the reply from {reply_to}: {error}") from None
    except ValueError as error:  # a reply that is not one, or a stored reply that holds none
        raise CannotRun(f"the reply to {correlation_id} on {reply_to} cannot be read: {error}") from None
    if reply is None:
        raise CannotRun(
            f"no reply to query {correlation_id} on {reply_to} within {timeout:g} s. Is the query worker running "
            f"(make status; the QueryFunction's logs)? A query the relay could not answer anywhere is in its DLQ "
            f"(vector-relay dlq inspect --queue query); a late reply stays on {reply_to}"
        )
    if as_json:
        click.echo(reply.model_dump_json(exclude_none=True, indent=2))
    else:
        _print_reply(reply)
    if reply.status == "error":
        raise SystemExit(EXIT_FOUND)
    if min_lsn is not None and reply.fresh is not True:
        seen = "no indexed LSN (over gRPC Pinecone gives none)" if reply.lsn is None else f"indexed LSN {reply.lsn}"
        click.echo(
            f"not fresh: the relay answered at {seen}, below the receipts' LSN {min_lsn}; the matches may miss "
            "those writes (ask again)",
            err=True,
        )
        raise SystemExit(EXIT_FOUND)


def _min_lsn(path: Path, tenant: str) -> int | None:
    """The LSN the answer must reach for the receipts in ``path`` (None, said on stderr, when none is applied)."""
    from vector_relay.producer import min_lsn_after
    from vector_relay_cli.receipt_commands import read_receipts

    found = read_receipts(path, "--after-receipts")
    try:
        lsn = min_lsn_after(found, tenant)
    except ValueError as error:
        raise CannotRun(f"--after-receipts {path}: {error}") from None
    if lsn is None:
        click.echo(
            f"--after-receipts {path}: no applied receipt ({len(found)} read), so there is no write to wait for",
            err=True,
        )
    return lsn


def _read_vector(path: Path) -> list[float]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        raw: Any = json.loads(text)
    except OSError as error:
        raise CannotRun(f"cannot read --vector-file {path}: {error.strerror}") from None
    except ValueError as error:
        raise CannotRun(f"--vector-file {path} is not JSON: {error}") from None
    values = raw.get("values") if isinstance(raw, dict) else raw
    if not isinstance(values, list) or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
        raise CannotRun(f'--vector-file {path} must hold a list of numbers, or {{"values": [...]}}')
    return [float(x) for x in values]


def _read_filter(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--filter") from None
    if not isinstance(raw, dict):
        raise click.BadParameter("a filter is a JSON object", param_hint="--filter")
    return raw


def _registry(ctx: Context) -> TenantRegistry:
    return ctx.tenant_registry()


def _check_tenant(ctx: Context, registry: TenantRegistry, tenant: str, url: str, own_queue: bool) -> None:
    """Exit 2 for a query the worker would dead-letter unanswered: an unknown tenant, or one bound elsewhere."""
    if tenant not in registry:
        known = sorted(registry)
        close = difflib.get_close_matches(tenant, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CannotRun(f"tenant {tenant!r} is not in the tenant registry ({', '.join(known) or 'no tenants'}){hint}")
    arn = None if own_queue else ctx.deployment().outputs.get("QueryQueueArn")
    if arn is None:
        try:
            arn = ctx.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        except (ClientError, BotoCoreError) as error:
            raise CannotRun(f"cannot read queue {url}: {error}") from None
    problem = registry.binding_problem(arn, tenant)
    if problem is not None:
        raise CannotRun(
            f"tenant {tenant!r} may not ask through {url}: {problem.message}. The worker would dead-letter the "
            "query without a reply; a tenant bound to queues of its own asks through its query queue (--queue-url)"
        )


def allowed_reply_queues(ctx: Context, registry: TenantRegistry, tenant: str) -> frozenset[str]:
    """The reply queues a query of ``tenant`` may name: its own in the registry, else the deployment's allow-list."""
    outputs = ctx.deployment().outputs
    listed = outputs.get("ReplyQueueAllowList") or outputs.get("ExampleReplyQueueUrl", "")
    return registry.reply_queues_for(tenant, frozenset(u.strip() for u in listed.split(",") if u.strip()))


def _reply_queue(ctx: Context, registry: TenantRegistry, tenant: str, chosen: str | None) -> str:
    allowed = allowed_reply_queues(ctx, registry, tenant)
    listing = ", ".join(sorted(allowed)) or "none"
    if chosen is not None:
        if chosen not in allowed:
            raise CannotRun(f"--reply-queue {chosen} is not a reply queue tenant {tenant!r} may name: {listing}")
        return chosen
    example = ctx.deployment().outputs.get("ExampleReplyQueueUrl")
    if example in allowed:
        return str(example)
    if len(allowed) == 1:
        return next(iter(allowed))
    raise CannotRun(f"which reply queue? tenant {tenant!r} may name {listing}: choose one with --reply-queue")


def _print_reply(reply: QueryReplyOk | QueryReplyError) -> None:
    if reply.status == "error":
        click.echo(f"the relay answered with an error: [{reply.error.code}] {reply.error.message}")
        return
    matches = reply.matches or []
    units = f"; read units: {reply.usage.read_units}" if reply.usage and reply.usage.read_units is not None else ""
    indexed = f"; indexed LSN {reply.lsn}" if reply.lsn is not None else ""
    fresh = {True: " (fresh)", False: " (not fresh)", None: ""}[reply.fresh]
    click.echo(f"tenant {reply.tenant}: {len(matches)} match{'' if len(matches) == 1 else 'es'}{units}{indexed}{fresh}")
    width = max((len(m.id) for m in matches), default=0)
    for rank, match in enumerate(matches, 1):
        click.echo(f"  {rank:3}. {match.score:8.4f}  {match.id:{width}}  {_describe(match)}".rstrip())


def _describe(match: Match) -> str:
    from vector_relay.contract.fields import VERSION_METADATA_KEY

    metadata = dict(match.metadata or {})
    version = metadata.pop(VERSION_METADATA_KEY, None)
    parts = [f"version {version}"] if version is not None else []
    if metadata:  # Pinecone keeps every number as a float: 2024.0 is shown as the 2024 it was
        shown = {key: _plain_number(value) for key, value in metadata.items()}
        parts.append(json.dumps(shown, ensure_ascii=False, sort_keys=True)[:160])
    if match.values is not None:
        first = ", ".join(f"{x:.4g}" for x in match.values[:4])
        parts.append(f"values [{first}{', ...' if len(match.values) > 4 else ''}] ({len(match.values)} dims)")
    return "  ".join(parts)


def _plain_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value
