"""``vector-relay load FILE``: a tenant's existing corpus into the relay, as upserts packed near SQS's limits.

Each JSONL line is a record ``{"id", "values"?, "sparse_values"?, "metadata"?, "version"?}``. Records
are packed into upsert messages of up to 1,000 records and just under 1 MiB, sent ten to a
``SendMessageBatch`` (at most 1 MiB together), so the number of SQS requests is close to the
minimum. After every batch SQS accepted, a checkpoint file records the last line published;
``--resume`` starts after it, so a crash re-sends one batch at most (same versions: the version
guard drops the copies).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from vector_relay_cli.context import Context
from vector_relay_cli.errors import EXIT_FOUND, CannotRun
from vector_relay_cli.progress import spinner

MESSAGE_BYTES = 1_000_000  # below SQS's 1 MiB (1,048,576), leaving room for the envelope
BATCH_BYTES = 1_040_000  # the bodies of one SendMessageBatch together
RECORDS_PER_MESSAGE = 1000
CRASH_AFTER_BATCHES = "VECTOR_RELAY_LOAD_CRASH_AFTER_BATCHES"  # a testing aid: die after N batches were sent


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--tenant", required=True, help="The tenant the records belong to.")
@click.option("--version", "version", type=click.IntRange(min=0), help="The version of lines that carry none.")
@click.option("--skip-invalid", is_flag=True, help="Report invalid lines and go on (default: stop at the first).")
@click.option("--resume", is_flag=True, help="Go on after the line the checkpoint says was published last.")
@click.option("--checkpoint", type=click.Path(path_type=Path, dir_okay=False), help="Default: FILE.checkpoint.")
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
    as_json: bool,
) -> None:
    """Publish a JSONL (or, with pyarrow, Parquet) file of records as upserts for one tenant, resumably."""
    from vector_relay.producer import Publisher, VersionClock

    checkpoint = checkpoint or file.with_name(file.name + ".checkpoint")
    start_after = _read_checkpoint(checkpoint) if resume else 0
    publisher = Publisher(ctx.deployment().output("IngestQueueUrl"), sqs=ctx.sqs())
    clock = VersionClock()
    crash_after = int(ctx.environment(CRASH_AFTER_BATCHES) or 0)
    invalid: list[dict[str, Any]] = []
    totals = {"records": 0, "messages": 0, "requests": 0, "retried": 0, "failed": 0, "batches": 0}
    began = time.monotonic()
    progress = spinner("{task.fields[records]:,} records published, {task.fields[rate]:,.0f}/s", quiet=as_json)
    task = progress.add_task("load", total=None, records=0, rate=0.0)

    def send(batch: list[tuple[str, int, int]], last_line: int) -> None:
        result = publisher.publish_bodies([body for body, _, _ in batch])
        totals["requests"] += result.requests
        totals["retried"] += result.retried
        if result.failed:
            totals["failed"] += len(result.failed)
            raise CannotRun(
                f"SQS refused {len(result.failed)} messages for good ({result.failed[0].code}: "
                f"{result.failed[0].reason}); nothing after line {start_after} is checkpointed past them"
            )
        totals["records"] += sum(count for _, count, _ in batch)
        totals["messages"] += len(batch)
        totals["batches"] += 1
        _write_checkpoint(checkpoint, last_line)
        elapsed = max(time.monotonic() - began, 1e-6)
        progress.update(task, records=totals["records"], rate=totals["records"] / elapsed)
        if crash_after and totals["batches"] >= crash_after:
            os._exit(75)

    with progress:
        batch: list[tuple[str, int, int]] = []  # (body, records, last line)
        batch_bytes = 0
        for body, count, last_line in _messages(file, tenant, start_after, version, clock, invalid, skip_invalid):
            size = len(body.encode())
            if batch and (len(batch) == 10 or batch_bytes + size > BATCH_BYTES):
                send(batch, batch[-1][2])
                batch, batch_bytes = [], 0
            batch.append((body, count, last_line))
            batch_bytes += size
        if batch:
            send(batch, batch[-1][2])
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
        click.echo(
            f"published {totals['records']:,} records in {totals['messages']:,} messages with {totals['requests']:,} "
            f"SQS requests ({totals['retried']} entries retried) in {elapsed:.1f} s"
        )
        for line in invalid[:20]:
            click.echo(f"  line {line['line']}: {line['reason']}")
    if invalid:
        raise SystemExit(EXIT_FOUND)


def _messages(
    file: Path,
    tenant: str,
    start_after: int,
    default_version: int | None,
    clock: Any,
    invalid: list[dict[str, Any]],
    skip_invalid: bool,
) -> Iterator[tuple[str, int, int]]:
    """Upsert bodies packed near the limits: (body, records in it, the last line it holds)."""
    from pydantic import ValidationError

    from vector_relay.contract import UpsertRecord

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
            record = UpsertRecord.model_validate(raw).model_dump_json(exclude_none=True)
        except (ValueError, ValidationError) as error:
            reason = " ".join(str(error).split())[:300]
            invalid.append({"line": number, "reason": reason})
            if not skip_invalid:
                raise CannotRun(f"line {number} is not a valid record: {reason} (--skip-invalid goes on)") from None
            continue
        if records and (len(records) == RECORDS_PER_MESSAGE or size + len(record) + 1 > MESSAGE_BYTES):
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
            except ValueError as error:
                yield number, error


def _read_checkpoint(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["last_line"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError) as error:
        raise CannotRun(f"checkpoint {path} is unreadable: {error}") from None


def _write_checkpoint(path: Path, last_line: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"last_line": last_line}))
    temporary.replace(path)  # atomic: a crash leaves the old checkpoint or the new one
