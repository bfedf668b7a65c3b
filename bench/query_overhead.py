"""Per-query overhead of the query handler (parse, validate, reply) beyond the Pinecone call itself.

The emulator (holding 2,000 records of 1536 dims) and moto's server run in their own processes.
In the same run, for 20 batches of 10 queries with top_k=10 and metadata:

* baseline: ``index.query`` called directly through the SDK, one query after another;
* handler: ``functions/query/app.lambda_handler`` with each batch as one SQS event (queries run
  concurrently, replies sent to the reply queue in moto).

Prints wall time per query for both, this process's CPU per query for both, and the handler's
added CPU per query (the target is at most 2 ms). Run: ``.venv/bin/python bench/query_overhead.py``
"""

from __future__ import annotations

import json
import random
import time

import boto3

from bench.harness import Context, configure_workers, local_services, sqs_event, wants_json, write_results

DIMENSION = 1536
RECORDS = 2000
BATCHES = 20
BATCH_SIZE = 10
API_KEY = "bench-key"


def main() -> None:
    with local_services(API_KEY) as services:
        emulator = services.emulator
        from pinecone import Pinecone, ServerlessSpec

        rng = random.Random(5)
        pc = Pinecone(api_key=API_KEY, host=emulator)
        pc.create_index(
            name="q", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
        host = pc.describe_index("q").host
        index = pc.Index(host=host)
        for start in range(0, RECORDS, 50):
            vectors = [
                {"id": f"r{i}", "values": [rng.uniform(-1, 1) for _ in range(DIMENSION)], "metadata": {"n": i}}
                for i in range(start, start + 50)
            ]
            index.upsert(vectors=vectors, namespace="tenant-acme")
        reply_queue = boto3.client("sqs").create_queue(QueueName="replies")["QueueUrl"]
        configure_workers(API_KEY, host, DIMENSION, {"acme": "tenant-acme"}, reply_queue=reply_queue)
        probes = [[[rng.uniform(-1, 1) for _ in range(DIMENSION)] for _ in range(BATCH_SIZE)] for _ in range(BATCHES)]
        queries = BATCHES * BATCH_SIZE

        index.query(vector=probes[0][0], top_k=10, namespace="tenant-acme", include_metadata=True)  # warm
        cpu, wall = time.process_time(), time.perf_counter()
        for batch in probes:
            for probe in batch:
                index.query(vector=probe, top_k=10, namespace="tenant-acme", include_metadata=True)
        base_cpu, base_wall = (time.process_time() - cpu) / queries, (time.perf_counter() - wall) / queries

        from functions.query import app

        events = [
            sqs_event(
                [
                    json.dumps(
                        {
                            "schema_version": 1,
                            "op": "query",
                            "tenant": "acme",
                            "vector": probe,
                            "top_k": 10,
                            "include_metadata": True,
                            "reply_to": reply_queue,
                        }
                    )
                    for probe in batch
                ]
            )
            for batch in probes
        ]
        app.lambda_handler(events[0], Context())  # warm, as a Lambda container would be
        cpu, wall = time.process_time(), time.perf_counter()
        for event in events:
            assert app.lambda_handler(event, Context()) == {"batchItemFailures": []}
        handler_cpu, handler_wall = (time.process_time() - cpu) / queries, (time.perf_counter() - wall) / queries
        index.close()

    print(f"{BATCHES} batches x {BATCH_SIZE} queries, {DIMENSION} dims, top_k 10, {RECORDS} records")
    print(f"  direct index.query:  {base_wall * 1000:6.2f} ms wall/query, {base_cpu * 1000:6.2f} ms CPU/query")
    print(f"  query handler:       {handler_wall * 1000:6.2f} ms wall/query, {handler_cpu * 1000:6.2f} ms CPU/query")
    print(f"  wall ratio handler/direct: {handler_wall / base_wall:.2f}x")
    print(f"  handler's added CPU per query (parse, validate, reply): {(handler_cpu - base_cpu) * 1000:.2f} ms")
    if wants_json():
        figures = {
            "direct_wall_ms": base_wall * 1000,
            "direct_cpu_ms": base_cpu * 1000,
            "handler_wall_ms": handler_wall * 1000,
            "handler_cpu_ms": handler_cpu * 1000,
        }
        print(f"wrote {write_results('query_overhead', figures)}")


if __name__ == "__main__":
    main()
