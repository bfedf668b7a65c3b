"""``vector-relay load`` says why a line is invalid by field, rule and type, never by a value of the line.

Each invalid line carries a canary in every value it has; whatever the load prints, as text or JSON,
stopping at the first invalid line or going on with ``--skip-invalid``, holds none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.integration.cli.test_load_command import DIMENSION, small_index, write_outputs
from tests.integration.conftest import Pipeline
from vector_relay_cli.main import cli

__all__ = ["small_index"]

TEXT = "CANARY"
NUMBERS = ["918273645", "7315926", "4815162342"]
VALUE = 0.7315926
VERSION = 918273645
REGISTRY = {"acme": {"namespace": "tenant-acme", "schema": {"fields": {"year": {"type": "number"}}}}}


def line(**fields: Any) -> str:
    record = {"id": f"{TEXT}-id", "version": VERSION, "values": [VALUE] * DIMENSION, "metadata": {"note": TEXT}}
    return json.dumps(record | fields)


INVALID = [
    line(id=f"{TEXT}-id-é"),
    line(id=TEXT * 100),
    line(values=[VALUE] * (DIMENSION + 1)),
    line(values=[f"{TEXT}-value"] * DIMENSION),
    line(values=[VALUE] * (DIMENSION - 1) + [float("nan")]),
    line(values=[0.0] * DIMENSION),
    line(version=f"{TEXT}-version"),
    line(metadata={"author": {"name": TEXT}}),
    line(metadata={"tags": [TEXT, VERSION]}),
    line(metadata={"$owner": TEXT}),
    line(metadata={"text": TEXT * 9000}),
    line(metadata={"year": f"{TEXT}-twenty"}),  # the tenant's schema: a number
    line(sparse_values={"indices": [4815162342], "values": [VALUE]}),
    line(priority=TEXT),
    json.dumps([TEXT, VERSION]),
    "{" + f'"id": "{TEXT}", "values": [{VALUE}',
    '{"a": ' * 20_000 + f'"{TEXT}"' + "}" * 20_000,  # deeper than json reads: a RecursionError, not a ValueError
]


def quoted(text: str) -> list[str]:
    return [canary for canary in [TEXT, *NUMBERS] if canary in text]


def test_invalid_lines_are_reported_by_field_rule_and_type_never_by_value(
    pipeline: Pipeline, small_index: Any, tmp_path: Path
) -> None:
    outputs = write_outputs(pipeline, tmp_path / "outputs.json", "load", REGISTRY)
    path = tmp_path / "canaries.jsonl"
    valid = json.dumps({"id": "fine", "version": 1, "values": [0.5] * DIMENSION})
    path.write_text("\n".join([valid, *INVALID]) + "\n")
    load = ["--outputs", str(outputs), "load", str(path), "--tenant", "acme"]

    stopped = CliRunner().invoke(cli, load)
    as_text = CliRunner().invoke(cli, [*load, "--skip-invalid"])
    as_json = CliRunner().invoke(cli, [*load, "--skip-invalid", "--json"])

    assert stopped.exit_code == 2
    assert "line 2 is not a valid record" in stopped.output
    assert as_text.exit_code == as_json.exit_code == 1  # ran, and found invalid lines
    report = json.loads(as_json.stdout)
    assert [entry["line"] for entry in report["invalid_lines"]] == list(range(2, len(INVALID) + 2))
    assert all(entry["reason"] for entry in report["invalid_lines"])
    assert "line 18: " in as_text.output  # the deep line was reported, not a crash
    for result in (stopped, as_text, as_json):
        assert quoted(result.output) == []
