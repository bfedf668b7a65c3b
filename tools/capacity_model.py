"""A capacity and cost model of one deployment (issue 33 item 5): the tables of docs/capacity.md.

    .venv/bin/python -m tools.capacity_model               # the tables (from a full bench run's JSON when one is there)
    .venv/bin/python -m tools.capacity_model --constants   # the tables from MEASURED, as docs/capacity.md shows them
    .venv/bin/python -m tools.capacity_model --write       # the same, written into docs/capacity.md's blocks

For each shape of the ingest benchmark (``bench/ingest_throughput.py``'s SHAPES, its full batches at the
template's ``IngestBatchSize``), the model builds the batch the benchmark sends (``bench.harness.make_bodies``,
same seeds) and plans it with the worker's own planner (``vector_relay.ingest.planning``): the Pinecone
requests per batch and their bytes come from the code that sends them, not from a formula. On top of that:

* **Lambda**: the handler's CPU per record as measured (:data:`MEASURED`, or a full run's
  ``bench/results/ingest_throughput.json``), divided by the function's share of a vCPU at each
  MemorySize (one vCPU at 1,769 MB, proportional below; a single Python thread gains nothing above),
  plus the waits after it (the guard's last round trips, Pinecone's requests in waves of
  ``PineconeMaxConcurrency``): the duration of a batch, its cost, and the records a second one
  invocation carries.
* **Per million records**: SQS requests (64 KB chunks), DynamoDB request units for the version guard,
  Pinecone write units, in dollars.
* **Limits**: Pinecone's per-namespace upsert limits, DynamoDB's per-partition and per-table write
  limits, the guard's claim lock, Lambda's concurrency (the event source's ``MaximumConcurrency``
  from template.yaml): records a second per namespace and for the deployment, and what binds first.

Every constant below names its source or says that it is an assumption; docs/capacity.md repeats each
next to the figure it drives. Nothing here is measured against AWS or Pinecone: the project has no account.

``tests/unit/test_capacity_model.py`` fails when docs/capacity.md's blocks differ from
``render(MEASURED)``. ``bench/results/`` is not committed, so the page and the test use the constants; after
a full ``make bench`` the default run prints the tables from its JSON and says so: copy its figures into
:data:`MEASURED`, then ``--constants --write``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from bench.harness import make_bodies, sqs_event
from relay_local.cloudformation import load_template
from vector_relay.contract.fields import VERSION_METADATA_KEY
from vector_relay.contract.messages import UpsertMessage
from vector_relay.ingest.claim_session import MAX_GROUP
from vector_relay.ingest.planning import PlannedRequest, coalesce, pack
from vector_relay.pinecone.wire import EncodedUpsert, Transport, encode_upsert
from vector_relay.sqs.limits import SQS_MAX_BATCH_ENTRIES, SQS_MAX_RECEIVE_MESSAGES, send_batches

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "capacity.md"
TEMPLATE = ROOT / "template.yaml"
BENCH_RESULTS = ROOT / "bench" / "results" / "ingest_throughput.json"
TENANT, NAMESPACE = "relay", "ns-relay"  # the benchmark's
RUN_TAG = "000000-"  # bench/ingest_throughput.py's tagged(): every record id of a run starts with a 7-character tag

# ------------------------------------------------------------------------------------------- shapes
# bench/ingest_throughput.py's SHAPES: (messages, records per message, dimension, bytes of text
# metadata); 0 messages = a full batch of IngestBatchSize (a unit test holds the two lists equal).
SHAPES: tuple[tuple[int, int, int, int], ...] = ((7, 64, 1536, 0), (0, 2, 384, 0), (0, 1, 1536, 1000))
LARGER_BATCH = 400  # IngestBatchSize that still fits both full-batch shapes in a 6 MB event (the bench's docstring)
LAMBDA_MAX_EVENT_BYTES = 6 * 1024 * 1024  # synchronous invocation payload (relay_local.event_source)

# -------------------------------------------------------------------------------- measured (this repo)
MEASURED_SOURCE = (
    "bench/ingest_throughput.py, handler guard on, median of 5 rounds, idle 2-core x86_64 machine,"
    " 2026-12-07 13:03, after the guard's lean connections, send-while-validating and joined claim submissions"
)


@dataclass(frozen=True)
class Measured:
    """What the benchmark measured for one shape, with the guard on."""

    cpu_us_per_record: float  # the handler process's CPU (every thread) per record, on one whole core
    dynamodb_requests_per_1k: float  # the guard's DynamoDB calls per 1,000 records


@dataclass(frozen=True)
class Measurements:
    source: str
    by_shape: dict[str, Measured]


MEASURED = Measurements(
    MEASURED_SOURCE,
    {
        "7 x 64 x 1536": Measured(156, 38),
        "100 x 2 x 384": Measured(84, 35),
        "100 x 1 x 1536 + text": Measured(177, 50),
    },
)
GUARD_ON_ROW = "handler, guard on"  # bench/ingest_throughput.py's row name

# ---------------------------------------------------------------------------------- prices (USD, list)
# us-east-1, before free tiers. Sources and what they say: docs/capacity.md, "Sources".
LAMBDA_USD_PER_GB_SECOND = 0.0000166667  # x86, first 6 billion GB-seconds a month
LAMBDA_USD_PER_REQUEST = 0.20 / 1e6
SQS_USD_PER_REQUEST = 0.40 / 1e6  # standard queue
SQS_BILLING_CHUNK = 64 * 1024  # "each 64 KB chunk of a payload is billed as 1 request"
DYNAMODB_USD_PER_WRU = 0.625 / 1e6  # on demand
DYNAMODB_USD_PER_RRU = 0.125 / 1e6
PINECONE_USD_PER_WU = 4.0 / 1e6  # Standard plan, serverless on AWS us-east-1

# ------------------------------------------------------------------------------------- documented facts
LAMBDA_MB_PER_VCPU = 1769  # "At 1,769 MB, a function has the equivalent of one vCPU"
MEMORY_SIZES = (512, 1024, 1769, 3008)
LAMBDA_ACCOUNT_CONCURRENCY = 1000  # default per Region, shared by every function of the account
ESM_MAX_CONCURRENCY = 1000  # the SQS event source's MaximumConcurrency: 2 to 1,000
PINECONE_UPSERTS_PER_S = 100  # upsert requests per second per namespace
PINECONE_UPSERT_BYTES_PER_S = 50_000_000  # "upsert size per second per namespace: 50 MB" (read as 10^6 bytes)
PINECONE_WU_BYTES = 1000  # 1 WU per 1 KB of the request: the docs' table counts 7,144 bytes as 7.14 KB
PINECONE_MIN_WU = 5  # per upsert request
PINECONE_BYTES_PER_DIMENSION = 4  # a dense value as Pinecone sizes records (its cost page's formulas)
DYNAMODB_PARTITION_WRU_PER_S = 1000  # per partition, on-demand tables too
DYNAMODB_TABLE_WRU_PER_S = 40_000  # on-demand, per table (default quota)
DYNAMODB_READ_UNITS_PER_RECORD = 1  # strongly consistent read of an item up to 4 KB (guard items: ~100 bytes)
# Records whose blind claim is refused (held by another invocation, stale, or written twice in one batch) and
# are read and claimed again under the lock: none in the steady state the model assumes (each record written
# once per batch, no other writer holding it). Each such record adds a read unit and its refused put's units.
BLIND_REFUSED_SHARE = 0.0
DYNAMODB_TRANSACT_UNITS_PER_RECORD = 2  # transactional write of an item up to 1 KB

# ------------------------------------------------------------------------------------------ assumptions
PINECONE_LATENCY_MS = 30  # one upsert request, whatever its size (the benchmark's emulator latency)
DYNAMODB_ROUND_TRIP_MS = 10  # one guard call: top of DynamoDB's "single-digit millisecond" range
GUARD_ROUND_TRIPS_AFTER_CPU = 2  # the last group's blind claim (one transaction), then the release marker

BEGIN = "<!-- capacity-model: {name} (python -m tools.capacity_model --write); do not edit -->"
END = "<!-- capacity-model: end -->"


def _template_defaults() -> dict[str, int]:
    """The template's figures the model depends on."""
    template = load_template(TEMPLATE)
    parameters = template["Parameters"]
    ingest = template["Resources"]["IngestFunction"]["Properties"]
    return {
        "memory_mb": int(ingest.get("MemorySize", template["Globals"]["Function"]["MemorySize"])),
        "batch_size": int(parameters["IngestBatchSize"]["Default"]),
        "maximum_concurrency": int(parameters["IngestMaximumConcurrency"]["Default"]),
        "pinecone_in_flight": int(parameters["PineconeMaxConcurrency"]["Default"]),
    }


