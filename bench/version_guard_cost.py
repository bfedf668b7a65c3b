"""What the version guard costs: ingest throughput with and without it, in one run.

10 messages x 100 records x 1536 dims per batch, sent by one tenant (one namespace) and by ten
tenants (ten namespaces); the emulator (own process) adds 30 ms to every upsert; moto's server (own
process) holds the DynamoDB version table. Per namespace the guard takes a claim lock, reads the
records' versions in batches of 100 and writes the claims in transactions of up to 100
conditional puts, while the namespace's first requests are already on their way to Pinecone; one
release per batch. The handler runs warm,
the two configurations alternate for 7 rounds each; the best rounds and the median rounds of each
are compared (fresh record ids every round, so every claim is a first claim). Target: the guard
costs at most 25% of throughput. Also prints the DynamoDB requests per batch.

Run: ``.venv/bin/python bench/version_guard_cost.py``
"""

from __future__ import annotations

import json
import os
import statistics
import time

import boto3

from bench.harness import Context, control, local_services, make_bodies, sqs_event, wants_json, write_results
from bench.ingest_throughput import stdout_discarded
from tests.integration.conftest import create_version_table

ROUNDS = 7
MESSAGES, RECORDS, DIMENSION = 10, 100, 1536
TABLE = "bench-versions"
API_KEY = "bench-key"


def bodies(tenants: int, seed: int) -> list[str]:
    """MESSAGES messages of RECORDS records, spread over ``tenants`` tenants."""
    return [
        body
        for m in range(MESSAGES)
        for body in make_bodies(1, RECORDS, DIMENSION, f"t{m % tenants}", seed=seed * 1000 + m)
    ]


def main() -> None:
    results: list[dict[str, float]] = []
    with local_services(API_KEY) as services:
        emulator = services.emulator
        from pinecone import Pinecone, ServerlessSpec

        pc = Pinecone(api_key=API_KEY, host=emulator)
        pc.create_index(
            name="g", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
        control(emulator, "faults/rules", {"operation": "upsert", "latency_ms": 30})
        dynamodb = boto3.client("dynamodb")
        create_version_table(TABLE)
        secret = boto3.client("secretsmanager").create_secret(Name="k", SecretString=json.dumps({"api_key": API_KEY}))
        os.environ.update(
            PINECONE_SECRET_ARN=secret["ARN"],
            PINECONE_INDEX_HOST=pc.describe_index("g").host,
            PINECONE_INDEX_DIMENSION=str(DIMENSION),
            PINECONE_INDEX_METRIC="cosine",
            TENANT_REGISTRY=json.dumps({f"t{i}": f"ns-{i}" for i in range(MESSAGES)}),
            DEAD_LETTER_QUEUE_URL=boto3.client("sqs").create_queue(QueueName="dlq")["QueueUrl"],
        )
        from functions.ingest import app
        from vector_relay.dependencies import reset_worker_dependencies, worker_dependencies
        from vector_relay.settings import get_settings

        warmups = iter(range(10_000, 20_000))

        def configure(guarded: bool) -> None:
            if guarded:
                os.environ["WRITE_VERSION_TABLE"] = TABLE
            else:
                os.environ.pop("WRITE_VERSION_TABLE", None)
            get_settings.cache_clear()
            reset_worker_dependencies()
            warm = sqs_event(make_bodies(1, 1, DIMENSION, "t0", seed=next(warmups)))
            with stdout_discarded():
                app.lambda_handler(warm, Context())  # warm, as a Lambda container would be

        seed = 0
        print(f"{MESSAGES} messages x {RECORDS} records x {DIMENSION} dims, 30 ms per upsert, {ROUNDS} rounds")
        for tenants in (1, 10):
            times: dict[bool, list[float]] = {False: [], True: []}
            requests = 0
            for _ in range(ROUNDS):
                for guarded in (False, True):
                    configure(guarded)
                    seed += 1
                    event = sqs_event(bodies(tenants, seed))
                    guard = worker_dependencies(app.metrics).guard
                    before = guard.requests if guard else 0
                    with stdout_discarded():  # the metrics' EMF lines, which Lambda would ship to CloudWatch
                        start = time.perf_counter()
                        response = app.lambda_handler(event, Context())
                        times[guarded].append(time.perf_counter() - start)
                    assert response == {"batchItemFailures": []}
                    if guard:
                        requests = guard.requests - before
            vectors = MESSAGES * RECORDS
            results.append(
                {
                    "tenants": tenants,
                    "dynamodb_requests": requests,
                    "best_cost": 1 - min(times[False]) / min(times[True]),
                    "median_cost": 1 - statistics.median(times[False]) / statistics.median(times[True]),
                }
            )
            print(f"{tenants} tenant(s), DynamoDB requests per batch: {requests} ({vectors} records)")
            for label, pick in (("best", min), ("median", statistics.median)):
                without, with_guard = vectors / pick(times[False]), vectors / pick(times[True])
                cost = (1 - with_guard / without) * 100
                print(
                    f"  {label:6}: without guard {without:5.0f} vectors/s, with guard {with_guard:5.0f} vectors/s,"
                    f" guard's cost {cost:4.1f}% (ratio {with_guard / without:.2f}; target <= 25%)"
                )
        items = dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"]
        print(f"guard items in the table: {items}")
    if wants_json():
        print(f"wrote {write_results('version_guard_cost', {'rounds': ROUNDS, 'results': results})}")


if __name__ == "__main__":
    main()
