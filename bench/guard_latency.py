"""What the version guard costs the ingest handler against DynamoDB: moto's CPU taken out, DynamoDB's latency put in.

Issue 32 asks for the guard-on handler at >= 0.85x the guard-off one (one tenant) on the shapes SQS
and Lambda deliver. ``bench/ingest_throughput.py`` measures it with the version table in moto's
server, which on a two-core machine spends 60-90 ms of CPU per 1,000 guarded records beside the
handler and the emulator (in AWS that is DynamoDB's work, on AWS's machines), and answers at once
(DynamoDB answers in milliseconds). This benchmark runs the same handler, as deployed, on the same
shapes and the same emulator (30 ms added to every upsert), guard off as the baseline and guard on
against:

* **moto**: the local stack's moto server, as ``bench/ingest_throughput.py`` does;
* **stand-in, N ms**: ``relay_local.dynamodb_standin`` in its own process, which answers the
  guard's calls as moto does (tests/integration/test_dynamodb_standin.py) with almost no CPU, after
  N ms. 0 ms shows what moto's CPU took from the guarded row; 3 ms is about an in-Region round
  trip from Lambda for a small item, 9 ms the top of the "single-digit millisecond" range AWS gives
  for DynamoDB (aws.amazon.com/dynamodb). Transactions of 100 puts and reads of 100 items take
  longer in DynamoDB than one small item; one latency for every call is kind to them.

Every configuration runs warm, in rotating order, fresh record ids each round; figures are medians
of the rounds. The ratio is each row's vectors/s over the guard-off row's of the same rounds.

Run: ``.venv/bin/python bench/guard_latency.py`` (``--quick``: one round; ``--rounds N``: more rounds
where the machine is noisy; ``--json``: write bench/results/guard_latency.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from bench.harness import (
    PYTHON,
    Services,
    free_port,
    local_services,
    process_cpu_clock_seconds,
    sqs_event,
    wait_for,
)
from bench.harness import write_results as write_json
from bench.ingest_throughput import (
    API_KEY,
    LATENCY_MS,
    AwsResources,
    DeployedHandler,
    deliverable_shapes,
    deployed_template,
    measure,
    run_tag,
    shape_indexes,
    tagged,
)

ROUNDS = 7
STAND_IN_LATENCIES_MS = (0, 3, 9)
GUARD_OFF = "guard off"
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_DYNAMODB"  # botocore's service-specific endpoint: only the guard's client


@dataclass
class Row:
    shape: str
    configuration: str
    vectors_per_s: float
    over_guard_off: float
    wall_ms: float
    handler_cpu_us_per_record: float
    dynamodb_requests_per_1k: float
    dynamodb_side_cpu_ms_per_1k: float  # moto's server or the stand-in, on this machine
    # capacity units per 1,000 records, counted by the stand-in (the same calls go to moto): None where not counted
    read_units_per_1k: float | None = None
    write_units_per_1k: float | None = None
    refused_write_units_per_1k: float | None = None


@dataclass(frozen=True)
class StandIn:
    url: str
    pid: int
    latency_ms: float


@contextmanager
def stand_ins(latencies_ms: tuple[int, ...]) -> Iterator[list[StandIn]]:
    """One stand-in process per latency, each on its own port."""
    started: list[tuple[subprocess.Popen[bytes], StandIn]] = []
    try:
        for latency in latencies_ms:
            port = free_port()
            process = subprocess.Popen(
                [PYTHON, "-m", "relay_local.dynamodb_standin", "--port", str(port), "--latency-ms", str(latency)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append((process, StandIn(f"http://127.0.0.1:{port}", process.pid, latency)))
            wait_for(f"http://127.0.0.1:{port}/")
        yield [stand_in for _, stand_in in started]
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=10)


type Configuration = tuple[str | None, Callable[[], float], Callable[[], dict[str, int]] | None]


def configurations(services: Services, standing: list[StandIn]) -> dict[str, Configuration]:
    """Each configuration: the guard's DynamoDB endpoint (None: guard off), its server's CPU clock, its unit count."""
    configured: dict[str, Configuration] = {
        GUARD_OFF: (None, lambda: 0.0, None),
        "guard on, moto": (services.moto, services.moto_cpu, None),
    }
    for stand_in in standing:
        configured[f"guard on, stand-in {stand_in.latency_ms:g} ms"] = (
            stand_in.url,
            functools.partial(process_cpu_clock_seconds, stand_in.pid),
            functools.partial(units_counted, stand_in.url),
        )
    return configured


def units_counted(url: str) -> dict[str, int]:
    """The capacity units the stand-in has counted so far (``GET /units``)."""
    with urllib.request.urlopen(f"{url}/units", timeout=10) as answer:
        counted: dict[str, int] = json.loads(answer.read())
    return counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round per shape: a smoke run, not a measurement")
    parser.add_argument("--json", action="store_true", help="write bench/results/guard_latency.json")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per shape (default {ROUNDS})")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds

    template = deployed_template(None)
    function = template.function("IngestFunction")
    (source,) = function.events
    shapes = deliverable_shapes(source.batch_size)
    handler = DeployedHandler(function)
    measured = "--quick, NOT a measurement" if args.quick else f"median of {rounds} rounds"
    print(
        f"the version guard's cost against DynamoDB: {measured}; handler as deployed ({function.memory_mb} MB),"
        f" emulator adds {LATENCY_MS} ms to every upsert"
    )
    rows: list[Row] = []
    from vector_relay.aws_clients import clear_client_caches

    with local_services(API_KEY) as services, stand_ins(STAND_IN_LATENCIES_MS) as standing:
        os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)  # Lambda emits the function's metrics
        resources = AwsResources.create(template)
        configured = configurations(services, standing)
        names = list(configured)
        for shape_no, shape in enumerate(shapes):
            with shape_indexes(services, shape_no, shape.dimension) as hosts:
                environment = resources.environment(
                    deployed_template(None, hosts[0], f"bench-{shape_no}", shape.dimension), function
                )
                samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in names}
                units: dict[str, list[dict[str, int]]] = {name: [] for name in names}
                for round_no in range(rounds):
                    turn = round_no % len(names)
                    for name in names[turn:] + names[:turn]:
                        endpoint, server_cpu, count_units = configured[name]
                        handler.environment = dict(environment)
                        if endpoint is not None:
                            handler.environment[ENDPOINT_VARIABLE] = endpoint
                        os.environ.pop(ENDPOINT_VARIABLE, None)
                        clear_client_caches()  # botocore's session keeps the endpoints it resolved
                        handler.configure(endpoint is not None, shape.dimension)
                        event = sqs_event(tagged(shape.bodies, run_tag(round_no, names.index(name))))
                        server_before = server_cpu()
                        units_before = count_units() if count_units else {}
                        sample = measure(services, functools.partial(handler.invoke, event), handler.guard_requests)
                        samples[name].append(
                            (sample.seconds, sample.cpu_seconds, sample.guard_requests, server_cpu() - server_before)
                        )
                        if count_units:
                            after = count_units()
                            units[name].append({kind: after[kind] - units_before[kind] for kind in after})
                os.environ.pop(ENDPOINT_VARIABLE, None)
            rates = {name: statistics.median(shape.vectors / s[0] for s in runs) for name, runs in samples.items()}
            shape_rows = [
                Row(
                    shape=shape.name,
                    configuration=name,
                    vectors_per_s=rates[name],
                    over_guard_off=rates[name] / rates[GUARD_OFF],
                    wall_ms=statistics.median(s[0] for s in runs) * 1000,
                    handler_cpu_us_per_record=statistics.median(s[1] for s in runs) / shape.vectors * 1e6,
                    dynamodb_requests_per_1k=statistics.median(s[2] for s in runs) / shape.vectors * 1000,
                    dynamodb_side_cpu_ms_per_1k=statistics.median(s[3] for s in runs) / shape.vectors * 1e6,
                    **per_1k(units[name], shape.vectors),
                )
                for name, runs in samples.items()
            ]
            report(shape.name, shape.vectors, shape_rows)
            rows += shape_rows
    if args.json:
        payload = {
            "quick": args.quick,
            "rounds": rounds,
            "emulator_latency_ms": LATENCY_MS,
            "stand_in_latencies_ms": list(STAND_IN_LATENCIES_MS),
            "memory_mb": function.memory_mb,
            "runs": [asdict(row) for row in rows],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(f"\nwrote {write_json('guard_latency', payload)}")


def per_1k(counted: list[dict[str, int]], records: int) -> dict[str, float]:
    """The median round's capacity units per 1,000 records (nothing where none were counted)."""
    if not counted:
        return {}
    return {
        f"{kind}_units_per_1k": statistics.median(round_[kind] for round_ in counted) / records * 1000
        for kind in ("read", "write", "refused_write")
    }


def report(shape: str, vectors: int, rows: list[Row]) -> None:
    print(f"\n{shape}: {vectors:,} records")
    print(
        f"  {'configuration':<28}{'vectors/s':>10}{'/ guard off':>13}{'wall ms':>9}{'CPU us/rec':>12}"
        f"{'DynamoDB/1k rec':>17}{'its CPU ms/1k rec':>19}{'RRU/WRU (refused) per 1k rec':>31}"
    )
    for row in rows:
        units = "-"
        if row.write_units_per_1k is not None:
            units = f"{row.read_units_per_1k:.0f} / {row.write_units_per_1k:.0f} ({row.refused_write_units_per_1k:.0f})"
        print(
            f"  {row.configuration:<28}{row.vectors_per_s:>10,.0f}{row.over_guard_off:>12.2f}x{row.wall_ms:>9.1f}"
            f"{row.handler_cpu_us_per_record:>12.0f}{row.dynamodb_requests_per_1k:>17.0f}"
            f"{row.dynamodb_side_cpu_ms_per_1k:>19.0f}{units:>31}"
        )


if __name__ == "__main__":
    main()
