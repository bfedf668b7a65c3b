"""Cold start: a fresh process importing a worker handler and serving its first batch, against bare imports.

Each process sees only what Lambda would: the built function's directory and the two layers from
``.aws-sam/build`` (run ``make build`` first) on the base Python 3.13 without user site-packages,
so the dev tools in the project's venv cannot slow (or speed) an import. The first invocation is
real: the secret is read from moto's server and the batch goes to the emulator (each in its own
process). For the ingest and the query handler, 10 fresh processes each (median):

* import of the handler + its first invocation (10 records upserted, or 1 query answered);
* ``import boto3, pinecone`` alone (the floor any Python worker on this stack pays).

As deployed: the ingest function's ``WRITE_VERSION_TABLE`` names a version table in moto (template.yaml
always sets it), so its first batch is claimed through the version guard; the query function's
environment has no such variable (the template sets none there), so it builds no guard.

Each figure is wall time; the CPU time of the same processes (user + system, all threads) is given
too: on a shared machine it moves less with the load than wall time does.

Target: the first at most the second + 150 ms. Run: ``.venv/bin/python bench/cold_start.py [--json]
[--against DIR]``. ``--against DIR`` also times another build output (e.g. a copy of
``.aws-sam/build`` made before a change), its processes alternating with this build's so that
both see the same load, and prints each build's figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

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
import json, resource, sys, time
def cpu(): return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
started, cpu_started = time.perf_counter(), cpu()
import app
imported, cpu_imported = time.perf_counter(), cpu()
class Context:
    function_name = "cold"; memory_limit_in_mb = 1024; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cold"
    def get_remaining_time_in_millis(self): return 300_000
response = app.lambda_handler(json.loads(sys.argv[1]), Context())
assert response == {"batchItemFailures": []}, response
wall, cpu_total = time.perf_counter() - started, cpu() - cpu_started
print(json.dumps([imported - started, wall, cpu_imported - cpu_started, cpu_total]))
"""
BARE_IMPORTS = """
import json, resource, time
def cpu(): return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
started, cpu_started = time.perf_counter(), cpu()
import boto3, pinecone
print(json.dumps([time.perf_counter() - started] * 2 + [cpu() - cpu_started] * 2))
"""


def lambda_like(function: str, build: Path = BUILD) -> dict[str, str]:
    """The environment of a process that sees the function and its layers the way Lambda lays them out."""
    path = [build / function, build / "SharedCodeLayer" / "python", build / "DependenciesLayer" / "python"]
    missing = [str(p) for p in path if not p.is_dir()]
    if missing:
        raise SystemExit(f"run `make build` first: {', '.join(missing)} missing")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path), PYTHONNOUSERSITE="1")


def timed(script: str, envs: list[dict[str, str]], *args: str) -> list[tuple[float, ...]]:
    """For each environment (one per build), the median over RUNS fresh processes of import and import + first
    invocation seconds, wall then CPU. The builds' processes alternate, so each sees the same load."""
    runs: list[list[list[float]]] = [[] for _ in envs]
    for _ in range(RUNS):
        for env, build_runs in zip(envs, runs, strict=True):
            result = subprocess.run(
                [BASE_PYTHON, "-s", "-c", script, *args],
                cwd=BUILD,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise SystemExit(f"cold start run failed:\n{result.stderr[-3000:]}")
            build_runs.append(json.loads(result.stdout))
    return [tuple(statistics.median(r[i] for r in build_runs) for i in range(4)) for build_runs in runs]


def figures(seconds: tuple[float, ...]) -> dict[str, float]:
    names = ("import_ms", "total_ms", "import_cpu_ms", "total_cpu_ms")
    return {name: value * 1000 for name, value in zip(names, seconds, strict=True)}


def report(build: Path, results: dict[str, dict[str, float]]) -> None:
    floor = results["import boto3, pinecone"]
    print(f"median of {RUNS} fresh processes each (Lambda's layout: function dir + layers from {build})")
    print(f"  import boto3, pinecone alone: {floor['total_ms']:.0f} ms (CPU {floor['total_cpu_ms']:.0f} ms)")
    for name in ("ingest", "query"):
        ms = results[name]
        print(
            f"  {name} handler: import {ms['import_ms']:.0f} ms, import + first invocation"
            f" {ms['total_ms']:.0f} ms = bare imports + {ms['total_ms'] - floor['total_ms']:.0f} ms"
            f" ({ms['total_ms'] / floor['total_ms']:.2f}x; target + 150 ms);"
            f" CPU {ms['import_cpu_ms']:.0f} / {ms['total_cpu_ms']:.0f} ms"
            f" = bare + {ms['total_cpu_ms'] - floor['total_cpu_ms']:.0f}"
        )


def main() -> None:
    builds = [BUILD]
    if "--against" in sys.argv:
        builds.append(Path(sys.argv[sys.argv.index("--against") + 1]).resolve())
    results: list[dict[str, dict[str, float]]] = [{} for _ in builds]
    with local_services(API_KEY) as services:
        from pinecone import Pinecone, ServerlessSpec

        pc = Pinecone(api_key=API_KEY, host=services.emulator)
        pc.create_index(
            name="cold", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
        host = pc.describe_index("cold").host
        reply_queue = boto3.client("sqs").create_queue(QueueName="replies")["QueueUrl"]
        configure_workers(API_KEY, host, DIMENSION, {"relay": "ns-relay"}, reply_queue=reply_queue)
        create_version_table(VERSION_TABLE)  # the template always sets the ingest function's WRITE_VERSION_TABLE
        ingest_event = sqs_event(make_bodies(1, 10, DIMENSION, "relay", seed=7))
        query = {"schema_version": 1, "op": "query", "tenant": "relay", "vector": [0.5] * DIMENSION}
        query_event = sqs_event([json.dumps(query | {"top_k": 3, "reply_to": reply_queue})])
        bare = timed(BARE_IMPORTS, [lambda_like("IngestFunction", build) for build in builds])
        for build_results, seconds in zip(results, bare, strict=True):
            build_results["import boto3, pinecone"] = figures(seconds)
        for name, function, event, environment in [
            ("ingest", "IngestFunction", ingest_event, {"WRITE_VERSION_TABLE": VERSION_TABLE}),  # the guard is on
            ("query", "QueryFunction", query_event, {}),
        ]:
            envs = [lambda_like(function, build) | environment for build in builds]
            for build_results, seconds in zip(results, timed(FIRST_INVOCATION, envs, json.dumps(event)), strict=True):
                build_results[name] = figures(seconds)
    for build, build_results in zip(builds, results, strict=True):
        report(build, build_results)
    if wants_json():
        print(f"wrote {write_results('cold_start', {'runs': RUNS, 'results': results[0]})}")


if __name__ == "__main__":
    main()
