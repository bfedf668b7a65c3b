"""Ingest throughput: the ingest handler against a naive one-upsert-per-message worker, in one run.

Both write to the Pinecone emulator running in its own process with 30 ms added to every upsert
(the order of a real round trip to Pinecone from Lambda), so neither side shares a CPU-bound GIL
with the server. moto's server (own process) holds the secret. Two shapes:

* 10 messages x 100 records x 1536 dims (few large messages),
* 500 messages x 2 records x 384 dims (many small messages).

Baseline: for each message in order, ``json.loads`` the body and call ``index.upsert`` once with
its records, the pattern of Pinecone's examples. Handler: ``functions/ingest/app.lambda_handler``
with the whole batch as one SQS event. Prints vectors/s for both and the ratio, Pinecone requests
against the minimum, the handler's CPU per record against orjson decode + encode of the same
records, and cold start (import + first invocation) against ``import boto3, pinecone``.

Run: ``.venv/bin/python bench/ingest_throughput.py``
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import orjson

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "bench-key"
LATENCY_MS = 30
SHAPES = [(10, 100, 1536), (500, 2, 384)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def service(args: list[str], health_url: str) -> Iterator[None]:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(health_url)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def local_services(api_key: str) -> Iterator[tuple[str, str]]:
    """The emulator and moto's server, each in its own process on a free port; AWS clients pointed at moto."""
    emulator_port, moto_port = free_port(), free_port()
    emulator, moto = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{moto_port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto,
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_METRICS_DISABLED="true",
    )
    emulator_cmd = [PYTHON, "-m", "pinecone_emulator", "--port", str(emulator_port), "--api-key", api_key]
    with (
        service(emulator_cmd, f"{emulator}/_emulator/health"),
        service([str(Path(PYTHON).parent / "moto_server"), "-p", str(moto_port)], f"{moto}/moto-api/"),
    ):
        yield emulator, moto


def control(base: str, path: str, payload: object) -> None:
    request = urllib.request.Request(
        f"{base}/_emulator/{path}", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).close()


def counters(base: str) -> int:
    with urllib.request.urlopen(f"{base}/_emulator/counters", timeout=10) as response:
        data = json.loads(response.read())
    return sum(item["count"] for item in data["requests"] if item["operation"] == "upsert" and item["status"] == 200)