TEMPLATE_DEFAULTS = _template_defaults()


# ------------------------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class Batch:
    """One SQS event of a shape, as the benchmark sends it and the worker plans it."""

    name: str
    messages: int
    records: int  # in the batch
    dimension: int
    message_bytes: tuple[int, ...]  # each body, as SQS counts it
    event_bytes: int  # the event's JSON, as Lambda's payload limit counts it
    request_bytes: tuple[int, ...]  # each Pinecone upsert request as sent (REST: JSON; gRPC: protobuf)
    request_records: tuple[int, ...]
    request_record_bytes: tuple[int, ...]  # Pinecone's size of each request's records: id + metadata + 4 bytes a value

    @property
    def record_bytes(self) -> int:
        return sum(self.request_record_bytes)

    @property
    def request_units(self) -> tuple[int, ...]:
        """Pinecone write units of each request, all of its records new."""
        return tuple(write_units(size) for size in self.request_record_bytes)

    @property
    def requests(self) -> int:
        return len(self.request_bytes)

    @property
    def bytes_per_record(self) -> float:
        return sum(self.request_bytes) / self.records


def shape_name(messages: int, records: int, dimension: int, text_bytes: int) -> str:
    return f"{messages} x {records} x {dimension}" + (" + text" if text_bytes else "")


