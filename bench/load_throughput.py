"""``vector-relay load`` end to end against the local stack, against one SendMessage per record, in one run.

The local stack runs as ``make up`` does (moto's server, the emulator in its own process, the
ingest poller feeding awslambdaric environments). Both sides publish the same N records of
384 dims for their own tenant and are timed from the first request until the index holds all N
(file -> SQS -> ingest function -> index). Prints records/s end to end, SQS requests per 1,000
records, and the ratios.

Run: ``.venv/bin/python bench/load_throughput.py [N]`` (default 5,000)
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from bench.harness import wants_json, write_results
from relay_local.inspection import namespace_counts
from relay_local.stack import LocalStack, StackOptions
from vector_relay.producer import body_of, upsert
from vector_relay_cli.main import cli

DIMENSION = 384


def records(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [
        {
            "id": f"r{i}",
            "version": 1,
            "values": [rng.uniform(-1, 1) for _ in range(DIMENSION)],
            "metadata": {"doc_id": f"r{i}"},
        }
        for i in range(n)
    ]


def wait_for(stack: LocalStack, namespace: str, n: int, ceiling: float = 1800.0) -> float:
    info = stack.info
    assert info is not None
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        count = namespace_counts(info.pinecone_url, info.index_name).get(namespace, 0)
        if count >= n:
            return time.monotonic()
        print(f"    {namespace}: {count:,} of {n:,}", file=sys.stderr, flush=True)
        time.sleep(1)
    raise RuntimeError(f"{namespace} did not reach {n} records")


def main() -> None:
    counts = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    n = int(counts[0]) if counts else 5_000
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalStack(StackOptions(state_dir=Path(tmp), function_logs="file"), progress=lambda line: None) as stack,
    ):
        info = stack.info
        assert info is not None
        # the baseline: one SendMessage per record (globex)
        sqs = stack.sqs()
        began = time.monotonic()
        for record in records(n, seed=1):
            sqs.send_message(QueueUrl=info.queues["IngestQueue"], MessageBody=body_of(upsert("globex", [record])))
        base_seconds = wait_for(stack, "tenant-globex", n) - began
        base_requests = n

        # vector-relay load (acme)
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in records(n, seed=2)))
        outputs = Path(tmp) / "outputs.json"
        outputs.write_text(json.dumps(info.outputs))
        began = time.monotonic()
        result = CliRunner().invoke(
            cli,
            ["--outputs", str(outputs), "load", str(corpus), "--tenant", "acme", "--json"],
            env=info.upstream_environment(),
        )
        if result.exit_code != 0:
            raise RuntimeError(result.output)
        report = json.loads(result.output)
        load_seconds = wait_for(stack, "tenant-acme", n) - began

    print(f"{n:,} records x {DIMENSION} dims, file -> index through the local stack's poller")
    per_1000 = "SQS requests per 1,000 records"
    print(
        f"  one SendMessage per record: {n / base_seconds:8.0f} records/s, {base_requests * 1000 / n:7.1f} {per_1000}"
    )
    load_per_1000 = report["requests"] * 1000 / n
    print(f"  vector-relay load:          {n / load_seconds:8.0f} records/s, {load_per_1000:7.1f} {per_1000}")
    speedup, fewer = base_seconds / load_seconds, base_requests / report["requests"]
    print(f"  ratio: {speedup:.1f}x the records/s, {fewer:.0f}x fewer SQS requests")
    if wants_json():
        figures = {
            "records": n,
            "baseline_records_per_s": n / base_seconds,
            "load_records_per_s": n / load_seconds,
            "baseline_requests_per_1000": base_requests * 1000 / n,
            "load_requests_per_1000": load_per_1000,
        }
        print(f"wrote {write_results('load_throughput', figures)}")


if __name__ == "__main__":
    main()
