"""Ingest throughput: the ingest handler as deployed, and four peers as they really run, on batches SQS can deliver.

Issue 33 item 1. Each strategy writes one SQS event's worth of upsert messages (fresh record ids
every time, a namespace of its own) to the Pinecone emulator, in its own process; rounds alternate
the strategies (each round starts one further along), and every figure is the median of the rounds.

**The handler, as deployed.** ``functions/ingest/app.lambda_handler`` with the environment
template.yaml gives IngestFunction, resolved from the template itself (``relay_local.cloudformation``):
the API key from its secret, the tenant registry from its SSM parameter, the rotation marker,
``PINECONE_MAX_CONCURRENCY`` 8, ``PINECONE_TRANSPORT`` rest, the DLQ, ``LogLevel`` INFO with metrics
on (their lines discarded, as Lambda ships them to CloudWatch), and ``WRITE_VERSION_TABLE``, which
the template always sets: the version guard's table (tests/integration/conftest.py's
``create_version_table``) lives in moto's server, in its own process. The context has the
function's Timeout (60 s) and MemorySize (1,769 MB). Each handler run follows a warm-up invocation,
as in a warm container. "handler, guard off" is the same without ``WRITE_VERSION_TABLE``: not a
configuration the template can deploy, shown for the guard's cost.

**Only batches that can reach the function.** SQS takes a message of at most 1 MiB (1,048,576
bytes, body and attributes: ``vector_relay.sqs.limits``); Lambda's event source mapping hands the
function at most ``IngestBatchSize`` messages (template default 100) and never more than the
synchronous invocation payload, 6 MB (6,291,456 bytes: ``relay_local.event_source``'s
``MAX_PAYLOAD_BYTES``). Each shape's largest message and its whole event are measured as the JSON
the event carries (the bodies escaped inside it) and a shape over any limit is refused. Shapes
(messages x records per message x dimension):

* 7 x 64 x 1536: ~830 KB messages; an eighth would take the event past 6 MB;
* 100 x 2 x 384: many small messages, a full batch at the template's IngestBatchSize (500 would need
  a stack deployed with a larger one);
* 100 x 1 x 1536 + 1 KB of text metadata: a document-update stream, also a full batch (~400 would
  fit 6 MB, again only with a larger IngestBatchSize).

``--ingest-batch-size N`` measures a stack deployed with ``IngestBatchSize=N``: the two full-batch
shapes then take N messages (N = 400 fits 6 MB for both; 500 is refused on the third).

**The peers**, written here in lean Python as their designs would run in it: records taken from
each message with orjson, each request body encoded with orjson and sent as a raw HTTP POST to the
index host's ``/vectors/upsert`` with the ``Api-Key`` header (``http.client``, one kept-alive
connection per thread). No peer validates anything or converts records through the SDK's models:
issue 33 measured that conversion at 760-830 us a record against 110-150 us for orjson and a raw
POST, and the reference architecture is TypeScript, where a request is ``JSON.stringify`` and a POST.

* **naive**: one request per message, one after another (the loop of Pinecone's examples);
* **per record x10**: one request per record (AWS Lakechain's Pinecone connector), 10 in flight:
  its event source mapping runs 5 invocations at once (``maxConcurrency: 5``) of 2 messages each
  (``batchSize: 2``), and Powertools' TypeScript ``BatchProcessor`` handles a batch's records in
  parallel;
* **packed 2 MB**: the Pinecone AWS reference architecture's ``emu`` worker: records packed by their
  JSON size into requests of at most 2 MB (the handler's own figure, 2,000,000 bytes) and 1,000
  vectors, sent one after another;
* **packed 2 MB x8**: the same packing with 8 requests in flight (the handler's
  ``PINECONE_MAX_CONCURRENCY``): the strongest reference, the baseline of the ratio column.

**The emulator's latency.** Its only latency model is a fault rule's fixed ``latency_ms``: 30 ms is
added to every upsert on the measured index, whatever its size (the order of a round trip from
Lambda to Pinecone). Nothing in it grows with the request's size except its own CPU to parse and
store the request; on loopback there is no transfer time. So a 2 MB request waits as long as one
holding a single record: the fixed latency is kind to strategies that send few large requests.

**Columns.** vectors/s; its ratio to "packed 2 MB x8" measured in the same rounds; the percentage of
the emulator's ceiling, measured in the same rounds: ``bench/emulator_throughput.py``'s upsert
loop (``upsert_concurrently``, its 4 client threads) sending the shape's records in 2 MB requests
built before the clock starts, on an index with no added latency, so the emulator rather than the
client is the bound; Pinecone upsert requests per batch; this process's CPU per record (every row
runs in this process: the handler, its boto3 calls, the peers' threads); the rate that CPU would
allow at the template's MemorySize (Lambda gives a function CPU in proportion to memory, one vCPU
at 1,769 MB, IngestFunction's: the whole core this process had; 0.29 of one at 512 MB); DynamoDB
requests per 1,000 records for the guarded row, and the CPU moto's server spent meanwhile per 1,000
records (from the process's CPU clock, to the nanosecond: ``/proc`` counts 10 ms ticks, one or two
per round; the guard's DynamoDB, which on this 2-core machine competes with the handler for the
cores where in AWS it runs elsewhere). Ratios are between rows of this run, never wall-clock
targets.

``--quick``: one round per shape and a small ceiling run: a smoke run that the code works, not a
measurement. ``--json`` writes ``bench/results/ingest_throughput.json`` (``bench/plot.py`` draws it).

Run: ``.venv/bin/python bench/ingest_throughput.py [--quick] [--json] [--ingest-batch-size N]``
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import count
from typing import Any
from urllib.parse import urlsplit

import boto3
import orjson

from bench.emulator_throughput import THREADS as CEILING_THREADS
from bench.emulator_throughput import upsert_concurrently
from bench.harness import Context, Services, control, local_services, make_bodies, sqs_event, upserts_served
from bench.harness import write_results as write_json
from relay_local.cloudformation import FunctionSpec, LocalTemplate, PhysicalResource, TemplateError
from relay_local.event_source import MAX_PAYLOAD_BYTES
from tests.integration.conftest import create_version_table
from vector_relay.ingest.planning import MAX_UPSERT_REQUEST_BYTES
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES

API_KEY = "bench-key"
LATENCY_MS = 30
ROUNDS = 5
TENANT, NAMESPACE = "relay", "ns-relay"
FULL_BATCH = 0  # a shape's message count: as many as the function's IngestBatchSize
# (messages, records per message, dimension, bytes of text metadata per record)
SHAPES = [(7, 64, 1536, 0), (FULL_BATCH, 2, 384, 0), (FULL_BATCH, 1, 1536, 1000)]
MAX_VECTORS_PER_REQUEST = 1000  # Pinecone's upsert limit
PER_RECORD_IN_FLIGHT = 10  # Lakechain: 5 concurrent invocations x 2 messages, records in parallel
LEAN_IN_FLIGHT = 8  # the template's PineconeMaxConcurrency
LAMBDA_MB_PER_VCPU = 1769  # Lambda: a function with 1,769 MB has the equivalent of one vCPU
CEILING_REQUESTS = {False: 24, True: 8}  # 2 MB requests per ceiling run; by --quick
LEAN = "packed 2 MB x8"


# ---------------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    messages: int
    records: int
    dimension: int
    text_bytes: int
    bodies: tuple[str, ...]  # one batch; each run sends a copy with its own record ids
    largest_message: int  # bytes, as SQS counts them
    event_bytes: int  # the SQS event's JSON, as Lambda's payload limit counts it

    @property
    def name(self) -> str:
        return f"{self.messages} x {self.records} x {self.dimension}" + (" + text" if self.text_bytes else "")

    @property
    def vectors(self) -> int:
        return self.messages * self.records


def tagged(bodies: Iterable[str], tag: str) -> list[str]:
    """``bodies`` with ``tag`` before every record id: fresh ids, and with a fixed-width tag the same sizes."""
    return [body.replace('"id": "', f'"id": "{tag}') for body in bodies]


def run_tag(round_no: int, slot: int) -> str:
    return f"{round_no:03d}{slot:03d}-"


def deliverable_shapes(batch_size: int) -> list[Shape]:
    """The shapes for a function that takes ``batch_size`` messages per event, or exit naming one that cannot arrive."""
    shapes = []
    for shape_no, (messages, records, dimension, text_bytes) in enumerate(SHAPES):
        messages = messages or batch_size
        bodies = make_bodies(messages, records, dimension, TENANT, seed=shape_no, text_bytes=text_bytes)
        sent = tagged(bodies, run_tag(0, 0))  # what a run sends: every tag has this width
        shape = Shape(
            messages,
            records,
            dimension,
            text_bytes,
            tuple(bodies),
            largest_message=max(len(body.encode()) for body in sent),
            event_bytes=len(json.dumps(sqs_event(sent)).encode()),
        )
        refusals = []
        if messages > batch_size:
            refusals.append(f"{messages} messages, and an event holds at most IngestBatchSize = {batch_size}")
        if shape.largest_message > SQS_MAX_MESSAGE_BYTES:
            refusals.append(f"a message of {shape.largest_message:,} bytes, over SQS's {SQS_MAX_MESSAGE_BYTES:,}")
        if shape.event_bytes > MAX_PAYLOAD_BYTES:
            refusals.append(f"an event of {shape.event_bytes:,} bytes, over Lambda's {MAX_PAYLOAD_BYTES:,}")
        if refusals:
            sys.exit(f"shape {shape.name} cannot reach the ingest function: {'; '.join(refusals)}")
        shapes.append(shape)
    return shapes


# ----------------------------------------------------------------------------------------------- peers
class RawDataPlane:
    """``POST /vectors/upsert`` on one index host with the ``Api-Key`` header; one kept-alive connection per thread."""

    def __init__(self, host: str, api_key: str) -> None:
        url = urlsplit(host)
        self._address = url.netloc
        self._path = f"{url.path.rstrip('/')}/vectors/upsert"
        self._headers = {"Api-Key": api_key, "Content-Type": "application/json"}
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def upsert(self, body: bytes) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(self._address, timeout=60)
            with self._lock:
                self._opened.append(connection)
        connection.request("POST", self._path, body, self._headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"upsert answered {response.status}: {answer[:300]!r}")

    def close(self) -> None:
        for connection in self._opened:
            connection.close()


def wire_records(body: str) -> list[dict[str, Any]]:
    """A message's records as Pinecone's upsert carries them; nothing is checked (no peer validates)."""
    return [{"id": r["id"], "values": r["values"], "metadata": r["metadata"]} for r in orjson.loads(body)["records"]]


def request_body(encoded: list[bytes], namespace: str) -> bytes:
    return b'{"vectors":[' + b",".join(encoded) + b'],"namespace":' + orjson.dumps(namespace) + b"}"


def packed_requests(bodies: Iterable[str], namespace: str) -> Iterator[bytes]:
    """The records in order, packed by JSON size into request bodies of at most 2 MB and 1,000 vectors."""
    envelope = len(request_body([], namespace))
    batch: list[bytes] = []
    size = envelope
    for body in bodies:
        for record in wire_records(body):
            encoded = orjson.dumps(record)
            if batch and (size + len(encoded) + 1 > MAX_UPSERT_REQUEST_BYTES or len(batch) == MAX_VECTORS_PER_REQUEST):
                yield request_body(batch, namespace)
                batch, size = [], envelope
            batch.append(encoded)
            size += len(encoded) + 1
    if batch:
        yield request_body(batch, namespace)


def naive(plane: RawDataPlane, bodies: list[str], namespace: str) -> None:
    for body in bodies:
        plane.upsert(orjson.dumps({"vectors": wire_records(body), "namespace": namespace}))


def per_record(plane: RawDataPlane, bodies: list[str], namespace: str) -> None:
    def one(record: dict[str, Any]) -> None:
        plane.upsert(orjson.dumps({"vectors": [record], "namespace": namespace}))

    with ThreadPoolExecutor(PER_RECORD_IN_FLIGHT) as pool:
        list(pool.map(one, (record for body in bodies for record in wire_records(body))))


def packed(plane: RawDataPlane, bodies: list[str], namespace: str) -> None:
    for request in packed_requests(bodies, namespace):
        plane.upsert(request)


def packed_concurrently(plane: RawDataPlane, bodies: list[str], namespace: str) -> None:
    """As :func:`packed`, each request sent as soon as it is packed, at most LEAN_IN_FLIGHT at once."""
    with ThreadPoolExecutor(LEAN_IN_FLIGHT) as pool:
        for sent in [pool.submit(plane.upsert, request) for request in packed_requests(bodies, namespace)]:
            sent.result()


PEERS: dict[str, Callable[[RawDataPlane, list[str], str], None]] = {
    "naive": naive,
    f"per record x{PER_RECORD_IN_FLIGHT}": per_record,
    "packed 2 MB": packed,
    LEAN: packed_concurrently,
}


# --------------------------------------------------------------------------------------------- handler
class InvocationContext(Context):
    """A Lambda context with the function's timeout and memory, its deadline counted from creation."""

    def __init__(self, function: FunctionSpec) -> None:
        self.memory_limit_in_mb = function.memory_mb
        self._deadline = time.monotonic() + function.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextmanager
