"""The metric catalogue is what the code writes, what docs/metrics.md lists and what the alarms watch."""

from __future__ import annotations

import ast
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay import metrics as catalogue
from vector_relay.contract.parsing import ERROR_CODES
from vector_relay.metrics import (
    CATALOGUE,
    METRIC_NAMESPACE,
    RECONCILE_MISMATCHES_BY_KIND,
    TENANT_DIMENSIONS,
    Metric,
    MetricFamily,
    emit_per_tenant,
    metric_data,
)
from vector_relay.operations.reconcile import MISMATCH_KINDS, Report, metric_counts

CATALOGUE_MODULE = ROOT / "shared" / "vector_relay" / "metrics.py"
SOURCES = sorted(path for folder in ("shared", "functions", "cli") for path in (ROOT / folder).rglob("*.py"))
# Calls that write a metric, set its dimensions or open another metric set: only the catalogue makes them.
WRITERS = {"add_metric", "single_metric", "add_dimension", "set_default_dimensions", "Metrics", "EphemeralMetrics"}
# The lists a family's members come from, by the placeholder the docs write (docs/contract.md explains each code).
FAMILY_MEMBERS: dict[str, set[str]] = {"error_code": set(ERROR_CODES)}
METRICS = [entry for entry in CATALOGUE if isinstance(entry, Metric)]
FAMILIES = [entry for entry in CATALOGUE if isinstance(entry, MetricFamily)]


def _calls(path: Path) -> Iterator[tuple[str, ast.Call]]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                yield node.func.attr, node
            elif isinstance(node.func, ast.Name):
                yield node.func.id, node


def _named_by_catalogue(call: ast.Call) -> bool:
    """A ``put_metric_data`` whose entries come from :func:`vector_relay.metrics.metric_data`."""
    data = next((keyword.value for keyword in call.keywords if keyword.arg == "MetricData"), None)
    return isinstance(data, ast.Call) and isinstance(data.func, ast.Name) and data.func.id == "metric_data"


def _as_written(metric: Metric | MetricFamily) -> list[Metric]:
    return (
        [metric] if isinstance(metric, Metric) else [metric.of(code) for code in sorted(FAMILY_MEMBERS[metric.member])]
    )


def _writes_outside_the_catalogue(path: Path) -> list[str]:
    found = []
    for name, call in _calls(path):
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{call.lineno} {name}"
        if name in WRITERS | {"Metric", "MetricFamily"} or (
            name == "put_metric_data" and not _named_by_catalogue(call)
        ):
            found.append(where)
        elif name == "of" and call.args and isinstance(call.args[0], ast.Constant):
            family = call.func.value if isinstance(call.func, ast.Attribute) else None
            entry = getattr(catalogue, family.id, None) if isinstance(family, ast.Name) else None
            if isinstance(entry, MetricFamily) and call.args[0].value not in FAMILY_MEMBERS[entry.member]:
                found.append(f"{where}({call.args[0].value!r}): not a documented {entry.member}")
    return found


def test_metrics_are_written_only_through_the_catalogue() -> None:
    assert CATALOGUE_MODULE in SOURCES
    assert len(SOURCES) > 50
    found = [where for path in SOURCES if path != CATALOGUE_MODULE for where in _writes_outside_the_catalogue(path)]
    assert found == [], "write metrics with vector_relay.metrics (Metric.emit), adding them to CATALOGUE"


def test_a_metric_named_outside_the_catalogue_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "new_feature.py"
    module.write_text(
        "metrics.add_metric(name='Shiny', unit=MetricUnit.Count, value=1)\n"
        "metrics.add_metric(name=f'Shiny.{code}', unit=MetricUnit.Count, value=1)\n"
        "with single_metric(name='Shiny', unit=MetricUnit.Count, value=1): pass\n"
        "cloudwatch.put_metric_data(Namespace='VectorRelay', MetricData=[{'MetricName': 'Shiny'}])\n"
        "SHINY = Metric('Shiny', MetricUnit.Count, ('ingest',), 'new')\n"
        "POISON_MESSAGES_BY_CODE.of('not_a_code').emit(metrics, 1)\n"
        "cloudwatch.put_metric_data(Namespace='VectorRelay', MetricData=metric_data(counts, service='reconcile'))\n"
        "POISON_MESSAGES_BY_CODE.of('invalid_json').emit(metrics, 1)\n"
    )
    assert sorted(where.split(" ")[0] for where in _writes_outside_the_catalogue(module)) == [
        f"new_feature.py:{line}" for line in range(1, 7)
    ]


