"""docs/capacity.md's tables are what tools/capacity_model.py prints, and the model's rules follow its sources."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from relay_local.cloudformation import load_template
from relay_local.event_source import MAX_PAYLOAD_BYTES
from tests.conftest import ROOT
from tools import capacity_model
from tools.capacity_model import (
    DOC,
    LAMBDA_MAX_EVENT_BYTES,
    MEASURED,
    SHAPES,
    TEMPLATE_DEFAULTS,
    Batch,
    bench_measurements,
    cpu_share,
    documented_blocks,
    marked,
    render,
    sqs_requests,
    write_doc,
    write_units,
)
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES

BENCH = ROOT / "bench" / "ingest_throughput.py"


def _bench_constants() -> dict[str, object]:
    """bench/ingest_throughput.py's module-level constants that are literals (FULL_BATCH's name kept as 0)."""
    found: dict[str, object] = {}
    for node in ast.parse(BENCH.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            source = ast.unparse(node.value).replace("FULL_BATCH", "0")
            try:
                found[node.targets[0].id] = ast.literal_eval(source)
            except ValueError:
                continue
    return found


def test_docs_capacity_tables_are_the_models_output() -> None:
    documented = documented_blocks(DOC.read_text())
    expected = render(MEASURED)
    assert documented.keys() == expected.keys(), "docs/capacity.md should have one block per table of the model"
    for name, body in expected.items():
        assert documented[name] == body, (
            f"docs/capacity.md's {name!r} table differs from the model's:"
            " .venv/bin/python -m tools.capacity_model --constants --write"
        )


def test_the_model_sends_the_benchmarks_batches() -> None:
    bench = _bench_constants()
    assert tuple(bench["SHAPES"]) == SHAPES  # type: ignore[arg-type]
    assert bench["LATENCY_MS"] == capacity_model.PINECONE_LATENCY_MS
    assert bench["LAMBDA_MB_PER_VCPU"] == capacity_model.LAMBDA_MB_PER_VCPU
    assert bench["LEAN_IN_FLIGHT"] == TEMPLATE_DEFAULTS["pinecone_in_flight"]
    assert LAMBDA_MAX_EVENT_BYTES == MAX_PAYLOAD_BYTES
    for b in capacity_model.batches(TEMPLATE_DEFAULTS["batch_size"]):  # each reaches the function as deployed
        assert max(b.message_bytes) <= SQS_MAX_MESSAGE_BYTES
        assert b.event_bytes <= LAMBDA_MAX_EVENT_BYTES
        assert sum(b.request_records) == b.records


def test_the_template_figures_are_the_templates() -> None:
    template = load_template(ROOT / "template.yaml")
    scaling = template["Resources"]["IngestFunction"]["Properties"]["Events"]["IngestQueueMessages"]["Properties"]
    assert scaling["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "IngestMaximumConcurrency"}
    assert scaling["BatchSize"] == {"Ref": "IngestBatchSize"}
    assert TEMPLATE_DEFAULTS["maximum_concurrency"] == template["Parameters"]["IngestMaximumConcurrency"]["Default"]


def test_a_function_gets_a_vcpu_share_in_proportion_to_memory_up_to_one_vcpu() -> None:
    assert cpu_share(1769) == 1.0
    assert cpu_share(1769 // 2) == pytest.approx(0.5, abs=0.001)
    assert cpu_share(512) == pytest.approx(0.289, abs=0.001)
    assert cpu_share(3008) == 1.0  # a second vCPU, which one Python thread under the GIL does not use


@pytest.mark.parametrize(
    ("records", "record_bytes", "units"),
    # Pinecone's cost page: records per batch, average record size, WUs (all records new)
    [(1, 3_200, 5), (2, 3_200, 7), (10, 19_100, 191), (100, 3_570, 357), (1_000, 7_140, 7_140)],
)
def test_upsert_write_units_follow_pinecones_examples(records: int, record_bytes: int, units: int) -> None:
    assert write_units(records * record_bytes) == units


def test_each_sqs_call_is_billed_per_started_64_kb_of_its_messages() -> None:
    def batch_of(sizes: list[int]) -> Batch:
        return Batch("test", len(sizes), len(sizes), 3, tuple(sizes), 0, (), (), ())

    # seven 832 KB messages: one per SendMessageBatch (1 MiB a call), 13 chunks each; one receive of all seven
    assert sqs_requests(batch_of([832_241] * 7)) == {"send": 7 * 13, "receive": 89, "delete": 1}
    # 100 small messages, 10 calls each way: 10 x 6,000 bytes is one chunk a call, 10 x 6,782 two
    assert sqs_requests(batch_of([6_000] * 100)) == {"send": 10, "receive": 10, "delete": 10}
    assert sqs_requests(batch_of([6_782] * 100)) == {"send": 20, "receive": 20, "delete": 10}
    assert sqs_requests(batch_of([100])) == {"send": 1, "receive": 1, "delete": 1}


def test_a_full_bench_run_is_preferred_and_a_quick_or_partial_one_is_not(tmp_path: Path) -> None:
    names = list(MEASURED.by_shape)
    runs = [
        {"shape": name, "strategy": "handler, guard on", "cpu_us_per_record": 100.4 + n, "dynamodb_requests_per_1k": 30}
        for n, name in enumerate(names)
    ]
    results = tmp_path / "ingest_throughput.json"
    payload = {"quick": False, "rounds": 5, "ingest_batch_size": TEMPLATE_DEFAULTS["batch_size"], "runs": runs}

    results.write_text(json.dumps(payload))
    measured = bench_measurements(results)
    assert measured is not None
    assert [m.cpu_us_per_record for m in measured.by_shape.values()] == [100, 101, 102]
    assert {m.dynamodb_requests_per_1k for m in measured.by_shape.values()} == {30}
    assert "median of 5 rounds" in measured.source

    results.write_text(json.dumps(payload | {"quick": True}))
    assert bench_measurements(results) is None
    results.write_text(json.dumps(payload | {"runs": runs[:2]}))
    assert bench_measurements(results) is None
    results.write_text(json.dumps(payload | {"ingest_batch_size": 400}))
    assert bench_measurements(results) is None
    assert bench_measurements(tmp_path / "absent.json") is None


def test_writing_replaces_only_the_blocks(tmp_path: Path) -> None:
    page = tmp_path / "capacity.md"
    page.write_text(f"before\n\n{marked('lambda', 'old table')}\n\nbetween\n\n{marked('limits', 'old')}\n\nafter\n")

    assert write_doc({"lambda": "| new |", "limits": "| newer |"}, page) is True

    assert page.read_text() == (
        f"before\n\n{marked('lambda', '| new |')}\n\nbetween\n\n{marked('limits', '| newer |')}\n\nafter\n"
    )
    assert documented_blocks(page.read_text()) == {"lambda": "| new |", "limits": "| newer |"}
    assert write_doc({"lambda": "| new |"}, page) is False
    with pytest.raises(SystemExit, match="needs exactly one block"):
        write_doc({"costs": "x"}, page)