def stdout_discarded() -> Iterator[None]:
    """File descriptor 1 to /dev/null: the handler's log and metric lines (CloudWatch's, in Lambda)."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class AwsResources:
    """What the template creates and the ingest function's environment names, created in moto's server."""

    physical: dict[str, PhysicalResource]

    @classmethod
    def create(cls, template: LocalTemplate) -> AwsResources:
        secret = boto3.client("secretsmanager").create_secret(
            Name=template.default_name("PineconeApiKeySecret"),
            SecretString=json.dumps({"api_key": API_KEY, "key_id": "bench", "project_id": "bench"}),
        )["ARN"]
        physical = {"PineconeApiKeySecret": PhysicalResource(secret)}
        ssm = boto3.client("ssm")
        for logical_id in ("TenantRegistryParameter", "RotationMarkerParameter"):
            properties = template.resolve(template.properties(logical_id))
            ssm.put_parameter(Name=properties["Name"], Type=properties["Type"], Value=properties["Value"])
            physical[logical_id] = PhysicalResource(properties["Name"])
        for logical_id in ("IngestDeadLetterQueue", "ReceiptRetryQueue"):
            url = boto3.client("sqs").create_queue(QueueName=template.default_name(logical_id))["QueueUrl"]
            physical[logical_id] = PhysicalResource(url)
        table = template.default_name("WriteVersionTable")
        create_version_table(table)
        physical["WriteVersionTable"] = PhysicalResource(table)
        return cls(physical)

    def environment(self, template: LocalTemplate, function: FunctionSpec) -> dict[str, str]:
        template.physical.update(self.physical)
        return template.function_environment(function)


def deployed_template(batch_size: int | None, host: str = "", index: str = "", dimension: int = 0) -> LocalTemplate:
    """template.yaml with its defaults, an index the operator names (its host), and our one tenant."""
    parameters = {"InitialTenantRegistry": json.dumps({TENANT: NAMESPACE})}
    if host:
        parameters |= {
            "PineconeIndexHost": host,
            "PineconeIndexName": index,
            "PineconeIndexDimension": str(dimension),
            "PineconeIndexMetric": "cosine",
        }
    if batch_size is not None:
        parameters["IngestBatchSize"] = str(batch_size)
    return LocalTemplate(parameters=parameters)


class DeployedHandler:
    """The ingest handler in this process, configured as the template deploys it (guard on) or without the guard."""

    def __init__(self, function: FunctionSpec) -> None:
        self.function = function
        self.environment: dict[str, str] = {}
        self._warm_seeds = count(10_000)

    def configure(self, guarded: bool, dimension: int) -> None:
        """The function's environment, fresh worker dependencies, and one small warm-up invocation."""
        os.environ.update(self.environment)
        if not guarded:
            os.environ.pop("WRITE_VERSION_TABLE")
        from vector_relay.dependencies import reset_worker_dependencies
        from vector_relay.settings import get_settings

        get_settings.cache_clear()
        reset_worker_dependencies()
        assert (get_settings().write_version_table is not None) == guarded
        self.invoke(sqs_event(make_bodies(1, 1, dimension, TENANT, seed=next(self._warm_seeds))))
        # What configuring made (clients, a guard) is collected now, not inside the measured batch: a young-generation
        # collection of it took 20 ms there, in the first batch after a switch of configuration (2026-12-07).
        gc.collect()

    def invoke(self, event: dict[str, Any]) -> None:
        from functions.ingest import app

        with stdout_discarded():
            response = app.lambda_handler(event, InvocationContext(self.function))
        assert response == {"batchItemFailures": []}, response

    def guard_requests(self) -> int:
        from functions.ingest import app
        from vector_relay.dependencies import worker_dependencies

        guard = worker_dependencies(app.metrics).guard
        return guard.requests if guard else 0


