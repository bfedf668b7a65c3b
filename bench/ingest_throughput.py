"""Ingest throughput: the ingest handler against three peer designs, on three shapes, in one run.

Every strategy writes the same kind of batch (fresh ids, its own namespace) to the Pinecone emulator
in its own process, with 30 ms added to every upsert (the order of a round trip to Pinecone from
Lambda); moto's server (own process) holds the secret. Strategies:

* **naive**: for each message in order, ``json.loads`` and one ``index.upsert`` (Pinecone's examples);
* **per-record x5**: one upsert per record, 5 in flight (AWS Lakechain's Pinecone connector);
* **packed 2 MB**: records packed by their JSON size into requests of at most 2 MB / 1,000 records,
  sent one after another (the Pinecone AWS reference architecture);
* **handler**: ``functions/ingest/app.lambda_handler`` with the batch as one SQS event (warmed by one
  small invocation first, as a Lambda container would be).

Shapes: 10 messages x 100 records x 1536 dims; 500 x 2 x 384; 1,000 x 1 x 1536 with ~1 KB of text
metadata (a document-update stream). For each: vectors/s, upsert requests (and the minimum),
this process's CPU per record, and the emulator's CPU (``/proc``) as cores used during the run and
per request stream the strategy keeps in flight, so the harness is seen not to be the bound. Then
the handler's ratio to the best peer and to the naive worker, and the handler's CPU per record
against orjson decoding each message and encoding its records.

Run: ``.venv/bin/python bench/ingest_throughput.py [--json]``
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import boto3
import orjson

from bench.harness import (
    Context,
    Services,
    control,
    grpc_endpoint,
    local_services,
    make_bodies,
    sqs_event,
    upserts_served,
    wants_json,
    write_results,
)

API_KEY = "bench-key"
LATENCY_MS = 30
MAX_REQUEST_BYTES = 2_000_000
# (messages, records per message, dimension, bytes of text metadata per record)
SHAPES = [(10, 100, 1536, 0), (500, 2, 384, 0), (1000, 1, 1536, 1000)]
PER_RECORD_IN_FLIGHT = 5


@dataclass
class Run:
    shape: str
    strategy: str
    vectors_per_s: float
    requests: int
    minimum_requests: int
    cpu_us_per_record: float
    emulator_cores: float
    streams: int

    @property
    def emulator_cores_per_stream(self) -> float:
        return self.emulator_cores / self.streams


def _records(body: str) -> list[dict[str, Any]]:
    """The SDK's dict form of a message's records (what a peer passes to ``index.upsert``)."""
    return [
        {"id": r["id"], "values": r["values"], "metadata": {**r["metadata"], "_version": r["version"]}}
        for r in json.loads(body)["records"]
    ]


def naive(index: Any, bodies: list[str], namespace: str) -> int:
    for body in bodies:
        index.upsert(vectors=_records(body), namespace=namespace)
    return 1


def per_record(host: str, bodies: list[str], namespace: str) -> int:
    from pinecone import AsyncIndex

    async def run() -> None:
        slots = asyncio.Semaphore(PER_RECORD_IN_FLIGHT)
        async_index = AsyncIndex(host=host, api_key=API_KEY)

        async def one(record: dict[str, Any]) -> None:
            async with slots:
                await async_index.upsert(vectors=[record], namespace=namespace)

        async with asyncio.TaskGroup() as group:
            for body in bodies:
                for record in _records(body):
                    group.create_task(one(record))
        await async_index.close()

    asyncio.run(run())
    return PER_RECORD_IN_FLIGHT


def packed(index: Any, bodies: list[str], namespace: str) -> int:
    batch: list[dict[str, Any]] = []
    size = 0
    for body in bodies:
        for record in _records(body):
            record_size = len(json.dumps(record)) + 1
            if batch and (size + record_size > MAX_REQUEST_BYTES - 1000 or len(batch) == 1000):
                index.upsert(vectors=batch, namespace=namespace)
                batch, size = [], 0
            batch.append(record)
            size += record_size
    if batch:
        index.upsert(vectors=batch, namespace=namespace)
    return 1


def orjson_cost(bodies: list[str]) -> float:
    """CPU seconds to decode each message and encode its records as one request body."""
    start = time.process_time()
    for body in bodies:
        message = orjson.loads(body)
        orjson.dumps({"vectors": message["records"], "namespace": "ns"})
    return time.process_time() - start


def minimum_requests(bodies: list[str]) -> int:
    records = [r for body in bodies for r in orjson.loads(body)["records"]]
    total = sum(len(orjson.dumps(r)) + 1 for r in records)
    return max(math.ceil(len(records) / 1000), math.ceil(total / MAX_REQUEST_BYTES))


def measure(services: Services, name: str, shape: str, vectors: int, minimum: int, call: Callable[[], int]) -> Run:
    before = upserts_served(services.emulator)
    emulator_cpu = services.emulator_cpu()
    cpu = time.process_time()
    start = time.perf_counter()
    streams = call()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    emulator_cpu = services.emulator_cpu() - emulator_cpu
    return Run(
        shape=shape,
        strategy=name,
        vectors_per_s=vectors / wall,
        requests=upserts_served(services.emulator) - before,
        minimum_requests=minimum,
        cpu_us_per_record=cpu / vectors * 1e6,
        emulator_cores=emulator_cpu / wall,
        streams=streams,
    )


def main() -> None:
    runs: list[Run] = []
    reference: dict[str, float] = {}
    with local_services(API_KEY) as services:
        from pinecone import Pinecone, ServerlessSpec

        secret = boto3.client("secretsmanager").create_secret(
            Name="bench", SecretString=json.dumps({"api_key": API_KEY})
        )
        dlq = boto3.client("sqs").create_queue(QueueName="bench-dlq")["QueueUrl"]
        pc = Pinecone(api_key=API_KEY, host=services.emulator)
        control(services.emulator, "faults/rules", {"operation": "upsert", "latency_ms": LATENCY_MS})
        for shape_no, (messages, records, dim, text) in enumerate(SHAPES):
            shape = f"{messages} x {records} x {dim}" + (" + text" if text else "")
            name = f"bench-{shape_no}"
            pc.create_index(
                name=name, dimension=dim, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
            )
            host = pc.describe_index(name).host
            index = pc.Index(host=host)
            os.environ.update(
                PINECONE_SECRET_ARN=secret["ARN"],
                PINECONE_INDEX_HOST=host,
                PINECONE_INDEX_DIMENSION=str(dim),
                PINECONE_INDEX_METRIC="cosine",
                TENANT_REGISTRY=json.dumps({"relay": "ns-relay"}),
                DEAD_LETTER_QUEUE_URL=dlq,
            )
            from functions.ingest import app
            from vector_relay.dependencies import reset_worker_dependencies
            from vector_relay.settings import get_settings

            vectors = messages * records
            grpc_host = grpc_endpoint(services.emulator, name)

            def bodies(seed: int, tenant: str = "relay") -> list[str]:
                return make_bodies(messages, records, dim, tenant, seed=shape_no * 10 + seed, text_bytes=text)  # noqa: B023

            peer_bodies = [bodies(seed) for seed in (1, 2, 3)]  # made before the clock starts
            handler_bodies = bodies(4)
            minimum = minimum_requests(handler_bodies)
            events = {"rest": sqs_event(handler_bodies), "grpc": sqs_event(bodies(5))}

            def handler(transport: str) -> Callable[[], int]:
                def run() -> int:
                    response = app.lambda_handler(events[transport], Context())  # noqa: B023
                    assert response == {"batchItemFailures": []}, response
                    return min(minimum, get_settings().pinecone_max_concurrency)  # noqa: B023

                return run

            def warm(transport: str) -> None:
                """A worker for ``transport``, warmed by one small invocation (as a Lambda container is)."""
                os.environ.update(PINECONE_TRANSPORT=transport, PINECONE_GRPC_HOST=grpc_host)  # noqa: B023
                get_settings.cache_clear()
                reset_worker_dependencies()
                app.lambda_handler(sqs_event(make_bodies(1, 1, dim, "relay", seed=99)), Context())  # noqa: B023

            for strategy, call in [
                ("naive", lambda: naive(index, peer_bodies[0], "ns-naive")),  # noqa: B023
                (f"per-record x{PER_RECORD_IN_FLIGHT}", lambda: per_record(host, peer_bodies[1], "ns-record")),  # noqa: B023
                ("packed 2 MB", lambda: packed(index, peer_bodies[2], "ns-packed")),  # noqa: B023
                ("handler", handler("rest")),
                ("handler gRPC", handler("grpc")),
            ]:
                if strategy.startswith("handler"):
                    warm("grpc" if strategy.endswith("gRPC") else "rest")
                runs.append(measure(services, strategy, shape, vectors, minimum, call))
            reference[shape] = orjson_cost(handler_bodies) / vectors * 1e6
            index.close()
    report(runs, reference)


def report(runs: list[Run], reference: dict[str, float]) -> None:
    print(f"emulator in its own process, {LATENCY_MS} ms added per upsert")
    summary = []
    for shape in dict.fromkeys(run.shape for run in runs):
        print(f"\n{shape}")
        print(
            f"  {'strategy':<15}{'vectors/s':>10}{'requests':>10}{'minimum':>9}{'CPU us/rec':>12}"
            f"{'emulator cores':>16}{'per stream':>12}"
        )
        shape_runs = [run for run in runs if run.shape == shape]
        for run in shape_runs:
            print(
                f"  {run.strategy:<15}{run.vectors_per_s:>10.0f}{run.requests:>10}{run.minimum_requests:>9}"
                f"{run.cpu_us_per_record:>12.0f}{run.emulator_cores:>16.2f}{run.emulator_cores_per_stream:>12.2f}"
            )
        by_name = {run.strategy: run for run in shape_runs}
        handler, grpc = by_name["handler"], by_name["handler gRPC"]
        peers = [run for run in shape_runs if not run.strategy.startswith("handler")]
        best = max(peers, key=lambda run: run.vectors_per_s)
        naive_run = peers[0]
        cpu_ratio = handler.cpu_us_per_record / reference[shape]
        print(
            f"  handler / best peer ({best.strategy}): {handler.vectors_per_s / best.vectors_per_s:.1f}x;"
            f" handler / naive: {handler.vectors_per_s / naive_run.vectors_per_s:.1f}x"
        )
        print(
            f"  handler CPU per record {handler.cpu_us_per_record:.0f} us; orjson decode + encode"
            f" {reference[shape]:.0f} us; ratio {cpu_ratio:.2f}x"
        )
        print(
            f"  gRPC / REST: {grpc.vectors_per_s / handler.vectors_per_s:.2f}x the vectors/s,"
            f" {grpc.cpu_us_per_record / handler.cpu_us_per_record:.2f}x the handler's CPU per record"
        )
        summary.append(
            {
                "shape": shape,
                "best_peer": best.strategy,
                "handler_over_best_peer": handler.vectors_per_s / best.vectors_per_s,
                "handler_over_naive": handler.vectors_per_s / naive_run.vectors_per_s,
                "orjson_us_per_record": reference[shape],
                "handler_cpu_over_orjson": cpu_ratio,
                "grpc_over_rest_vectors_per_s": grpc.vectors_per_s / handler.vectors_per_s,
                "grpc_over_rest_cpu_per_record": grpc.cpu_us_per_record / handler.cpu_us_per_record,
            }
        )
    if wants_json():
        payload = {
            "latency_ms": LATENCY_MS,
            "runs": [asdict(run) | {"emulator_cores_per_stream": run.emulator_cores_per_stream} for run in runs],
            "summary": summary,
        }
        print(f"\nwrote {write_results('ingest_throughput', payload)}")


if __name__ == "__main__":
    main()
