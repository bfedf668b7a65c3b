"""What the version guard costs: ingest throughput with and without it, in one run.

10 messages x 100 records x 1536 dims per batch; the emulator (own process) adds 30 ms to every
upsert; moto's server (own process) holds the DynamoDB version table (one conditional write per
record to claim it and one to release it, 16 at a time). The handler runs warm, the
two configurations alternate for 5 rounds each, and the best round of each is compared (fresh
record ids every round, so every claim is a first claim). Target: the guard costs at most 25% of
throughput. Also prints the DynamoDB requests per batch.

Run: ``.venv/bin/python bench/version_guard_cost.py``
"""

from __future__ import annotations

import json
import os
import time

import boto3

from bench.ingest_throughput import Context, control, local_services, make_bodies, sqs_event
from tests.integration.conftest import create_version_table

ROUNDS = 5
MESSAGES, RECORDS, DIMENSION = 10, 100, 1536
TABLE = "bench-versions"
API_KEY = "bench-key"


def main() -> None:
    with local_services(API_KEY) as (emulator, _moto):
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
            TENANT_REGISTRY=json.dumps({"relay": "ns-relay"}),
            DEAD_LETTER_QUEUE_URL=boto3.client("sqs").create_queue(QueueName="dlq")["QueueUrl"],
        )
        from functions.ingest import app
        from vector_relay.settings import get_settings
        from vector_relay.worker import reset_worker_dependencies

        warmups = iter(range(10_000, 20_000))

        def configure(guarded: bool) -> None:
            if guarded:
                os.environ["WRITE_VERSION_TABLE"] = TABLE
            else:
                os.environ.pop("WRITE_VERSION_TABLE", None)
            get_settings.cache_clear()
            reset_worker_dependencies()
            warm = sqs_event(make_bodies(1, 1, DIMENSION, "relay", seed=next(warmups)))
            app.lambda_handler(warm, Context())  # warm, as a Lambda container would be

        best = {False: float("inf"), True: float("inf")}
        seed = 0
        for _ in range(ROUNDS):
            for guarded in (False, True):
                configure(guarded)
                seed += 1
                event = sqs_event(make_bodies(MESSAGES, RECORDS, DIMENSION, "relay", seed=seed))
                start = time.perf_counter()
                assert app.lambda_handler(event, Context()) == {"batchItemFailures": []}
                best[guarded] = min(best[guarded], time.perf_counter() - start)
        items = dynamodb.scan(TableName=TABLE, Select="COUNT")["Count"]
    vectors = MESSAGES * RECORDS
    without, with_guard = vectors / best[False], vectors / best[True]
    requests_per_batch = 2 * vectors
    print(f"{MESSAGES} messages x {RECORDS} records x {DIMENSION} dims, 30 ms per upsert, best of {ROUNDS}")
    print(f"  without guard: {without:7.0f} vectors/s")
    print(f"  with guard:    {with_guard:7.0f} vectors/s  ({items} guard items written)")
    print(f"  guard's cost:  {(1 - with_guard / without) * 100:5.1f}% of throughput (ratio {with_guard / without:.2f})")
    print(f"  DynamoDB requests per batch: {requests_per_batch} (a claim and a release per record)")


if __name__ == "__main__":
    main()
