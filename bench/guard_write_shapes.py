"""Which write shape for the version guard's claims: client CPU, time, requests and write units per 1,000 records.

The guard's claims are compare-and-set writes (docs/ordering.md). Three shapes, each writing 1,000
fresh claim items of the guard's own size against moto's server (relay_local.moto_server, its own
process), with the guard's client settings (one attempt, no parameter validation):

* ``BatchWriteItem`` of 25 unconditional puts: the guard's claim write until 2026-12-07, the baseline;
* one conditional ``PutItem`` per record (8 in flight, as a pool of the guard's would);
* ``TransactWriteItems`` of 100 conditional puts: the guard's claim write now.

It prints, per shape, the client's CPU per record (this process's CPU time: moto runs in another),
the time per record, and the ratio of each against the baseline, measured in this process; plus the
DynamoDB requests and write units per 1,000 records from DynamoDB's pricing rules (a standard write
of an item up to 1 KB is one unit, a transactional one two). Rounds alternate the shapes; the median
round is reported. moto's time per request is not DynamoDB's: use the CPU column to choose, and the
request count with DynamoDB's latency for the time in AWS.

Run: ``.venv/bin/python bench/guard_write_shapes.py``
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from bench.harness import local_services, wants_json, write_results
from tests.integration.conftest import create_version_table
from vector_relay.aws_clients import GUARD_CONFIG

RECORDS = 1000
ROUNDS = 5
TABLE = "bench-shapes"
IN_FLIGHT = 8
STATE = "7 upsert 1795804567464 3f2a9c0e5b7d4e1fa2b3c4d5e6f70812"  # a claim's state: version, op, lease end, token


def item(record_id: str) -> dict[str, Any]:
    return {
        "namespace": {"S": "ns"},
        "record_id": {"S": record_id},
        "state": {"S": STATE},
        "expires_at": {"N": "1797000000"},
    }


def if_absent(record_id: str) -> dict[str, Any]:
    return {"Item": item(record_id), "ConditionExpression": "attribute_not_exists(record_id)"}


def batch_write(client: Any, ids: list[str]) -> int:
    for start in range(0, len(ids), 25):
        client.batch_write_item(
            RequestItems={TABLE: [{"PutRequest": {"Item": item(i)}} for i in ids[start : start + 25]]}
        )
    return -(-len(ids) // 25)


def put_each(client: Any, ids: list[str]) -> int:
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(lambda i: client.put_item(TableName=TABLE, **if_absent(i)), ids))
    return len(ids)


def transact(client: Any, ids: list[str]) -> int:
    for start in range(0, len(ids), 100):
        client.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, **if_absent(i)}} for i in ids[start : start + 100]]
        )
    return -(-len(ids) // 100)


SHAPES: dict[str, tuple[Callable[[Any, list[str]], int], int]] = {  # the writer, write units per record
    "BatchWriteItem x25 (baseline)": (batch_write, 1),
    f"PutItem each, {IN_FLIGHT} in flight": (put_each, 1),
    "TransactWriteItems x100": (transact, 2),
}


def main() -> None:
    with local_services("bench-key"):
        create_version_table(TABLE)
        client = boto3.client("dynamodb", config=GUARD_CONFIG.merge(Config(max_pool_connections=IN_FLIGHT)))
        cpu: dict[str, list[float]] = {name: [] for name in SHAPES}
        wall: dict[str, list[float]] = {name: [] for name in SHAPES}
        requests: dict[str, int] = {}
        for round_ in range(ROUNDS):
            for name, (writer, _) in SHAPES.items():
                ids = [f"{round_}-{len(cpu[name])}-{name[:3]}-{n}" for n in range(RECORDS)]
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                requests[name] = writer(client, ids)
                cpu[name].append((time.process_time() - cpu_before) / RECORDS * 1e6)
                wall[name].append((time.perf_counter() - wall_before) / RECORDS * 1e6)
    baseline = next(iter(SHAPES))
    base_cpu, base_wall = statistics.median(cpu[baseline]), statistics.median(wall[baseline])
    print(f"{RECORDS} claim items per round, {ROUNDS} rounds, median round; moto's server in its own process")
    results = []
    for name, (_, units) in SHAPES.items():
        row = {
            "shape": name,
            "client_cpu_us_per_record": statistics.median(cpu[name]),
            "us_per_record": statistics.median(wall[name]),
            "requests_per_1000_records": requests[name] * 1000 // RECORDS,
            "write_units_per_1000_records": units * 1000,
        }
        results.append(row)
        print(
            f"  {name:32} client CPU {row['client_cpu_us_per_record']:6.0f} us/record"
            f" ({row['client_cpu_us_per_record'] / base_cpu:5.2f}x baseline),"
            f" {row['us_per_record']:6.0f} us/record ({row['us_per_record'] / base_wall:5.2f}x),"
            f" {row['requests_per_1000_records']:4} requests and {row['write_units_per_1000_records']} write units"
            " per 1,000 records"
        )
    if wants_json():
        print(f"wrote {write_results('guard_write_shapes', {'rounds': ROUNDS, 'results': results})}")


if __name__ == "__main__":
    main()