# ------------------------------------------------------------------------------------------ measuring
@dataclass
class Sample:
    seconds: float
    cpu_seconds: float
    requests: int
    guard_requests: int
    moto_cpu_seconds: float  # moto's server meanwhile: DynamoDB's work, which in AWS runs elsewhere


def measure(services: Services, call: Callable[[], None], guard_requests: Callable[[], int]) -> Sample:
    requests, guard, cpu, moto = (
        upserts_served(services.emulator),
        guard_requests(),
        time.process_time(),
        services.moto_cpu(),
    )
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return Sample(
        seconds,
        cpu,
        upserts_served(services.emulator) - requests,
        guard_requests() - guard,
        services.moto_cpu() - moto,
    )


@dataclass
class Row:
    shape: str
    strategy: str
    vectors_per_s: float
    over_lean: float
    percent_of_ceiling: float
    requests: int
    cpu_us_per_record: float
    cpu_bound_vectors_per_s: float  # at the function's memory
    dynamodb_requests_per_1k: float | None
    moto_cpu_ms_per_1k: float | None  # moto's CPU per 1,000 records (the guard's DynamoDB, on this machine)


def run_shape(
    services: Services, shape: Shape, hosts: tuple[str, str], handler: DeployedHandler, quick: bool
) -> tuple[list[Row], float]:
    """Every strategy and the emulator's ceiling (on the two ``hosts``), in rotating order; the rows and the ceiling."""
    host, ceiling_host = hosts

    def handler_run(guarded: bool) -> Callable[[int, int], Callable[[], None]]:
        def prepare(round_no: int, slot: int) -> Callable[[], None]:
            handler.configure(guarded, shape.dimension)
            event = sqs_event(tagged(shape.bodies, run_tag(round_no, slot)))
            return lambda: handler.invoke(event)

        return prepare

    def peer_run(strategy: str) -> Callable[[int, int], Callable[[], None]]:
        def prepare(round_no: int, slot: int) -> Callable[[], None]:
            bodies = tagged(shape.bodies, run_tag(round_no, slot))
            namespace = "ns-" + strategy.replace(" ", "-")

            def run() -> None:
                plane = RawDataPlane(host, API_KEY)
                try:
                    PEERS[strategy](plane, bodies, namespace)
                finally:
                    plane.close()

            return run

        return prepare

    copies = math.ceil(CEILING_REQUESTS[quick] * MAX_UPSERT_REQUEST_BYTES / sum(map(len, shape.bodies)))

    def ceiling_run(round_no: int, slot: int) -> Callable[[], None]:
        bodies = [body for copy in range(copies) for body in tagged(shape.bodies, run_tag(round_no, slot) + f"{copy}-")]
        requests = list(packed_requests(bodies, "ns-ceiling"))  # built before the clock starts

        def run() -> None:
            plane = RawDataPlane(ceiling_host, API_KEY)
            try:
                upsert_concurrently(plane.upsert, requests, CEILING_THREADS)
            finally:
                plane.close()

        return run

    strategies: dict[str, Callable[[int, int], Callable[[], None]]] = {
        "handler, guard on": handler_run(True),
        "handler, guard off": handler_run(False),
        **{strategy: peer_run(strategy) for strategy in PEERS},
        "(emulator ceiling)": ceiling_run,
    }
    names = list(strategies)
    samples: dict[str, list[Sample]] = {strategy: [] for strategy in names}
    for round_no in range(1 if quick else ROUNDS):
        turn = round_no % len(names)
        for strategy in names[turn:] + names[:turn]:
            call = strategies[strategy](round_no, names.index(strategy))
            guarded = strategy == "handler, guard on"
            samples[strategy].append(measure(services, call, handler.guard_requests if guarded else lambda: 0))

    ceiling = statistics.median(shape.vectors * copies / s.seconds for s in samples.pop("(emulator ceiling)"))
    rates = {strategy: statistics.median(shape.vectors / s.seconds for s in runs) for strategy, runs in samples.items()}
    cpu_share = handler.function.memory_mb / LAMBDA_MB_PER_VCPU
    rows = []
    for strategy, runs in samples.items():
        cpu_per_record = statistics.median(s.cpu_seconds for s in runs) / shape.vectors
        guard = statistics.median(s.guard_requests for s in runs) / shape.vectors * 1000
        moto = statistics.median(s.moto_cpu_seconds for s in runs) / shape.vectors * 1e6  # ms per 1,000 records
        rows.append(
            Row(
                shape=shape.name,
                strategy=strategy,
                vectors_per_s=rates[strategy],
                over_lean=rates[strategy] / rates[LEAN],
                percent_of_ceiling=rates[strategy] / ceiling * 100,
                requests=runs[-1].requests,
                cpu_us_per_record=cpu_per_record * 1e6,
                cpu_bound_vectors_per_s=cpu_share / cpu_per_record,
                dynamodb_requests_per_1k=guard if strategy == "handler, guard on" else None,
                moto_cpu_ms_per_1k=moto if strategy == "handler, guard on" else None,
            )
        )
    return rows, ceiling