def shapes(batch_size: int) -> list[tuple[int, int, int, int]]:
    return [(messages or batch_size, records, dimension, text) for messages, records, dimension, text in SHAPES]


def pinecone_record_bytes(record_id: str, metadata: dict[str, Any] | None, version: int, dimension: int) -> int:
    """A record's size as Pinecone's cost page counts it: its id, its metadata (as sent, JSON) and 4 bytes a value."""
    sent = {**(metadata or {}), VERSION_METADATA_KEY: str(version)}
    return len(record_id.encode()) + len(orjson.dumps(sent)) + PINECONE_BYTES_PER_DIMENSION * dimension


def write_units(record_bytes: int) -> int:
    return max(PINECONE_MIN_WU, math.ceil(record_bytes / PINECONE_WU_BYTES))


@cache
def batch(seed: int, shape: tuple[int, int, int, int], transport: Transport = "rest") -> Batch:
    """The benchmark's batch of ``shape`` (seeded as the benchmark seeds it), planned for ``transport``."""
    messages, records, dimension, text_bytes = shape
    bodies = [
        body.replace('"id": "', f'"id": "{RUN_TAG}')
        for body in make_bodies(messages, records, dimension, TENANT, seed=seed, text_bytes=text_bytes)
    ]
    parsed = [UpsertMessage.model_validate_json(body) for body in bodies]
    sizes = {
        record.id: pinecone_record_bytes(record.id, record.metadata, record.version, dimension)
        for message in parsed
        for record in message.records
    }
    encoded: list[tuple[str, str, UpsertMessage | EncodedUpsert]] = [
        (str(number), NAMESPACE, encode_upsert(message, transport)) for number, message in enumerate(parsed)
    ]
    planned: list[PlannedRequest] = [
        request for stage in pack(coalesce(encoded)).stages[NAMESPACE] for request in stage
    ]
    return Batch(
        name=shape_name(*shape),
        messages=messages,
        records=messages * records,
        dimension=dimension,
        message_bytes=tuple(len(body.encode()) for body in bodies),
        event_bytes=len(json.dumps(sqs_event(bodies)).encode()),
        request_bytes=tuple(request.size_bytes for request in planned),
        request_records=tuple(len(request.records) for request in planned),
        request_record_bytes=tuple(sum(sizes[record.id] for record in request.records) for request in planned),
    )


def batches(batch_size: int, transport: Transport = "rest") -> list[Batch]:
    return [batch(seed, shape, transport) for seed, shape in enumerate(shapes(batch_size))]


# -------------------------------------------------------------------------------------------- lambda
def cpu_share(memory_mb: int) -> float:
    """The vCPU share the handler's one busy thread gets: proportional to memory up to one whole vCPU."""
    return min(memory_mb / LAMBDA_MB_PER_VCPU, 1.0)


@dataclass(frozen=True)
class Invocation:
    memory_mb: int
    cpu_ms: float  # the handler's CPU time stretched by the function's share of a vCPU
    wait_ms: float  # I/O after the CPU: the guard's last round trips and Pinecone's requests
    duration_ms: int  # billed: rounded up to the millisecond

    @property
    def gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.duration_ms / 1000

    @property
    def usd(self) -> float:
        return self.gb_seconds * LAMBDA_USD_PER_GB_SECOND + LAMBDA_USD_PER_REQUEST