def test_every_metric_defined_is_in_the_catalogue_once() -> None:
    defined = {value for value in vars(catalogue).values() if isinstance(value, Metric | MetricFamily)}
    assert defined | set(RECONCILE_MISMATCHES_BY_KIND.values()) == set(CATALOGUE)
    # a CloudWatch metric is its name and dimension names: RecordsUpserted by service and by tenant are two
    series = [(metric.name, metric.dimensions) for entry in CATALOGUE for metric in _as_written(entry)]
    assert len(series) == len(set(series)), "two metrics of the catalogue share a name and dimensions"
    names = [name for name, _ in series]
    assert all(len(name) <= 255 and name.isascii() for name in names)  # CloudWatch's limits on a metric name


def test_every_family_names_one_metric_per_documented_code() -> None:
    # PoisonMessages.<error_code> and ErrorReplies.<error_code>: the members are ERROR_CODES, which
    # docs/contract.md explains (tests/unit/test_docs.py); a code a Problem is made with is one of them
    assert {family.member for family in FAMILIES} <= set(FAMILY_MEMBERS)
    assert {family.name for family in FAMILIES} == {"PoisonMessages.<error_code>", "ErrorReplies.<error_code>"}
    codes = {
        call.args[0].value
        for path in SOURCES
        for name, call in _calls(path)
        if name == "Problem" and call.args and isinstance(call.args[0], ast.Constant)
    }
    assert codes
    assert codes <= set(ERROR_CODES)


def test_reconcile_counts_every_mismatch_kind_with_a_catalogue_metric() -> None:
    assert set(RECONCILE_MISMATCHES_BY_KIND) == set(MISMATCH_KINDS)
    assert set(metric_counts(Report())) <= set(METRICS)


def _row(metric: Metric | MetricFamily) -> str:
    dimensions = ", ".join(f"`{name}`" for name in metric.dimensions)
    return (
        f"| `{metric.name}` | {metric.unit.value} | {dimensions} | {', '.join(metric.emitted_by)} | {metric.meaning} |"
    )


def test_docs_metrics_table_is_the_catalogue() -> None:
    documented = [line for line in (ROOT / "docs" / "metrics.md").read_text().splitlines() if line.startswith("| `")]
    expected = [_row(entry) for entry in CATALOGUE]
    assert documented == expected, "docs/metrics.md's table should read:\n" + "\n".join(expected)
    assert "(docs/metrics.md)" in (ROOT / "README.md").read_text()


