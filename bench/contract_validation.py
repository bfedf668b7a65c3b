"""How much validating a message costs compared with only parsing its JSON.

Builds ingest messages the size real producers send (1536-dimension vectors with metadata, as many
records as fit in one 1 MiB SQS message), then times, in the same process:

* baseline: ``json.loads`` of the body (the least any worker must do);
* contract: ``parse_write_message`` with a full deployment context (tenant registry, dimension).

Prints records/s for both and the ratio. Run: ``.venv/bin/python bench/contract_validation.py``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

from bench.harness import wants_json, write_results
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.contract.parsing import parse_write_message

DIMENSION = 1536
RECORDS_PER_MESSAGE = 30  # about 0.9 MiB of JSON at 1536 dimensions
MESSAGES = 40
ROUNDS = 5


def make_body(seed: int) -> str:
    rng = random.Random(seed)
    records = [
        {
            "id": f"doc-{seed}#{i}",
            "version": seed * 100 + i,
            "values": [rng.uniform(-1, 1) for _ in range(DIMENSION)],
            "metadata": {"doc_id": f"doc-{seed}", "chunk": i, "lang": "en", "tags": ["a", "b", "c"]},
        }
        for i in range(RECORDS_PER_MESSAGE)
    ]
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": "acme", "records": records})


def best_rate(work: Callable[[str], object], bodies: list[str]) -> float:
    """Records per second, best of ROUNDS passes over all bodies."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for body in bodies:
            work(body)
        best = min(best, time.perf_counter() - start)
    return len(bodies) * RECORDS_PER_MESSAGE / best


def main() -> None:
    bodies = [make_body(seed) for seed in range(MESSAGES)]
    context = ValidationContext(tenants={"acme": "tenant-acme"}, index=IndexShape(dimension=DIMENSION, metric="cosine"))
    size = sum(len(b) for b in bodies) / len(bodies) / 1_048_576
    baseline = best_rate(json.loads, bodies)
    contract = best_rate(lambda body: parse_write_message(body, context), bodies)
    print(f"messages: {MESSAGES} x {RECORDS_PER_MESSAGE} records x {DIMENSION} dims ({size:.2f} MiB each)")
    print(f"baseline json.loads:       {baseline:10.0f} records/s")
    print(f"contract validation:       {contract:10.0f} records/s")
    print(f"ratio validation/baseline: {contract / baseline:.2f}x the baseline's throughput")
    if wants_json():
        figures = {"json_loads_records_per_s": baseline, "contract_records_per_s": contract}
        print(f"wrote {write_results('contract_validation', figures)}")


if __name__ == "__main__":
    main()