def make_bodies(messages: int, records: int, dim: int, tenant: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    bodies = []
    for m in range(messages):
        recs = [
            {
                "id": f"s{seed}-m{m}-r{r}",
                "version": 1,
                "values": [round(rng.uniform(-1, 1), 4) for _ in range(dim)],
                "metadata": {"doc_id": f"doc-{m}", "chunk": r, "lang": "en"},
            }
            for r in range(records)
        ]
        bodies.append(json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": recs}))
    return bodies


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "bench",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "bench",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


class Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def naive_baseline(index: Any, bodies: list[str], namespace: str) -> None:
    for body in bodies:
        index.upsert(vectors=_sdk(json.loads(body)), namespace=namespace)


def _sdk(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": r["id"], "values": r["values"], "metadata": r["metadata"]} for r in message["records"]]


def orjson_cost(bodies: list[str]) -> float:
    """CPU seconds to decode each message and encode its records as one request body."""
    start = time.process_time()
    for body in bodies:
        message = orjson.loads(body)
        orjson.dumps({"vectors": _sdk(message), "namespace": "ns"})
    return time.process_time() - start


COLD_START = """
import json, sys, time
started = time.perf_counter()
from functions.ingest import app
class Context:
    function_name = "cold"; memory_limit_in_mb = 1024; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cold"
    def get_remaining_time_in_millis(self): return 300_000
response = app.lambda_handler(json.loads(sys.argv[1]), Context())
assert response == {"batchItemFailures": []}, response
print(time.perf_counter() - started)
"""
BARE_IMPORTS = "import time; t = time.perf_counter(); import boto3, pinecone; print(time.perf_counter() - t)"


def cold_start(dim: int) -> tuple[float, float]:
    """Median of 3 fresh processes: handler import + first invocation, and bare SDK imports."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'shared'}")
    event = json.dumps(sqs_event(make_bodies(1, 10, dim, "relay", seed=7)))

    def timed(args: list[str]) -> float:
        runs = [
            float(subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
            for _ in range(3)
        ]
        return sorted(runs)[1]

    return timed([PYTHON, "-c", COLD_START, event]), timed([PYTHON, "-c", BARE_IMPORTS])


def main() -> None:
    with local_services(API_KEY) as (emulator, _moto):
        from pinecone import Pinecone, ServerlessSpec

        secret = boto3.client("secretsmanager").create_secret(
            Name="bench", SecretString=json.dumps({"api_key": API_KEY})
        )
        dlq = boto3.client("sqs").create_queue(QueueName="bench-dlq")["QueueUrl"]
        pc = Pinecone(api_key=API_KEY, host=emulator)
        results = []
        for shape_no, (messages, records, dim) in enumerate(SHAPES):
            name = f"bench-{dim}"
            pc.create_index(
                name=name, dimension=dim, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
            )
            host = pc.describe_index(name).host
            os.environ.update(
                PINECONE_SECRET_ARN=secret["ARN"],
                PINECONE_INDEX_HOST=host,
                PINECONE_INDEX_DIMENSION=str(dim),
                PINECONE_INDEX_METRIC="cosine",
                TENANT_REGISTRY=json.dumps({"base": "ns-baseline", "relay": "ns-relay"}),
                DEAD_LETTER_QUEUE_URL=dlq,
            )
            control(emulator, "faults/rules", {"operation": "upsert", "latency_ms": LATENCY_MS})
            index = pc.Index(host=host)
            baseline_bodies = make_bodies(messages, records, dim, "base", seed=shape_no * 2)
            relay_bodies = make_bodies(messages, records, dim, "relay", seed=shape_no * 2 + 1)
            vectors = messages * records

            before = counters(emulator)
            start = time.perf_counter()
            naive_baseline(index, baseline_bodies, "ns-baseline")
            baseline_s = time.perf_counter() - start
            baseline_requests = counters(emulator) - before

            from functions.ingest import app
            from vector_relay.settings import get_settings
            from vector_relay.worker import reset_worker_dependencies

            get_settings.cache_clear()
            reset_worker_dependencies()
            app.lambda_handler(sqs_event(make_bodies(1, 1, dim, "relay", seed=99)), Context())  # warm, as Lambda is
            event = sqs_event(relay_bodies)
            before = counters(emulator)
            cpu = time.process_time()
            start = time.perf_counter()
            response = app.lambda_handler(event, Context())
            relay_s = time.perf_counter() - start
            relay_cpu = time.process_time() - cpu
            relay_requests = counters(emulator) - before
            assert response == {"batchItemFailures": []}, response
            total_bytes = sum(
                len(orjson.dumps({"vectors": _sdk(json.loads(b)), "namespace": "ns-relay"})) for b in relay_bodies
            )
            minimum = max(math.ceil(vectors / 1000), math.ceil(total_bytes / 2_000_000))
            reference_cpu = orjson_cost(relay_bodies)
            results.append(
                (
                    messages,
                    records,
                    dim,
                    vectors / baseline_s,
                    vectors / relay_s,
                    baseline_requests,
                    relay_requests,
                    minimum,
                    relay_cpu / vectors * 1e6,
                    reference_cpu / vectors * 1e6,
                )
            )
            index.close()
        handler_cold, imports_cold = cold_start(SHAPES[-1][2])
    print(f"emulator in its own process, {LATENCY_MS} ms added per upsert")
    for m, r, d, base_rate, relay_rate, base_req, relay_req, minimum, cpu_us, ref_us in results:
        print(f"\n{m} messages x {r} records x {d} dims")
        print(f"  baseline (one upsert per message): {base_rate:9.0f} vectors/s, {base_req} requests")
        print(
            f"  ingest handler:                    {relay_rate:9.0f} vectors/s, {relay_req} requests"
            f" (minimum {minimum})"
        )
        print(f"  ratio handler/baseline:            {relay_rate / base_rate:9.1f}x")
        print(
            f"  handler CPU per record: {cpu_us:.0f} us; orjson decode+encode: {ref_us:.0f} us;"
            f" ratio {cpu_us / ref_us:.1f}x"
        )
    print(
        f"\ncold start: import + first invocation {handler_cold * 1000:.0f} ms;"
        f" import boto3, pinecone alone {imports_cold * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
