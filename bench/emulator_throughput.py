"""Upsert and query throughput of the Pinecone emulator at 1536 dimensions and 100k vectors.

Later benchmarks use the emulator as "Pinecone"; this tells them how much load it can take before it,
not the code under test, is the bottleneck. Each number is reported next to an in-process baseline
measured in the same run, as a ratio:

* upsert baseline: the same batches built from numpy rows, serialised by the SDK's JSON encoder (orjson),
  parsed with the stdlib and copied into a float32 matrix - the work any server must do, without HTTP or
  validation;
* query baseline: brute-force numpy search (matrix @ q, then top-k) over the same matrix, without HTTP.

Run:  .venv/bin/python bench/emulator_throughput.py [--vectors 100000] [--queries 200] [--in-process]
By default the emulator runs in its own process (as it does for other benchmarks); --in-process shares
the client's interpreter and GIL.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import orjson
from pinecone import Pinecone, ServerlessSpec

DIMENSION = 1536
BATCH = 60  # 60 vectors of 1536 floats is ~1.8 MB of JSON: the most that fits under the 2 MB request limit
THREADS = 4  # client threads of the concurrent runs (--threads)


@contextmanager
def emulator(in_process: bool) -> Iterator[str]:
    if in_process:
        from pinecone_emulator import EmulatorConfig, EmulatorServer

        server = EmulatorServer(EmulatorConfig(port=0)).start()
        try:
            yield server.url
        finally:
            server.stop()
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "pinecone_emulator", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip().rsplit(" ", 1)[-1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def batches(ids: list[str], vectors: np.ndarray) -> Iterator[list[tuple[str, list[float], dict[str, float]]]]:
    for start in range(0, len(ids), BATCH):
        rows = range(start, min(start + BATCH, len(ids)))
        yield [(ids[i], vectors[i].tolist(), {"bucket": float(i % 10)}) for i in rows]


def upsert_concurrently[T](upsert: Callable[[T], object], requests: Iterable[T], threads: int = THREADS) -> None:
    """Every request through ``upsert`` from ``threads`` client threads, at most ``2 x threads`` of them held at once.

    The upsert measurement of this benchmark; ``bench/ingest_throughput.py`` runs it too, for the
    emulator's ceiling on its shapes.
    """
    pending = iter(requests)
    with ThreadPoolExecutor(threads) as pool:
        while group := list(itertools.islice(pending, threads * 2)):  # bounded: ~1.8 MB per batch
            list(pool.map(upsert, group))


def upsert_baseline(ids: list[str], vectors: np.ndarray) -> float:
    store = np.zeros_like(vectors)

    def run() -> None:
        for batch in batches(ids, vectors):
            body = orjson.dumps({"vectors": [{"id": i, "values": v, "metadata": m} for i, v, m in batch]})
            parsed = json.loads(body)["vectors"]
            for vector in parsed:
                store[int(vector["id"][4:])] = np.asarray(vector["values"], dtype=np.float32)

    return timed(run)


def query_baseline(matrix: np.ndarray, queries: np.ndarray, top_k: int) -> float:
    norms = np.linalg.norm(matrix, axis=1)

    def run() -> None:
        for query in queries:
            scores = (matrix @ query) / (norms * np.linalg.norm(query))
            best = np.argpartition(-scores, top_k)[:top_k]
            best[np.argsort(-scores[best])].tolist()

    return timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=THREADS, help="client threads for the concurrent runs")
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((args.vectors, DIMENSION), dtype=np.float32)
    queries = rng.standard_normal((args.queries, DIMENSION), dtype=np.float32)
    ids = [f"doc-{i:07d}" for i in range(args.vectors)]
    print(f"emulator throughput: {args.vectors:,} vectors x {DIMENSION} dims, cosine, batches of {BATCH}")
    baseline_query_s = query_baseline(vectors, queries, args.top_k)

    with emulator(args.in_process) as url:
        pc = Pinecone(api_key="pclocal", host=url)
        pc.create_index(
            "bench", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
        )
        index = pc.Index(name="bench")

        upsert_s = timed(
            lambda: upsert_concurrently(lambda b: index.upsert(vectors=b), batches(ids, vectors), args.threads)
        )
        total = index.describe_index_stats().total_vector_count
        assert total == args.vectors, total

        query_lists = [q.tolist() for q in queries]
        latencies: list[float] = []

        def one_query(query: list[float]) -> None:
            latencies.append(timed(lambda: index.query(vector=query, top_k=args.top_k)))

        serial_s = timed(lambda: [one_query(q) for q in query_lists])
        with ThreadPoolExecutor(args.threads) as pool:
            concurrent_s = timed(lambda: list(pool.map(lambda q: index.query(vector=q, top_k=args.top_k), query_lists)))
        filtered_s = timed(
            lambda: [index.query(vector=q, top_k=args.top_k, filter={"bucket": {"$eq": 3.0}}) for q in query_lists[:20]]
        )
        index.close()

    baseline_upsert_s = upsert_baseline(ids, vectors)

    upsert_rate = args.vectors / upsert_s
    baseline_upsert_rate = args.vectors / baseline_upsert_s
    serial_rate = args.queries / serial_s
    concurrent_rate = args.queries / concurrent_s
    baseline_query_rate = args.queries / baseline_query_s
    print(
        f"upsert   {upsert_rate:10,.0f} vectors/s ({args.threads} client threads)"
        f"   baseline {baseline_upsert_rate:10,.0f} vectors/s   ratio {upsert_rate / baseline_upsert_rate:.2f}"
    )
    print(
        f"query    {serial_rate:10,.1f} queries/s (1 thread, p50 {statistics.median(latencies) * 1000:.1f} ms)"
        f"   baseline {baseline_query_rate:8,.1f} queries/s   ratio {serial_rate / baseline_query_rate:.2f}"
    )
    print(
        f"query    {concurrent_rate:10,.1f} queries/s ({args.threads} client threads)"
        f"   baseline {baseline_query_rate:8,.1f} queries/s   ratio {concurrent_rate / baseline_query_rate:.2f}"
    )
    print(f"filtered {20 / filtered_s:10,.1f} queries/s (1 thread, filter matches 10% of records)")


if __name__ == "__main__":
    main()