def invocation(b: Batch, measured: Measured, memory_mb: int, in_flight: int) -> Invocation:
    cpu_ms = measured.cpu_us_per_record * b.records / 1000 / cpu_share(memory_mb)
    waves = math.ceil(b.requests / in_flight)
    wait_ms = GUARD_ROUND_TRIPS_AFTER_CPU * DYNAMODB_ROUND_TRIP_MS + waves * PINECONE_LATENCY_MS
    return Invocation(memory_mb, cpu_ms, wait_ms, math.ceil(cpu_ms + wait_ms))


def per_million(b: Batch) -> float:
    """Batches in a million records."""
    return 1e6 / b.records


# ------------------------------------------------------------------------------------- other services
def sqs_requests(b: Batch) -> dict[str, int]:
    """Billed SQS requests for one batch: each call counts once per started 64 KB of its messages' bodies."""

    def billed(groups: Iterable[Sequence[int]]) -> int:
        return sum(max(1, math.ceil(sum(group) / SQS_BILLING_CHUNK)) for group in groups)

    sizes = list(b.message_bytes)
    return {
        "send": billed(send_batches(sizes, lambda size: size)),
        "receive": billed(
            sizes[i : i + SQS_MAX_RECEIVE_MESSAGES] for i in range(0, len(sizes), SQS_MAX_RECEIVE_MESSAGES)
        ),
        "delete": math.ceil(len(sizes) / SQS_MAX_BATCH_ENTRIES),
    }


