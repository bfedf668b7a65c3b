"""Cold start: a fresh process importing a worker handler and serving its first batch, against bare imports.

Each process sees only what Lambda would: the built function's directory and the two layers from
``.aws-sam/build`` (run ``make build`` first) on the base Python 3.13 without user site-packages,
so the dev tools in the project's venv cannot slow (or speed) an import. The first invocation is
real: the secret is read from moto's server and the batch goes to the emulator (each in its own
process). For the ingest and the query handler, 10 fresh processes each (median):

* import of the handler + its first invocation (10 records upserted, or 1 query answered);
* ``import boto3, pinecone`` alone (the floor any Python worker on this stack pays).

As deployed: ``WRITE_VERSION_TABLE`` names a version table in moto (template.yaml always sets it), so
the ingest handler's first batch is claimed through the version guard.

Target: the first at most the second + 150 ms. Run: ``.venv/bin/python bench/cold_start.py [--json]``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import boto3

from bench.harness import ROOT, configure_workers, local_services, make_bodies, sqs_event, wants_json, write_results
from tests.integration.conftest import create_version_table

API_KEY = "bench-key"
RUNS = 10
DIMENSION = 384
BUILD = ROOT / ".aws-sam" / "build"
VERSION_TABLE = "cold-versions"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)

FIRST_INVOCATION = """
import json, sys, time
started = time.perf_counter()
import app
imported = time.perf_counter()
class Context:
    function_name = "cold"; memory_limit_in_mb = 1024; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cold"
    def get_remaining_time_in_millis(self): return 300_000
response = app.lambda_handler(json.loads(sys.argv[1]), Context())
assert response == {"batchItemFailures": []}, response
print(json.dumps([imported - started, time.perf_counter() - started]))
"""
BARE_IMPORTS = """
import json, time
started = time.perf_counter()
import boto3, pinecone
print(json.dumps([time.perf_counter() - started] * 2))
"""


def lambda_like(function: str) -> dict[str, str]:
    """The environment of a process that sees the function and its layers the way Lambda lays them out."""
    path = [BUILD / function, BUILD / "SharedCodeLayer" / "python", BUILD / "DependenciesLayer" / "python"]
    missing = [str(p) for p in path if not p.is_dir()]
    if missing:
        raise SystemExit(f"run `make build` first: {', '.join(missing)} missing")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path), PYTHONNOUSERSITE="1")


def timed(script: str, env: dict[str, str], *args: str) -> tuple[float, float]:
    """Median over RUNS fresh processes of (import seconds, import + first invocation seconds)."""
    runs = []
    for _ in range(RUNS):
        result = subprocess.run(
            [BASE_PYTHON, "-s", "-c", script, *args], cwd=BUILD, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"cold start run failed:\n{result.stderr[-3000:]}")
        runs.append(json.loads(result.stdout))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    results = {}
    with local_services(API_KEY) as services:
        from pinecone import Pinecone, ServerlessSpec

        pc = Pinecone(api_key=API_KEY, host=services.emulator)
        pc.create_index(
            name="cold", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
        host = pc.describe_index("cold").host
        reply_queue = boto3.client("sqs").create_queue(QueueName="replies")["QueueUrl"]
        configure_workers(API_KEY, host, DIMENSION, {"relay": "ns-relay"}, reply_queue=reply_queue)
        create_version_table(VERSION_TABLE)  # the template always sets WRITE_VERSION_TABLE: the guard is on
        os.environ["WRITE_VERSION_TABLE"] = VERSION_TABLE
        ingest_event = sqs_event(make_bodies(1, 10, DIMENSION, "relay", seed=7))
        query = {"schema_version": 1, "op": "query", "tenant": "relay", "vector": [0.5] * DIMENSION}
        query_event = sqs_event([json.dumps(query | {"top_k": 3, "reply_to": reply_queue})])
        bare = timed(BARE_IMPORTS, lambda_like("IngestFunction"))[1]
        results["import boto3, pinecone"] = {"import_ms": bare * 1000, "total_ms": bare * 1000}
        for name, function, event in [
            ("ingest", "IngestFunction", ingest_event),
            ("query", "QueryFunction", query_event),
        ]:
            imported, total = timed(FIRST_INVOCATION, lambda_like(function), json.dumps(event))
            results[name] = {"import_ms": imported * 1000, "total_ms": total * 1000}
    print(f"median of {RUNS} fresh processes each (Lambda's layout: function dir + layers from .aws-sam/build)")
    print(f"  import boto3, pinecone alone: {bare * 1000:.0f} ms")
    for name in ("ingest", "query"):
        figures = results[name]
        print(
            f"  {name} handler: import {figures['import_ms']:.0f} ms, import + first invocation"
            f" {figures['total_ms']:.0f} ms = bare imports + {figures['total_ms'] - bare * 1000:.0f} ms"
            f" ({figures['total_ms'] / (bare * 1000):.2f}x; target + 150 ms)"
        )
    if wants_json():
        print(f"wrote {write_results('cold_start', {'runs': RUNS, 'results': results})}")


if __name__ == "__main__":
    main()