# ------------------------------------------------------------------------------------------------ main
@contextmanager
def shape_indexes(services: Services, shape_no: int, dimension: int) -> Iterator[tuple[str, str]]:
    """The shape's index (every upsert delayed by LATENCY_MS) and the ceiling's (no delay): their hosts."""
    from pinecone import Pinecone, ServerlessSpec

    pc = Pinecone(api_key=API_KEY, host=services.emulator)
    names = (f"bench-{shape_no}", f"ceiling-{shape_no}")
    for name in names:
        pc.create_index(
            name=name, dimension=dimension, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
    control(services.emulator, "faults/rules", {"operation": "upsert", "index": names[0], "latency_ms": LATENCY_MS})
    try:
        yield pc.describe_index(names[0]).host, pc.describe_index(names[1]).host
    finally:
        for name in names:
            pc.delete_index(name)  # frees the emulator's memory for the next shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round per shape: a smoke run, not a measurement")
    parser.add_argument("--json", action="store_true", help="write bench/results/ingest_throughput.json")
    parser.add_argument("--ingest-batch-size", type=int, help="the template's IngestBatchSize (default: its default)")
    args = parser.parse_args()

    try:
        template = deployed_template(args.ingest_batch_size)
    except TemplateError as error:  # an IngestBatchSize the template does not allow
        sys.exit(str(error))
    function = template.function("IngestFunction")
    (source,) = function.events
    shapes = deliverable_shapes(source.batch_size)
    handler = DeployedHandler(function)
    print(
        f"ingest throughput, {'--quick: one round, NOT a measurement' if args.quick else f'median of {ROUNDS} rounds'}"
    )
    print(
        f"handler as template.yaml deploys IngestFunction: Timeout {function.timeout_seconds} s, MemorySize"
        f" {function.memory_mb} MB, events of up to {source.batch_size} messages (IngestBatchSize) gathered over"
        f" {source.batching_window_seconds} s"
    )
    print(
        f"limits: a message <= {SQS_MAX_MESSAGE_BYTES:,} bytes (SQS, 1 MiB), an event <= {MAX_PAYLOAD_BYTES:,}"
        f" bytes (Lambda, 6 MB), measured as the event's JSON"
    )
    print(
        f"emulator (own process): a fixed {LATENCY_MS} ms added to every upsert whatever its size (its only latency"
        " model is a fault rule's fixed latency_ms; only its own parsing CPU grows with size)"
    )
    rows: list[Row] = []
    ceilings: dict[str, float] = {}
    with local_services(API_KEY) as services:
        os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)  # Lambda emits the function's metrics
        resources = AwsResources.create(template)
        for shape_no, shape in enumerate(shapes):
            with shape_indexes(services, shape_no, shape.dimension) as hosts:
                index_parameters = (hosts[0], f"bench-{shape_no}", shape.dimension)
                handler.environment = resources.environment(
                    deployed_template(args.ingest_batch_size, *index_parameters), function
                )
                if shape_no == 0:
                    shown = (
                        "PINECONE_MAX_CONCURRENCY",
                        "PINECONE_TRANSPORT",
                        "WRITE_VERSION_TABLE",
                        "POWERTOOLS_LOG_LEVEL",
                    )
                    print("function environment: " + ", ".join(f"{key}={handler.environment[key]}" for key in shown))
                shape_rows, ceilings[shape.name] = run_shape(services, shape, hosts, handler, args.quick)
            rows += shape_rows
            report(shape, shape_rows, ceilings[shape.name], function.memory_mb)
    if args.json:
        payload = {
            "quick": args.quick,
            "rounds": 1 if args.quick else ROUNDS,
            "latency_ms": LATENCY_MS,
            "latency_model": "fixed per upsert, independent of request size",
            "ingest_batch_size": source.batch_size,
            "memory_mb": function.memory_mb,
            "shapes": [
                {
                    "shape": shape.name,
                    "messages": shape.messages,
                    "records_per_message": shape.records,
                    "dimension": shape.dimension,
                    "text_bytes": shape.text_bytes,
                    "largest_message_bytes": shape.largest_message,
                    "event_bytes": shape.event_bytes,
                    "emulator_ceiling_vectors_per_s": ceilings[shape.name],
                }
                for shape in shapes
            ],
            "runs": [asdict(row) for row in rows],
        }
        print(f"\nwrote {write_json('ingest_throughput', payload)}")