def claim_groups(b: Batch, records_per_message: int) -> int:
    """Groups the guard claims a batch in: whole messages of up to MAX_GROUP records (a larger message alone)."""
    per_group = max(1, MAX_GROUP // records_per_message)
    return math.ceil(b.messages / per_group)


@dataclass(frozen=True)
class GuardUnits:
    requests_per_batch: float
    groups: int
    read_units: float  # per batch
    transact_units: float
    bookkeeping_units: float  # the release marker, and any lock, unlock or resent claim: 1 WRU a call (at most)

    @property
    def write_units(self) -> float:
        return self.transact_units + self.bookkeeping_units


def guard_units(b: Batch, measured: Measured, records_per_message: int) -> GuardUnits:
    requests = measured.dynamodb_requests_per_1k * b.records / 1000
    groups = claim_groups(b, records_per_message)
    return GuardUnits(
        requests_per_batch=requests,
        groups=groups,
        read_units=DYNAMODB_READ_UNITS_PER_RECORD * BLIND_REFUSED_SHARE * b.records,
        transact_units=DYNAMODB_TRANSACT_UNITS_PER_RECORD * (1 + BLIND_REFUSED_SHARE) * b.records,
        bookkeeping_units=max(0.0, requests - groups),
    )


# ------------------------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class ShapeModel:
    batch: Batch
    measured: Measured
    records_per_message: int
    invocations: dict[int, Invocation]  # by MemorySize
    sqs: dict[str, int]
    guard: GuardUnits


def model(measurements: Measurements) -> list[ShapeModel]:
    defaults = TEMPLATE_DEFAULTS
    result = []
    for b, (_, records_per_message, _, _) in zip(batches(defaults["batch_size"]), SHAPES, strict=True):
        measured = measurements.by_shape[b.name]
        result.append(
            ShapeModel(
                batch=b,
                measured=measured,
                records_per_message=records_per_message,
                invocations={
                    memory: invocation(b, measured, memory, defaults["pinecone_in_flight"]) for memory in MEMORY_SIZES
                },
                sqs=sqs_requests(b),
                guard=guard_units(b, measured, records_per_message),
            )
        )
    return result


def recommended_memory(shapes_: Sequence[ShapeModel]) -> int:
    """The MemorySize with the shortest batches on every shape; of those within 1% of it, the cheapest."""
    fastest = {s.batch.name: min(i.duration_ms for i in s.invocations.values()) for s in shapes_}
    candidates = [
        memory
        for memory in MEMORY_SIZES
        if all(s.invocations[memory].duration_ms <= fastest[s.batch.name] * 1.01 for s in shapes_)
    ]
    return min(candidates, key=lambda memory: sum(s.invocations[memory].usd * per_million(s.batch) for s in shapes_))


@dataclass(frozen=True)
class Costs:
    """USD per million records, by line item."""

    sqs: float
    lambda_requests: float
    lambda_duration: float
    dynamodb_reads: float
    dynamodb_claims: float
    dynamodb_bookkeeping: float
    pinecone: float

    @property
    def total(self) -> float:
        return (
            self.sqs
            + self.lambda_requests
            + self.lambda_duration
            + self.dynamodb_reads
            + self.dynamodb_claims
            + self.dynamodb_bookkeeping
            + self.pinecone
        )


def costs(s: ShapeModel, memory_mb: int) -> Costs:
    n = per_million(s.batch)
    call = s.invocations[memory_mb]
    return Costs(
        sqs=sum(s.sqs.values()) * n * SQS_USD_PER_REQUEST,
        lambda_requests=n * LAMBDA_USD_PER_REQUEST,
        lambda_duration=n * call.gb_seconds * LAMBDA_USD_PER_GB_SECOND,
        dynamodb_reads=n * s.guard.read_units * DYNAMODB_USD_PER_RRU,
        dynamodb_claims=n * s.guard.transact_units * DYNAMODB_USD_PER_WRU,
        dynamodb_bookkeeping=n * s.guard.bookkeeping_units * DYNAMODB_USD_PER_WRU,
        pinecone=n * sum(s.batch.request_units) * PINECONE_USD_PER_WU,
    )


@dataclass(frozen=True)
class Limits:
    """Records a second each limit allows (one namespace, or the whole deployment)."""

    pinecone_requests: float
    pinecone_bytes: float
    dynamodb_partition: float
    lambda_by_memory: dict[int, float]  # the deployment at the template's MaximumConcurrency
    lambda_at_most: float  # MaximumConcurrency at its maximum, at the recommended MemorySize
    dynamodb_table: float

    def per_namespace(self) -> dict[str, float]:
        return {
            "Pinecone upsert requests": self.pinecone_requests,
            "Pinecone upsert size": self.pinecone_bytes,
            "DynamoDB partition writes": self.dynamodb_partition,
        }


def limits(s: ShapeModel, recommended: int) -> Limits:
    b = s.batch
    write_units_per_record = s.guard.write_units / b.records
    slots = TEMPLATE_DEFAULTS["maximum_concurrency"]

    def lambda_rate(memory: int, concurrency: int) -> float:
        return concurrency * b.records / (s.invocations[memory].duration_ms / 1000)

    return Limits(
        pinecone_requests=PINECONE_UPSERTS_PER_S * b.records / b.requests,
        pinecone_bytes=PINECONE_UPSERT_BYTES_PER_S / b.bytes_per_record,
        dynamodb_partition=DYNAMODB_PARTITION_WRU_PER_S / write_units_per_record,
        lambda_by_memory={memory: lambda_rate(memory, slots) for memory in MEMORY_SIZES},
        lambda_at_most=lambda_rate(recommended, min(ESM_MAX_CONCURRENCY, LAMBDA_ACCOUNT_CONCURRENCY)),
        dynamodb_table=DYNAMODB_TABLE_WRU_PER_S / write_units_per_record,
    )


# ------------------------------------------------------------------------------------------- rendering
def _n(value: float) -> str:
    return f"{value:,.0f}"


def _usd(value: float) -> str:
    if value >= 1:
        return f"{value:,.2f}"
    if value >= 0.01:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "--:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_inputs(shapes_: Sequence[ShapeModel], measurements: Measurements) -> list[str]:
    defaults = TEMPLATE_DEFAULTS
    rows = []
    for s in shapes_:
        b = s.batch
        rows.append(
            [
                b.name,
                _n(b.records),
                _n(max(b.message_bytes)),
                _n(b.event_bytes),
                f"{b.requests} ({' + '.join(map(str, b.request_records))})",
                _n(b.bytes_per_record),
                _n(b.record_bytes / b.records),
                _n(s.measured.cpu_us_per_record),
                _n(s.measured.dynamodb_requests_per_1k),
            ]
        )
    return [
        f"Template defaults read from template.yaml: IngestFunction MemorySize {defaults['memory_mb']} MB,"
        f" IngestBatchSize {defaults['batch_size']}, MaximumConcurrency {defaults['maximum_concurrency']},"
        f" PineconeMaxConcurrency {defaults['pinecone_in_flight']}. Measured figures: {measurements.source}.",
        "",
        *_table(
            [
                "shape",
                "records per batch",
                "largest message, bytes",
                "event, bytes",
                "upsert requests per batch (records each)",
                "request bytes per record (JSON sent)",
                "Pinecone record size, bytes",
                "handler CPU per record, us (measured)",
                "DynamoDB requests per 1,000 records (measured)",
            ],
            rows,
        ),
    ]


def render_lambda(shapes_: Sequence[ShapeModel]) -> list[str]:
    rows = []
    for s in shapes_:
        for memory, call in s.invocations.items():
            rows.append(
                [
                    s.batch.name,
                    _n(memory),
                    f"{cpu_share(memory):.2f}",
                    _n(call.cpu_ms),
                    _n(call.wait_ms),
                    _n(call.duration_ms),
                    _n(s.batch.records / (call.duration_ms / 1000)),
                    _usd(call.usd * per_million(s.batch)),
                ]
            )
    return _table(
        [
            "shape",
            "MemorySize, MB",
            "vCPU share",
            "handler CPU, ms",
            "waits, ms",
            "duration per batch, ms",
            "records/s per invocation",
            "Lambda USD per million records",
        ],
        rows,
    )


def render_recommendation(shapes_: Sequence[ShapeModel]) -> list[str]:
    current = TEMPLATE_DEFAULTS["memory_mb"]
    best = recommended_memory(shapes_)
    lines = [
        f"Recommended MemorySize for IngestFunction: **{best:,} MB** (template: {current:,} MB)."
        f" Against {current:,} MB:",
        "",
    ]
    for s in shapes_:
        now, then = s.invocations[current], s.invocations[best]
        n = per_million(s.batch)
        total = costs(s, best).total
        lines.append(
            f"* {s.batch.name}: {now.duration_ms:,} -> {then.duration_ms:,} ms per batch"
            f" ({now.duration_ms / then.duration_ms:.1f}x the records per second of one invocation); Lambda"
            f" USD {_usd(now.usd * n)} -> {_usd(then.usd * n)} per million records,"
            f" {then.usd * n / total:.2%} of the total at {best:,} MB"
        )
    return lines


def render_costs(shapes_: Sequence[ShapeModel]) -> list[str]:
    best = recommended_memory(shapes_)
    lines: list[str] = []
    for s in shapes_:
        b, n, c = s.batch, per_million(s.batch), costs(s, best)
        call = s.invocations[best]
        new_units = n * sum(b.request_units)
        overwrite_units = n * sum(write_units(2 * size) for size in b.request_record_bytes)
        json_units = n * sum(math.ceil(size / PINECONE_WU_BYTES) for size in b.request_bytes)
        sqs_rows = [
            (
                "SQS SendMessageBatch (producer: <= 10 messages, <= 1 MiB per call)",
                s.sqs["send"],
            ),
            ("SQS ReceiveMessage (event source: <= 10 messages per call)", s.sqs["receive"]),
            ("SQS DeleteMessageBatch (event source)", s.sqs["delete"]),
        ]
        rows = [
            [item, f"{_n(calls * n)} requests", "0.40 per million", _usd(calls * n * SQS_USD_PER_REQUEST)]
            for item, calls in sqs_rows
        ]
        rows += [
            ["Lambda invocations", f"{_n(n)} requests", "0.20 per million", _usd(c.lambda_requests)],
            [
                f"Lambda duration at {best:,} MB",
                f"{n * call.gb_seconds:,.1f} GB-s",
                "0.0000166667 per GB-s",
                _usd(c.lambda_duration),
            ],
            [
                "DynamoDB BatchGetItem, strongly consistent (records a blind claim refuses: none here)",
                f"{_n(n * s.guard.read_units)} RRU",
                "0.125 per million",
                _usd(c.dynamodb_reads),
            ],
            [
                "DynamoDB TransactWriteItems puts (2 per record)",
                f"{_n(n * s.guard.transact_units)} WRU",
                "0.625 per million",
                _usd(c.dynamodb_claims),
            ],
            [
                "DynamoDB lock, unlock, release marker (at most)",
                f"{_n(n * s.guard.bookkeeping_units)} WRU",
                "0.625 per million",
                _usd(c.dynamodb_bookkeeping),
            ],
            ["Pinecone upserts, all records new", f"{_n(new_units)} WU", "4.00 per million", _usd(c.pinecone)],
            ["**total**", "", "", f"**{_usd(c.total)}**"],
            [
                "Pinecone if every upsert replaces an existing record",
                f"{_n(overwrite_units)} WU",
                "4.00 per million",
                _usd(overwrite_units * PINECONE_USD_PER_WU),
            ],
            [
                "Pinecone if WUs were counted on the JSON sent",
                f"{_n(json_units)} WU",
                "4.00 per million",
                _usd(json_units * PINECONE_USD_PER_WU),
            ],
        ]
        lines += [f"**{b.name}** ({_n(n)} batches per million records)", ""]
        lines += _table(["line item", "per million records", "USD per unit", "USD"], rows, "lrrr")
        lines.append("")
    return lines[:-1]


def render_limits(shapes_: Sequence[ShapeModel]) -> list[str]:
    best = recommended_memory(shapes_)
    current = TEMPLATE_DEFAULTS["memory_mb"]
    slots = TEMPLATE_DEFAULTS["maximum_concurrency"]
    all_limits = [limits(s, best) for s in shapes_]
    header = ["limit (records/s)", "scope", *(s.batch.name for s in shapes_)]
    rows: list[list[str]] = []

    def row(label: str, scope: str, values: Iterable[float]) -> None:
        rows.append([label, scope, *(_n(v) for v in values)])

    row(
        "Pinecone: 100 upsert requests/s x records per request",
        "namespace",
        (lim.pinecone_requests for lim in all_limits),
    )
    row(
        "Pinecone: 50 MB/s of upserts / request bytes per record",
        "namespace",
        (lim.pinecone_bytes for lim in all_limits),
    )
    row(
        "DynamoDB: 1,000 WRU/s per partition / guard WRU per record",
        "namespace",
        (lim.dynamodb_partition for lim in all_limits),
    )
    for memory in (current, best):
        row(
            f"Lambda: MaximumConcurrency {slots} at {memory:,} MB",
            "deployment",
            (lim.lambda_by_memory[memory] for lim in all_limits),
        )
    row(
        f"Lambda: MaximumConcurrency {ESM_MAX_CONCURRENCY:,} at {best:,} MB"
        f" (account default: {LAMBDA_ACCOUNT_CONCURRENCY:,})",
        "deployment",
        (lim.lambda_at_most for lim in all_limits),
    )
    row("DynamoDB: 40,000 WRU/s per table (on demand)", "deployment", (lim.dynamodb_table for lim in all_limits))
    binding = [min(lim.per_namespace().items(), key=lambda item: item[1]) for lim in all_limits]
    rows.append(["**binds first, one namespace**", "namespace", *(f"**{_n(v)}**: {k}" for k, v in binding)])
    after_split = [
        min(
            ((k, v) for k, v in lim.per_namespace().items() if k != "DynamoDB partition writes"),
            key=lambda item: item[1],
        )
        for lim in all_limits
    ]
    rows.append(
        ["then, once DynamoDB has split the partition", "namespace", *(f"{_n(v)}: {k}" for k, v in after_split)]
    )
    rows.append(
        [
            f"namespaces that fill MaximumConcurrency {slots} at {current:,} MB",
            "deployment",
            *(
                _n(math.ceil(lim.lambda_by_memory[current] / v))
                for lim, (_, v) in zip(all_limits, binding, strict=True)
            ),
        ]
    )
    return _table(header, rows, "llrrr")


def render_past_limits(shapes_: Sequence[ShapeModel]) -> list[str]:
    defaults = TEMPLATE_DEFAULTS
    grpc = batches(defaults["batch_size"], "grpc")
    larger = batches(LARGER_BATCH)
    header = ["change", *(s.batch.name for s in shapes_)]

    def requests_row(bs: Sequence[Batch | None]) -> list[str]:
        return [
            "-" if b is None else f"{b.requests} per batch; {_n(PINECONE_UPSERTS_PER_S * b.records / b.requests)}"
            for b in bs
        ]

    rest = [s.batch for s in shapes_]
    bigger: list[Batch | None] = [
        None if messages else b for b, (messages, _, _, _) in zip(larger, SHAPES, strict=True)
    ]
    rows = [
        ["as deployed (REST): upsert requests; records/s at 100 requests/s", *requests_row(rest)],
        ["gRPC (PineconeTransport=grpc): the same", *requests_row(grpc)],
        [
            "gRPC: request bytes per record; records/s at 50 MB/s",
            *(f"{_n(b.bytes_per_record)}; {_n(PINECONE_UPSERT_BYTES_PER_S / b.bytes_per_record)}" for b in grpc),
        ],
        [f"IngestBatchSize {LARGER_BATCH}: upsert requests; records/s at 100 requests/s", *requests_row(bigger)],
        [
            f"IngestBatchSize {LARGER_BATCH}: event bytes (Lambda takes 6 MB: {LAMBDA_MAX_EVENT_BYTES:,})",
            *("-" if b is None else _n(b.event_bytes) for b in bigger),
        ],
    ]
    return _table(header, rows, "lrrr")


def render(measurements: Measurements) -> dict[str, str]:
    """docs/capacity.md's generated blocks, by name."""
    shapes_ = model(measurements)
    blocks = {
        "inputs": render_inputs(shapes_, measurements),
        "lambda": render_lambda(shapes_),
        "recommendation": render_recommendation(shapes_),
        "costs": render_costs(shapes_),
        "limits": render_limits(shapes_),
        "past-limits": render_past_limits(shapes_),
    }
    return {name: "\n".join(lines) for name, lines in blocks.items()}


# ----------------------------------------------------------------------------------- inputs and output
def bench_measurements(path: Path = BENCH_RESULTS) -> Measurements | None:
    """The guarded handler's figures from a full run of bench/ingest_throughput.py at this template's batch size."""
    if not path.exists():
        return None
    payload: dict[str, Any] = json.loads(path.read_text())
    if payload.get("quick") or payload.get("ingest_batch_size") != TEMPLATE_DEFAULTS["batch_size"]:
        return None
    rows = {row["shape"]: row for row in payload.get("runs", []) if row.get("strategy") == GUARD_ON_ROW}
    names = [shape_name(*shape) for shape in shapes(TEMPLATE_DEFAULTS["batch_size"])]
    if any(rows.get(name, {}).get("cpu_us_per_record") is None for name in names):
        return None
    by_shape = {}
    for name in names:
        requests = rows[name].get("dynamodb_requests_per_1k")
        fallback = MEASURED.by_shape[name].dynamodb_requests_per_1k
        by_shape[name] = Measured(
            round(float(rows[name]["cpu_us_per_record"])), round(float(requests)) if requests else fallback
        )
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    written = datetime.fromtimestamp(path.stat().st_mtime, UTC).date().isoformat()
    rounds = payload.get("rounds", "?")
    return Measurements(f"{shown}, written {written} (handler, guard on; median of {rounds} rounds)", by_shape)


def marked(name: str, body: str) -> str:
    return f"{BEGIN.format(name=name)}\n\n{body}\n\n{END}"


def documented_blocks(text: str) -> dict[str, str]:
    """The generated blocks of a page, by name, without their markers and the blank lines inside them."""
    head, tail = BEGIN.split("{name}")
    pattern = re.compile(
        re.escape(head) + r"(?P<name>[a-z-]+)" + re.escape(tail) + r"\n\n(?P<body>.*?)\n\n" + re.escape(END), re.DOTALL
    )
    return {match["name"]: match["body"] for match in pattern.finditer(text)}


def write_doc(blocks: dict[str, str], page: Path = DOC) -> bool:
    """Replace each block of ``page`` by its new text; True when that changed the page."""
    text = page.read_text()
    updated = text
    for name, body in blocks.items():
        begin = BEGIN.format(name=name)
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(END), re.DOTALL)
        found = list(pattern.finditer(updated))
        if len(found) != 1:
            raise SystemExit(f"{page}: needs exactly one block starting {begin!r}")
        start, end = found[0].span()
        updated = updated[:start] + marked(name, body) + updated[end:]
    if updated != text:
        page.write_text(updated)
    return updated != text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--constants", action="store_true", help="use MEASURED even when bench results exist")
    parser.add_argument("--write", action="store_true", help="write the tables into docs/capacity.md")
    args = parser.parse_args(argv)
    measurements = None if args.constants else bench_measurements()
    if measurements is not None and measurements.by_shape != MEASURED.by_shape:
        print(
            f"note: {measurements.source} differs from MEASURED in tools/capacity_model.py; the page and its test"
            " use MEASURED, so copy these figures there: "
            + "; ".join(
                f"{k}: {v.cpu_us_per_record:g} us, {v.dynamodb_requests_per_1k:g}"
                for k, v in measurements.by_shape.items()
            ),
            file=sys.stderr,
        )
    blocks = render(measurements or MEASURED)
    for name, body in blocks.items():
        print(f"## {name}\n\n{body}\n")
    if args.write:
        print(f"{DOC.relative_to(ROOT)}: {'updated' if write_doc(blocks) else 'unchanged'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
