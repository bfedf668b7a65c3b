"""``vector-relay load FILE``: a tenant's existing corpus into the relay, as upserts packed near SQS's limits.

Each JSONL line is a record ``{"id", "values"?, "sparse_values"?, "metadata"?, "version"?}``. Before
the first message is sent, the load is checked against the deployment as a worker would check its
messages: the tenant must be in the tenant registry and may act through the queue the load sends
to (tenant binding), and each record must fit the index's shape and the tenant's metadata schema.
A load that could only fill the dead-letter queue is refused (exit 2) with the reason.

Records are packed into upsert messages of up to 1,000 records and just under 1 MiB, sent ten to a
``SendMessageBatch`` (at most 1 MiB together), so the number of SQS requests is close to the
minimum. After every batch SQS accepted, a checkpoint file records the last line published;
``--resume`` starts after it, so a crash re-sends one batch at most (same versions: the version
guard drops the copies). ``--message-ids FILE`` writes the SQS id of every message sent, one a
line, after each batch (appended with ``--resume``): the ids ``vector-relay receipts wait
--ids-file`` waits for. A checkpoint belongs to one load: the file's content, the tenant and the
queue (the deployment); it is never taken for another.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import spinner

if TYPE_CHECKING:
    from vector_relay.contract.fields import IndexShape
    from vector_relay.contract.tenant_schemas import TenantSchema

MESSAGE_BYTES = 1_000_000  # below SQS's 1 MiB (vector_relay.sqs.limits), leaving room for the envelope
CRASH_AFTER_BATCHES = "VECTOR_RELAY_LOAD_CRASH_AFTER_BATCHES"  # a testing aid: die after N batches were sent


@dataclass(frozen=True, slots=True)
class Target:
    """What a load was checked against: the queue it sends to, and what the workers will check there."""

    queue_url: str
    shape: IndexShape | None  # None: the deployment does not name its index
    schema: TenantSchema | None


@dataclass(frozen=True, slots=True)
class LoadIdentity:
    """The load a checkpoint belongs to."""

    file_sha256: str
    tenant: str
    queue_url: str

    def differences(self, other: LoadIdentity) -> list[str]:
        found = []
        if other.tenant != self.tenant:
            found.append(f"tenant {other.tenant!r} (this load: {self.tenant!r})")
        if other.queue_url != self.queue_url:
            found.append(f"queue {other.queue_url} (this load: {self.queue_url})")
        if other.file_sha256 != self.file_sha256:
            found.append("another file content (the file changed since, or it is another file)")
        return found


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--tenant", required=True, help="The tenant the records belong to (it must be in the tenant registry).")
@click.option("--version", "version", type=click.IntRange(min=0), help="The version of lines that carry none.")
@click.option("--skip-invalid", is_flag=True, help="Report invalid lines and go on (default: stop at the first).")
@click.option("--resume", is_flag=True, help="Go on after the line this load's checkpoint says was published last.")
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Default: FILE.<tenant>.checkpoint, beside the file.",
)
@click.option(
    "--queue-url",
    help="Send to this queue instead of the deployment's ingest queue (a tenant bound to queues of its own).",
)
@click.option(
    "--message-ids",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write each sent message's SQS id to this file, one a line (for `receipts wait --ids-file`).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.pass_obj
def load(
    ctx: Context,
    file: Path,
    tenant: str,
    version: int | None,
    skip_invalid: bool,
    resume: bool,
    checkpoint: Path | None,
    queue_url: str | None,
    message_ids: Path | None,
    as_json: bool,
) -> None:
    """Publish a JSONL (or, with pyarrow, Parquet) file of records as upserts for one tenant, resumably.

    Checked first, as the workers will check it: the tenant is registered and may use the queue,
    and every record fits the index (dimension, dense or sparse) and the tenant's schema. Exit 2
    when the load cannot be made (nothing is sent for a tenant or queue the relay would refuse),
    1 when --skip-invalid left lines out.
    """
    from vector_relay.producer import Publisher, VersionClock
    from vector_relay.sqs.limits import send_batches

    target = _check_deployment(ctx, tenant, queue_url)
    checkpoint = checkpoint or file.with_name(f"{file.name}.{_slug(tenant)}.checkpoint")
    identity = LoadIdentity(_sha256(file), tenant, target.queue_url)
    start_after = _start_line(checkpoint, identity, resume)
    publisher = Publisher(target.queue_url, sqs=ctx.sqs())
    clock = VersionClock()
    crash_after = int(ctx.environment(CRASH_AFTER_BATCHES) or 0)
    invalid: list[dict[str, Any]] = []
    totals = {"records": 0, "messages": 0, "requests": 0, "retried": 0, "failed": 0, "batches": 0}
    began = time.monotonic()
    progress = spinner("{task.fields[records]:,} records published, {task.fields[rate]:,.0f}/s", quiet=as_json)
    task = progress.add_task("load", total=None, records=0, rate=0.0)

    checkpointed = start_after
    if message_ids is not None and not resume:
        _write_ids(message_ids, [], mode="w")

    def send(batch: list[tuple[str, int, int]], last_line: int) -> None:
        nonlocal checkpointed
        result = publisher.publish_bodies([body for body, _, _ in batch])
        totals["requests"] += result.requests
        totals["retried"] += result.retried
        if result.failed:
            totals["failed"] += len(result.failed)
            raise CannotRun(
                f"SQS refused {len(result.failed)} messages for good ({result.failed[0].code}: "
                f"{result.failed[0].reason}); the checkpoint stands at line {checkpointed} ({checkpoint}): "
                "--resume goes on from there"
            )
        if message_ids is not None:
            _write_ids(message_ids, result.message_ids, mode="a")
        totals["records"] += sum(count for _, count, _ in batch)
        totals["messages"] += len(batch)
        totals["batches"] += 1
        _write_checkpoint(checkpoint, identity, last_line, finished=False)
        checkpointed = last_line
        elapsed = max(time.monotonic() - began, 1e-6)
        progress.update(task, records=totals["records"], rate=totals["records"] / elapsed)
        if crash_after and totals["batches"] >= crash_after:
            os._exit(75)

    last_line = start_after
    with progress:
        messages = _messages(file, tenant, start_after, version, clock, invalid, skip_invalid, target)
        # (body, records, last line) in groups of one SendMessageBatch each, so a checkpoint follows each call
        for batch in send_batches(messages, lambda message: len(message[0].encode())):
            last_line = batch[-1][2]
            send(batch, last_line)
    _write_checkpoint(checkpoint, identity, last_line, finished=True)
    elapsed = time.monotonic() - began
    report = {
        **totals,
        "invalid_lines": invalid,
        "seconds": round(elapsed, 2),
        "records_per_second": round(totals["records"] / elapsed, 1) if elapsed else None,
        "resumed_after_line": start_after,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        resumed = f" after line {start_after} (--resume)" if start_after else ""
        click.echo(
            f"published {totals['records']:,} records{resumed} for tenant {tenant} in {totals['messages']:,} messages "
            f"with {totals['requests']:,} SQS requests ({totals['retried']} entries retried) in {elapsed:.1f} s"
        )
        for line in invalid[:20]:
            click.echo(f"  line {line['line']}: {line['reason']}")
    if invalid:
        raise SystemExit(EXIT_FOUND)


def _check_deployment(ctx: Context, tenant: str, queue_url: str | None) -> Target:
    """The queue, index shape and schema the load is checked against; exit 2 if the relay would refuse the tenant."""
    from vector_relay.pinecone.control_plane import describe_index_shape
    from vector_relay.pinecone.errors import PineconeRequestError

    deployment = ctx.deployment()
    url = queue_url or deployment.output("IngestQueueUrl")
    registry = ctx.tenant_registry()
    parameter = deployment.output("TenantRegistryParameterName")
    if tenant not in registry:
        known = sorted(registry)
        close = difflib.get_close_matches(tenant, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CannotRun(
            f"tenant {tenant!r} is not in the tenant registry ({parameter}: {', '.join(known) or 'no tenants'}){hint} "
            f"Nothing was sent: the workers would dead-letter every record as unknown_tenant. "
            f"Register it first: vector-relay tenant add {tenant} --namespace NAMESPACE"
        )
    arn = (deployment.outputs.get("IngestQueueArn") if queue_url is None else None) or _queue_arn(ctx, url)
    problem = registry.binding_problem(arn, tenant)
    if problem is not None:
        raise CannotRun(
            f"tenant {tenant!r} may not send through {url}: {problem.message}. Nothing was sent: the workers would "
            "dead-letter every record as tenant_not_bound. A tenant bound to queues of its own is loaded through "
            "one of them (--queue-url); any other through the deployment's ingest queue"
        )
    shape = None
    name = deployment.outputs.get("PineconeIndexName")
    if name:
        try:
            shape = describe_index_shape(
                api_key=ctx.api_key(), name=name, control_host=ctx.environment("PINECONE_CONTROL_HOST") or None
            )
        except PineconeRequestError as error:
            raise CannotRun(f"cannot describe index {name} to check the records against it: {error}") from None
    else:
        click.echo(
            f"warning: {deployment.source} does not name its index (PineconeIndexName): records are not checked "
            "against its dimension; a mismatch reaches the dead-letter queue",
            err=True,
        )
    return Target(url, shape, registry.schema_for(tenant))


def _queue_arn(ctx: Context, url: str) -> str:
    try:
        attributes = ctx.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read queue {url}: {error}") from None
    return attributes["QueueArn"]


def _messages(
    file: Path,
    tenant: str,
    start_after: int,
    default_version: int | None,
    clock: Any,
    invalid: list[dict[str, Any]],
    skip_invalid: bool,
    target: Target,
) -> Iterator[tuple[str, int, int]]:
    """Upsert bodies packed near the limits: (body, records in it, the last line it holds)."""
    from pydantic import ValidationError

    from vector_relay.contract.fields import MAX_RECORDS_PER_MESSAGE, ValidationContext
    from vector_relay.contract.messages import UpsertRecord
    from vector_relay.contract.parsing import problems_from

    context = ValidationContext(index=target.shape).as_pydantic_context()
    head = json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": []})[:-3]  # up to "records":
    records: list[str] = []
    size = len(head) + 2
    last = start_after
    for number, raw in _rows(file, start_after):
        try:
            if isinstance(raw, Exception):
                raise raw
            if not isinstance(raw, dict):
                raise ValueError("a line must be a JSON object")
            raw.setdefault("version", default_version if default_version is not None else clock.next())
            try:
                parsed = UpsertRecord.model_validate(raw, context=context)
            except ValidationError as error:
                raise ValueError("; ".join(f"[{p.code}] {p.describe()}" for p in problems_from(error, ()))) from None
            violations = target.schema.record_problems(0, parsed.metadata) if target.schema else []
            if violations:
                where = [f"[{p.code}] {p.location.removeprefix('records[0].')}: {p.message}" for p in violations]
                raise ValueError("; ".join(where))
            record = parsed.model_dump_json(exclude_none=True)
        except ValueError as error:
            reason = " ".join(str(error).split())[:300]
            invalid.append({"line": number, "reason": reason})
            if not skip_invalid:
                raise CannotRun(f"line {number} is not a valid record: {reason} (--skip-invalid goes on)") from None
            continue
        if records and (len(records) == MAX_RECORDS_PER_MESSAGE or size + len(record) + 1 > MESSAGE_BYTES):
            yield head + "[" + ",".join(records) + "]}", len(records), last
            records, size = [], len(head) + 2
        records.append(record)
        size += len(record) + 1
        last = number
    if records:
        yield head + "[" + ",".join(records) + "]}", len(records), last


def _rows(file: Path, start_after: int) -> Iterator[tuple[int, Any]]:
    """(line or row number from 1, the record as a dict, or the error that made it unreadable)."""
    if file.suffix == ".parquet":
        try:
            import pyarrow.parquet as parquet  # type: ignore[import-untyped]
        except ImportError:
            raise CannotRun("reading Parquet needs pyarrow (pip install pyarrow); JSONL needs nothing") from None
        number = 0
        for batch in parquet.ParquetFile(file).iter_batches(batch_size=1000):
            for row in batch.to_pylist():
                number += 1
                if number > start_after:
                    yield number, {key: value for key, value in row.items() if value is not None}
        return
    with file.open() as lines:
        for number, line in enumerate(lines, 1):
            if number <= start_after or not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except RecursionError:  # json reads nesting by recursion: a line nested some 10,000 levels deep
                yield number, ValueError("the line nests arrays and objects too deeply to be a record")
            except ValueError as error:  # json's own message says where the syntax breaks, never what the line holds
                yield number, error


def _write_ids(path: Path, ids: list[str], *, mode: str) -> None:
    try:
        with path.open(mode) as out:
            out.writelines(f"{message_id}\n" for message_id in ids)
    except OSError as error:
        raise CannotRun(f"cannot write --message-ids {path}: {error.strerror}") from None


def _slug(tenant: str) -> str:
    """The tenant as part of a file name (two tenants sharing a slug are told apart by the checkpoint's content)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", tenant)[:100]


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as content:
        while chunk := content.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _start_line(path: Path, identity: LoadIdentity, resume: bool) -> int:
    """The line to go on after: the checkpoint's with --resume, else 0; exit 2 for another load's checkpoint."""
    try:
        saved: Any = json.loads(path.read_text())
    except FileNotFoundError:
        if resume:
            click.echo(f"no checkpoint at {path}: starting at line 1", err=True)
        return 0
    except ValueError as error:
        raise CannotRun(f"checkpoint {path} is unreadable: {error}; delete it to start over") from None
    fields = ("file_sha256", "tenant", "queue_url", "last_line")
    if not isinstance(saved, dict) or not all(key in saved for key in fields):
        raise CannotRun(
            f"checkpoint {path} does not say which file content, tenant and queue it belongs to (an older "
            "vector-relay wrote it). Delete it to load from line 1 (the version guard drops versions already "
            "applied), or give --checkpoint another path"
        )
    theirs = LoadIdentity(str(saved["file_sha256"]), str(saved["tenant"]), str(saved["queue_url"]))
    differences = identity.differences(theirs)
    if differences:
        raise CannotRun(
            f"checkpoint {path} belongs to another load: {'; '.join(differences)}. To start this load, give "
            "--checkpoint another path (or delete that one if its load is over); to go on with that load, run it "
            "with its own file, tenant and deployment"
        )
    last_line = int(saved["last_line"])
    if not resume:
        if last_line and not saved.get("finished"):
            click.echo(
                f"starting over at line 1 (checkpoint {path} had reached line {last_line}; --resume goes on)", err=True
            )
        return 0
    if saved.get("finished"):
        click.echo(f"this load finished at line {last_line}: nothing is left to publish", err=True)
    return last_line


def _write_checkpoint(path: Path, identity: LoadIdentity, last_line: int, *, finished: bool) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(
        json.dumps(
            {
                "last_line": last_line,
                "finished": finished,
                "tenant": identity.tenant,
                "queue_url": identity.queue_url,
                "file_sha256": identity.file_sha256,
            }
        )
    )
    temporary.replace(path)  # atomic: a crash leaves the old checkpoint or the new one
