"""``vector-relay reconcile`` against moto's server and the emulator (a relay described by its stack outputs).

The guard's table is seeded with settled records (leases over) the way the relay leaves it, and the
index is written through the SDK, so every kind of mismatch can be set up without waiting out a lease.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import Pipeline, create_version_table
from tests.integration.test_ingest import vector
from vector_relay.ingest.guard_records import RecordState
from vector_relay_cli.main import cli

TABLE = "relay-write-versions"
NAMESPACE = "tenant-acme"
PARAMETER = "relay-tenant-registry"


def record(record_id: str, version: int, operation: str = "upsert", until_ms: int = 1) -> dict[str, dict[str, str]]:
    state = RecordState(version, operation, until_ms, ("lease-token",))
    return {"namespace": {"S": NAMESPACE}, "record_id": {"S": record_id}, "state": {"S": state.format()}}


@pytest.fixture
def outputs(pipeline: Pipeline, tmp_path: Path) -> Path:
    """The stack outputs the command reads, as `make up` writes them (the pipeline's table, index, secret, registry)."""
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=json.dumps(SAMPLE_TENANTS), Type="String")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "WriteVersionTableName": TABLE,
                "PineconeIndexHost": pipeline.emulator.index_host("relay-test"),
                "PineconeApiKeySecretArn": pipeline.secret_arn,
                "TenantRegistryParameterName": PARAMETER,
            }
        )
    )
    return path


def seed(pipeline: Pipeline) -> None:
    """a, b clean; c missing; d behind; e resurrected; f in flight (a live lease) and absent."""
    dynamodb = boto3.client("dynamodb")
    for item in (
        record("a", 1),
        record("b", 2),
        record("c", 1),
        record("d", 3),
        record("e", 2, "delete"),
        record("f", 1, until_ms=10**15),
    ):
        dynamodb.put_item(TableName=TABLE, Item=item)
    pipeline.index.upsert(
        vectors=[
            ("a", vector(1), {"_relay_version": "1"}),
            ("b", vector(2), {"_relay_version": "2"}),
            ("d", vector(4), {"_relay_version": "2"}),
            ("e", vector(5), {"_relay_version": "1"}),
        ],
        namespace=NAMESPACE,
    )


