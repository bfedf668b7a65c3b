"""``vector-relay dashboard`` against moto's server: template.yaml's dashboard, deployed as the local stack deploys it.

The template's resources (queues, functions, alarms, the dashboard) are created in moto by the local
stack's provisioner, so the command reads the dashboard body CloudFormation would have put, with the
names it would have resolved; metrics are put with ``PutMetricData`` as the functions' EMF lines and
AWS's own metrics would land, and the command draws them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from relay_local.cloudformation import LocalTemplate
from relay_local.provisioning import Provisioner
from vector_relay.metrics import (
    METRIC_NAMESPACE,
    POISON_MESSAGES_BY_CODE,
    TENANT_POISON_MESSAGES,
    TENANT_RECORDS_UPSERTED,
    WRITE_APPLIED_AFTER,
    Metric,
)
from vector_relay_cli.main import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def deployed(aws: str, tmp_path: Path) -> Iterator[LocalTemplate]:
    """template.yaml's resources in moto, and their outputs in an outputs file (as `make up` writes it)."""
    template = LocalTemplate()
    provisioner = Provisioner(template, aws)
    try:
        provisioner.provision()
        (tmp_path / "outputs.json").write_text(json.dumps(template.outputs()))
        yield template
    finally:
        provisioner.restore_moto_config()


def put(namespace: str, name: str, dimensions: dict[str, str], values: list[float], unit: str = "Count") -> None:
    """One value a minute, the last one a minute ago."""
    now = datetime.now(UTC)
    boto3.client("cloudwatch").put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "Timestamp": now - timedelta(minutes=len(values) - index),
                "Value": value,
                "Unit": unit,
            }
            for index, value in enumerate(values)
        ],
    )


def put_catalogued(metric: Metric, values: list[float], **dimensions: str) -> None:
    assert tuple(dimensions) == metric.dimensions, f"{metric.name} has the dimensions {metric.dimensions}"
    assert dimensions["service"] in metric.emitted_by
    put(METRIC_NAMESPACE, metric.name, dimensions, values, metric.unit.value)


def run(outputs: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "dashboard", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def by_title(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {widget["title"]: widget for widget in report["widgets"]}


def test_the_png_of_every_widget_is_written_and_the_report_says_which_had_data(
    deployed: LocalTemplate, tmp_path: Path
) -> None:
    ingest_queue = deployed.physical["IngestQueue"].attributes["QueueName"]
    ingest_function = deployed.physical["IngestFunction"].ref
    put("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": ingest_queue}, [0, 40, 120, 35, 0])
    put("AWS/Lambda", "Errors", {"FunctionName": ingest_function}, [0, 0, 2, 0])
    put_catalogued(TENANT_RECORDS_UPSERTED, [100, 250, 80], tenant="acme", service="ingest")
    put_catalogued(TENANT_RECORDS_UPSERTED, [30, 0, 60], tenant="globex", service="ingest")
    put_catalogued(POISON_MESSAGES_BY_CODE.of("invalid_json"), [1, 3], service="ingest")
    put_catalogued(POISON_MESSAGES_BY_CODE.of("unknown_tenant"), [2], service="query")
    put_catalogued(TENANT_POISON_MESSAGES, [1, 3], tenant="acme", service="ingest")
    put_catalogued(WRITE_APPLIED_AFTER, [850, 1200, 5400], tenant="acme", service="ingest")
    pngs = tmp_path / "pngs"

    code, out = run(tmp_path / "outputs.json", "--png", str(pngs), "--since", "30m", "--json")

    assert code == 0, out
    report = json.loads(out)
    assert report["dashboard"] == deployed.outputs()["DashboardName"]
    widgets = by_title(report)
    with_data = {title for title, widget in widgets.items() if widget["status"] == "data"}
    assert with_data == {
        "Queue depth",
        "Function errors",
        "Records upserted per tenant",
        "Dead-lettered messages by error code",
        "Dead-lettered messages by tenant",
        "Freshness: first send to applied (WriteAppliedAfter)",
    }
    assert {w["status"] for w in widgets.values()} <= {"data", "no data", "text"}  # nothing refused or failed
    assert (widgets["Queue depth"]["series"], widgets["Queue depth"]["series_with_data"]) == (3, 1)
    # the SEARCHes found the metrics put: two tenants; both codes (not the total); p50 and p99 of acme
    assert widgets["Records upserted per tenant"]["series_with_data"] == 2
    assert widgets["Dead-lettered messages by error code"]["series"] == 2
    assert widgets["Freshness: first send to applied (WriteAppliedAfter)"]["series_with_data"] == 2
    files = [Path(w["file"]) for w in report["widgets"]] + [Path(report["overview"])]
    assert len(set(files)) == len(files)
    for file in files:
        assert file.read_bytes().startswith(PNG_MAGIC), file
        assert file.stat().st_size > 10_000, file  # drawn, not an empty canvas
    assert Path(report["overview"]) == pngs / "overview.png"


def test_the_html_page_embeds_every_graph_and_the_human_report_counts_them(
    deployed: LocalTemplate, tmp_path: Path
) -> None:
    put_catalogued(TENANT_RECORDS_UPSERTED, [5, 7], tenant="acme", service="ingest")
    page = tmp_path / "dashboard.html"

    code, out = run(tmp_path / "outputs.json", "--html", str(page))

    assert code == 0, out
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 19  # every metric widget; the header is HTML text
    assert "<h3>vector-relay vector-relay-local</h3>" in text
    assert out.splitlines()[0].endswith(": 1 of 19 graphs have data")
    assert f"wrote {page}" in out


def test_no_dashboard_output_or_no_dashboard_exits_2_with_the_reason(deployed: LocalTemplate, tmp_path: Path) -> None:
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    (tmp_path / "old.json").write_text(json.dumps({k: v for k, v in outputs.items() if k != "DashboardName"}))
    code, out = run(tmp_path / "old.json", "--png", str(tmp_path / "pngs"))
    assert code == 2
    assert "has no output DashboardName" in out

    boto3.client("cloudwatch").delete_dashboards(DashboardNames=[outputs["DashboardName"]])
    code, out = run(tmp_path / "outputs.json", "--png", str(tmp_path / "pngs"))
    assert code == 2
    assert f"cannot read dashboard {outputs['DashboardName']}" in out

    code, out = run(tmp_path / "outputs.json")
    assert code == 2
    assert "give --png DIR, --html FILE, or both" in out


def test_the_local_stack_creates_the_template_s_alarms(deployed: LocalTemplate) -> None:
    alarms = boto3.client("cloudwatch").describe_alarms()["MetricAlarms"]
    template_alarms = deployed.resources_of_type("AWS::CloudWatch::Alarm")
    assert sorted(a["AlarmName"] for a in alarms) == sorted(deployed.default_name(a) for a in template_alarms)
    ingest_errors = next(a for a in alarms if a["AlarmName"].endswith("-IngestFunctionErrorsAlarm"))
    assert ingest_errors["Dimensions"] == [{"Name": "FunctionName", "Value": deployed.physical["IngestFunction"].ref}]
    assert (ingest_errors["Threshold"], ingest_errors["Period"]) == (0.0, 300)