def report(shape: Shape, rows: list[Row], ceiling: float, memory_mb: int) -> None:
    print(
        f"\n{shape.name}: {shape.vectors:,} records; largest message {shape.largest_message:,} bytes,"
        f" event {shape.event_bytes:,} bytes; emulator ceiling {ceiling:,.0f} vectors/s"
    )
    cpu_bound = f"CPU-bound @{memory_mb}MB"
    print(
        f"  {'strategy':<20}{'vectors/s':>10}{'/ ' + LEAN:>19}{'% ceiling':>11}{'requests':>10}"
        f"{'CPU us/rec':>12}{cpu_bound:>19}{'DynamoDB/1k rec':>17}{'moto ms/1k rec':>16}"
    )
    for row in rows:
        dynamodb = "-" if row.dynamodb_requests_per_1k is None else f"{row.dynamodb_requests_per_1k:.0f}"
        moto = "-" if row.moto_cpu_ms_per_1k is None else f"{row.moto_cpu_ms_per_1k:.0f}"
        print(
            f"  {row.strategy:<20}{row.vectors_per_s:>10,.0f}{row.over_lean:>18.2f}x{row.percent_of_ceiling:>10.0f}%"
            f"{row.requests:>10}{row.cpu_us_per_record:>12.0f}{row.cpu_bound_vectors_per_s:>19,.0f}{dynamodb:>17}"
            f"{moto:>16}"
        )


if __name__ == "__main__":
    main()
