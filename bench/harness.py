"""What the benchmarks share: the emulator and moto's server in their own processes, SQS events, results.

Every benchmark measures its baseline in the same run and prints a ratio; with ``--json`` (or
``make bench``) it also writes its figures to ``bench/results/<name>.json`` for ``bench/plot.py``.
"""

from __future__ import annotations

import hashlib
import json
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(400):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its reaped children) from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def process_cpu_clock_seconds(pid: int) -> float:
    """CPU of a process (all its threads, ended ones too) to the nanosecond, from its CPU clock.

    ``/proc/<pid>/stat`` counts in clock ticks (10 ms here): a figure of 10-20 ms per round would be
    one or two ticks. Linux names a process's CPU clock ``(~pid << 3) | 2`` (CPUCLOCK_SCHED, what
    ``clock_getcpuclockid`` returns); elsewhere this falls back to ``/proc``.
    """
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        return process_cpu_seconds(pid)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children (the emulator's worker processes)."""
    total = process_cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for child_pid in child.read_text().split():
            total += tree_cpu_seconds(int(child_pid))
    return total


@dataclass
class Services:
    emulator: str
    moto: str
    emulator_pid: int
    moto_pid: int = 0  # moto's server (the version guard's DynamoDB): its CPU is reported apart

    def emulator_cpu(self) -> float:
        return tree_cpu_seconds(self.emulator_pid)

    def moto_cpu(self) -> float:
        return process_cpu_clock_seconds(self.moto_pid) if self.moto_pid else 0.0  # one process, no children


@contextmanager
def _service(args: list[str], health_url: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(health_url)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def local_services(api_key: str, *emulator_args: str) -> Iterator[Services]:
    """The emulator and moto's server (relay_local.moto_server), each in its own process on a free port.

    AWS clients are pointed at moto.
    """
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
    emulator_cmd = [
        PYTHON,
        "-m",
        "pinecone_emulator",
        "--port",
        str(emulator_port),
        "--api-key",
        api_key,
        *emulator_args,
    ]
    with (
        _service(emulator_cmd, f"{emulator}/_emulator/health") as emulator_process,
        _service(
            [PYTHON, "-m", "relay_local.moto_server", "--port", str(moto_port)], f"{moto}/moto-api/"
        ) as moto_process,
    ):
        yield Services(emulator, moto, emulator_process.pid, moto_process.pid)


def configure_workers(
    api_key: str, host: str, dimension: int, tenants: dict[str, str], *, reply_queue: str = ""
) -> None:
    """The workers' settings against the local services: the key in a secret, a DLQ, the index, the tenants."""
    import boto3

    sqs = boto3.client("sqs")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    secret = boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"api_key": api_key}))
    os.environ.update(
        PINECONE_SECRET_ARN=secret["ARN"],
        PINECONE_INDEX_HOST=host,
        PINECONE_INDEX_DIMENSION=str(dimension),
        PINECONE_INDEX_METRIC="cosine",
        TENANT_REGISTRY=json.dumps(tenants),
        DEAD_LETTER_QUEUE_URL=sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"],
    )
    if reply_queue:
        os.environ["REPLY_QUEUE_ALLOW_LIST"] = reply_queue


def control(base: str, path: str, payload: object) -> None:
    request = urllib.request.Request(
        f"{base}/_emulator/{path}", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).close()


def grpc_endpoint(base: str, index: str) -> str:
    """The emulator's gRPC listener for ``index`` (started on this first request)."""
    with urllib.request.urlopen(f"{base}/_emulator/indexes/{index}/grpc", timeout=30) as response:
        return str(json.loads(response.read())["host"])


def upserts_served(base: str) -> int:
    """Upsert requests the emulator answered with 200 so far."""
    with urllib.request.urlopen(f"{base}/_emulator/counters", timeout=10) as response:
        data = json.loads(response.read())
    return sum(item["count"] for item in data["requests"] if item["operation"] == "upsert" and item["status"] == 200)


def make_bodies(messages: int, records: int, dim: int, tenant: str, seed: int, *, text_bytes: int = 0) -> list[str]:
    """Upsert message bodies: values with 4 decimals, metadata with a document id (and ``text_bytes`` of text)."""
    rng = random.Random(seed)
    text = "lorem ipsum dolor sit amet " * (text_bytes // 27 + 1)
    bodies = []
    for m in range(messages):
        recs = []
        for r in range(records):
            metadata: dict[str, Any] = {"doc_id": f"doc-{m}", "chunk": r, "lang": "en"}
            if text_bytes:
                metadata["text"] = text[:text_bytes]
            recs.append(
                {
                    "id": f"s{seed}-m{m}-r{r}",
                    "version": 1,
                    "values": [round(rng.uniform(-1, 1), 4) for _ in range(dim)],
                    "metadata": metadata,
                }
            )
        bodies.append(json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": recs}))
    return bodies


def sqs_event(bodies: list[str], source_arn: str = "arn:aws:sqs:us-east-1:123456789012:ingest") -> dict[str, Any]:
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
                "eventSourceARN": source_arn,
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


class Context:
    """A Lambda context with 5 minutes left."""

    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def write_results(name: str, payload: object) -> Path:
    """``bench/results/<name>.json`` (read by ``bench/plot.py``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def wants_json() -> bool:
    return "--json" in sys.argv[1:]