def run(outputs: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_a_clean_index_exits_0_and_the_json_has_every_kind(pipeline: Pipeline, outputs: Path) -> None:
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=record("a", 1))
    pipeline.index.upsert(vectors=[("a", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)

    code, out = run(outputs, "reconcile", "--json")

    assert code == 0
    assert json.loads(out) == {
        "checked": 1,
        "in_flight": 0,
        "repaired": 0,
        "mismatches_total": 0,
        "counts": {"missing": 0, "behind": 0, "resurrected": 0, "ahead": 0, "unversioned": 0},
        "mismatches": [],
        "not_in_table": {},
    }


def test_mismatches_exit_1_and_repair_fixes_only_the_resurrected(pipeline: Pipeline, outputs: Path) -> None:
    seed(pipeline)

    code, out = run(outputs, "reconcile", "--json")
    report = json.loads(out)
    assert code == 1
    assert (report["checked"], report["in_flight"]) == (5, 1)
    assert {(m["id"], m["kind"]) for m in report["mismatches"]} == {
        ("c", "missing"),
        ("d", "behind"),
        ("e", "resurrected"),
    }
    assert set(pipeline.fetch("acme", ["e"])) == {"e"}  # reporting changes nothing

    code, out = run(outputs, "reconcile", "--repair")
    assert code == 1  # missing and behind need their data republished
    assert "3 mismatches, 1 repaired" in out
    assert set(pipeline.fetch("acme", ["e"])) == set()
    code, out = run(outputs, "reconcile", "--json")
    assert json.loads(out)["counts"]["resurrected"] == 0


def test_human_output_names_each_mismatch_and_the_way_to_repair(pipeline: Pipeline, outputs: Path) -> None:
    seed(pipeline)

    code, out = run(outputs, "reconcile", "--show", "2")

    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "checked 5 records; 1 skipped (a write's lease is still live); 3 mismatches"
    assert any(line.split() == ["missing", "1"] for line in lines)
    assert "... and 1 more (--show N, or --json for all)" in lines
    assert lines[-1].startswith("resurrected records can be deleted again with --repair")


def test_records_the_table_does_not_know_are_named_in_a_warning(pipeline: Pipeline, outputs: Path) -> None:
    # GIVEN an index that holds records and a guard table that lost them (a local stack restarted without its data)
    pipeline.index.upsert(
        vectors=[(f"r{i}", vector(i + 1), {"_relay_version": "1"}) for i in range(3)], namespace=NAMESPACE
    )
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=record("r0", 1))

    code, out = run(outputs, "reconcile")

    assert code == 0  # nothing the table records is wrong ...
    assert out.splitlines()[0] == "checked 1 records; 0 skipped (a write's lease is still live); 0 mismatches"
    # ... but the index holds records it never checked, and says so
    assert (
        "warning: namespace tenant-acme holds 3 records in the index, but the version guard's table records 1: "
        "at least 2 records were not checked" in " ".join(out.split())
    )
    code, out = run(outputs, "reconcile", "--json")
    assert json.loads(out)["not_in_table"] == {NAMESPACE: {"index": 3, "table": 1}}


def test_a_namespace_filter_checks_only_that_namespace(pipeline: Pipeline, outputs: Path) -> None:
    seed(pipeline)

    code, out = run(outputs, "reconcile", "--json", "--namespace", "tenant-other")

    assert (code, json.loads(out)["checked"]) == (0, 0)


def test_metric_publishes_the_counts_the_alarm_watches(pipeline: Pipeline, outputs: Path) -> None:
    seed(pipeline)

    code, _ = run(outputs, "reconcile", "--metric")

    assert code == 1
    cloudwatch = boto3.client("cloudwatch")
    listed = cloudwatch.list_metrics(Namespace="VectorRelay", MetricName="ReconcileMismatches")["Metrics"]
    assert listed == [
        {
            "Namespace": "VectorRelay",
            "MetricName": "ReconcileMismatches",
            "Dimensions": [{"Name": "service", "Value": "reconcile"}],
        }
    ]
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="VectorRelay")["Metrics"]}
    assert {"ReconcileChecked", "ReconcileMismatchesBehind", "ReconcileMismatchesResurrected"} <= names


def test_the_stack_outputs_are_read_from_cloudformation(pipeline: Pipeline, outputs: Path) -> None:
    # GIVEN a stack whose outputs name the relay's parts (moto's CloudFormation)
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in json.loads(outputs.read_text()).items()},
    }
    boto3.client("cloudformation").create_stack(StackName="vector-relay", TemplateBody=json.dumps(template))
    boto3.client("dynamodb").put_item(TableName=TABLE, Item=record("a", 1))

    result = CliRunner().invoke(cli, ["--stack", "vector-relay", "reconcile", "--json"])

    assert (result.exit_code, json.loads(result.output)["counts"]["missing"]) == (1, 1)


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator runs it."""
    script = Path(sys.executable).parent / "vector-relay"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


def test_the_console_script_runs_and_exits_2_when_it_cannot_run(pipeline: Pipeline, outputs: Path) -> None:
    seed(pipeline)

    ran = command("--outputs", str(outputs), "reconcile", "--json")
    assert ran.returncode == 1, ran.stderr
    assert json.loads(ran.stdout)["checked"] == 5

    no_relay = command("reconcile", env={"VECTOR_RELAY_OUTPUTS": "", "VECTOR_RELAY_STACK": ""})
    assert no_relay.returncode == 2
    assert no_relay.stderr.startswith("Error: which relay? none is named: for the local stack, paste the export")
    missing = command("--outputs", str(outputs.parent / "absent.json"), "reconcile")
    assert missing.returncode == 2
    assert "cannot read outputs file" in missing.stderr
    bad_usage = command("reconcile", "--show", "-1")
    assert bad_usage.returncode == 2


def test_no_output_for_the_table_is_a_clear_error(tmp_path: Path, aws: str) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps([{"OutputKey": "IngestQueueUrl", "OutputValue": "https://example"}]))
    create_version_table(TABLE)

    result = CliRunner().invoke(cli, ["--outputs", str(path), "reconcile"])

    assert result.exit_code == 2
    assert f"outputs file {path} has no output WriteVersionTableName" in result.output