def _alarm_metrics(properties: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "MetricName" in properties:
        yield properties
    for query in properties.get("Metrics", []):  # metric math: each MetricStat names a metric
        if "MetricStat" in query:
            yield {**query["MetricStat"]["Metric"], "Unit": query["MetricStat"].get("Unit")}


def test_every_metric_an_alarm_watches_is_in_the_catalogue() -> None:
    resources = load_template(ROOT / "template.yaml")["Resources"]
    services = {
        resource["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME")
        for resource in resources.values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert {service for entry in CATALOGUE for service in entry.emitted_by} <= services
    by_name = {metric.name: metric for metric in METRICS if metric.dimensions != TENANT_DIMENSIONS}
    watched = [
        alarmed
        for resource in resources.values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        for alarmed in _alarm_metrics(resource["Properties"])
        if alarmed.get("Namespace") == METRIC_NAMESPACE
    ]
    # a metric whose meaning says "alarmed" has an alarm, and only those have
    assert {alarmed["MetricName"] for alarmed in watched} == {m.name for m in METRICS if "alarmed" in m.meaning}
    assert {alarmed["MetricName"] for alarmed in watched} == {
        "ReconcileMismatches",
        "PineconeIndexNotFound",
        "ReceiptsLost",
    }
    for alarmed in watched:
        metric = by_name[alarmed["MetricName"]]
        dimensions = {dimension["Name"]: dimension["Value"] for dimension in alarmed.get("Dimensions", [])}
        assert tuple(dimensions) == metric.dimensions, metric.name
        assert dimensions["service"] in metric.emitted_by, metric.name
        assert alarmed.get("Unit") in (None, metric.unit.value), metric.name


@pytest.mark.parametrize(
    "entry", [e for e in CATALOGUE if e.dimensions != TENANT_DIMENSIONS], ids=lambda entry: entry.name
)
def test_each_metric_is_written_with_its_namespace_unit_and_dimensions(entry: Metric | MetricFamily) -> None:
    for metric in _as_written(entry)[:2]:
        for service in metric.emitted_by:
            sink = EphemeralMetrics(namespace=METRIC_NAMESPACE, service=service)
            metric.emit(sink, 3)  # EphemeralMetrics: Metrics' interface without its shared state
            line = sink.serialize_metric_set()
            assert line["_aws"]["CloudWatchMetrics"] == [
                {
                    "Namespace": "VectorRelay",
                    "Dimensions": [list(metric.dimensions)],
                    "Metrics": [{"Name": metric.name, "Unit": metric.unit.value}],
                }
            ]
            assert (line["service"], line[metric.name]) == (service, [3.0])


@pytest.mark.parametrize(
    "metric", [m for m in METRICS if m.dimensions == TENANT_DIMENSIONS], ids=lambda metric: metric.name
)
def test_a_per_tenant_metric_is_written_with_its_tenant_one_line_per_tenant_and_at_most_100_values_a_line(
    metric: Metric, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = metric.emitted_by[0]
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", service)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Powertools warns when asked to write an empty line
        metric.emit_by_tenant({"acme": [float(v) for v in range(150)], "globex": [3.0]})
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"_aws"' in text]
    assert [(line["tenant"], line["service"], len(line[metric.name])) for line in lines] == [
        ("acme", service, 100),
        ("acme", service, 50),
        ("globex", service, 1),
    ]
    for line in lines:
        assert line["_aws"]["CloudWatchMetrics"] == [
            {
                "Namespace": "VectorRelay",
                "Dimensions": [list(TENANT_DIMENSIONS)],
                "Metrics": [{"Name": metric.name, "Unit": metric.unit.value}],
            }
        ]
    with pytest.raises(ValueError, match="no tenant dimension"):
        catalogue.RECORDS_UPSERTED.emit_by_tenant({"acme": [1.0]})


def test_a_tenants_many_values_come_out_whole_and_in_order_across_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values added to a line in bulk (not one ``add_metric`` each) keep every value, its order, and 100 a line."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
    values = [float(v) / 4 for v in range(250)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emit_per_tenant({"acme": {catalogue.WRITE_APPLIED_AFTER: values, catalogue.TENANT_RECORDS_UPSERTED: 7}})
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"_aws"' in text]
    written = [value for line in lines for value in line.get(catalogue.WRITE_APPLIED_AFTER.name, [])]
    assert written == values
    assert [len(line.get(catalogue.WRITE_APPLIED_AFTER.name, [])) for line in lines] == [100, 100, 50]
    assert sum(line.get(catalogue.TENANT_RECORDS_UPSERTED.name, [0.0])[0] for line in lines) == 7


def test_a_value_that_is_not_a_number_is_logged_and_never_raised(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
    emit_per_tenant({"acme": {catalogue.WRITE_APPLIED_AFTER: [1.0, "soon", 2.0]}})  # type: ignore[list-item]
    assert "could not write the per-tenant metrics" in caplog.text


def test_a_metric_written_at_once_and_one_published_carry_the_same_shape(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "rotate_key")
    catalogue.KEYS_KEPT_RETIREMENT_UNKNOWN.emit_now(2)
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"_aws"' in text]
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "KeysKeptRetirementUnknown", "Unit": "Count"}]
    assert (line["service"], line["KeysKeptRetirementUnknown"]) == ("rotate_key", [2.0])

    assert metric_data({catalogue.RECONCILE_MISMATCHES: 4}, service="reconcile") == [
        {
            "MetricName": "ReconcileMismatches",
            "Dimensions": [{"Name": "service", "Value": "reconcile"}],
            "Value": 4.0,
            "Unit": "Count",
        }
    ]


def test_a_tenants_metrics_go_out_in_one_line_with_its_properties_and_no_zero_counts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emit_per_tenant(
            {
                "acme": {
                    catalogue.TENANT_RECORDS_UPSERTED: 7,
                    catalogue.TENANT_RECORDS_DELETED: 0,
                    catalogue.WRITE_APPLIED_AFTER: [12.0, 30.0],
                },
                "globex": {catalogue.TENANT_POISON_MESSAGES: 2},
                "initech": {catalogue.TENANT_STALE_WRITES_DROPPED: 0},  # nothing to say: no line
            },
            {"globex": {"error_code": "schema_invalid", "dead_letters": 2}},
        )
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"_aws"' in text]
    assert [line["tenant"] for line in lines] == ["acme", "globex"]
    acme, globex = lines
    assert [m["Name"] for m in acme["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == [
        "RecordsUpserted",
        "WriteAppliedAfter",
    ]
    assert (acme["RecordsUpserted"], acme["WriteAppliedAfter"]) == ([7.0], [12.0, 30.0])
    assert "RecordsDeleted" not in acme
    assert (globex["PoisonMessages"], globex["error_code"], globex["dead_letters"]) == ([2.0], "schema_invalid", 2)
    assert "error_code" not in acme
    with pytest.raises(ValueError, match="no tenant dimension"):
        emit_per_tenant({"acme": {catalogue.RECORDS_UPSERTED: 1}})


def test_a_per_tenant_figure_that_cannot_be_written_never_fails_the_batch_that_counted_it(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
    emit_per_tenant({"acme": {catalogue.TENANT_RECORDS_UPSERTED: ["not a number"]}})  # type: ignore[dict-item]
    assert '"_aws"' not in capsys.readouterr().out
    assert "could not write the per-tenant metrics" in caplog.text
