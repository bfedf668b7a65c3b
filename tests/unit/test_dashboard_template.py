"""template.yaml's dashboard asks for metrics that exist, for every queue and function, and every alarm has a runbook.

The body is read the way ``vector-relay dashboard`` reads the deployed one (vector_relay_cli.dashboard_body),
with each ``${Resource}`` / ``${Resource.Attribute}`` of its ``!Sub`` standing for itself, so a query can be
traced to the resource it names.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.contract.parsing import ERROR_CODES
from vector_relay.metrics import CATALOGUE, METRIC_NAMESPACE, Metric, MetricFamily
from vector_relay_cli.dashboard_body import (
    MetricQuery,
    MetricWidget,
    SearchQuery,
    TextWidget,
    parse_dashboard,
    search_matches,
)

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
OPERATING_DOC = (ROOT / "docs" / "operating.md").read_text()
# The AWS metrics a widget may graph (AWS/SQS and AWS/Lambda's documented metrics the dashboard uses), by the
# dimension that names the resource.
AWS_METRICS = {
    "AWS/SQS": ("QueueName", {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}),
    "AWS/Lambda": ("FunctionName", {"Errors", "Throttles", "Duration", "ConcurrentExecutions", "Invocations"}),
}
# What a ${...} of the body stands for in these tests: the reference itself, <Resource> or <Resource.Attribute>.
LITERAL = re.compile(r"\$\{(![^}]*|[^}!]+)\}")


def resolved_body() -> str:
    [dashboard] = [r for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    return LITERAL.sub(lambda m: "${" + m.group(1)[1:] + "}" if m.group(1).startswith("!") else f"<{m.group(1)}>", body)


WIDGETS = parse_dashboard(resolved_body())
METRIC_WIDGETS = [w for w in WIDGETS if isinstance(w, MetricWidget)]
QUERIES = [(w.title, q) for w in METRIC_WIDGETS for q in w.queries]


def catalogued() -> list[Metric]:
    """Every metric the catalogue describes, a family as one metric per error code."""
    metrics: list[Metric] = []
    for entry in CATALOGUE:
        if isinstance(entry, MetricFamily):
            metrics.extend(entry.of(code) for code in sorted(ERROR_CODES))
        else:
            metrics.append(entry)
    return metrics


def written(metric: Metric) -> list[dict[str, str]]:
    """The dimension sets a metric is written with (a sample tenant for the per-tenant ones)."""
    return [
        {name: service if name == "service" else "acme" for name in metric.dimensions} for service in metric.emitted_by
    ]


def test_every_widget_is_one_the_command_draws() -> None:
    assert [w for w in WIDGETS if not isinstance(w, MetricWidget | TextWidget)] == []
    assert len(METRIC_WIDGETS) >= 15
    for widget in METRIC_WIDGETS:
        assert widget.region == "<AWS::Region>", widget.title
        assert widget.queries, widget.title


@pytest.mark.parametrize(("title", "query"), QUERIES, ids=[f"{t}: {getattr(q, 'name', '')}" for t, q in QUERIES])
def test_every_query_names_a_catalogue_metric_or_a_known_aws_metric(
    title: str, query: MetricQuery | SearchQuery
) -> None:
    if isinstance(query, SearchQuery):
        assert query.namespace == METRIC_NAMESPACE, f"{title}: SEARCH is for the relay's own metrics"
        found = [
            (metric.name, dimensions)
            for metric in catalogued()
            for dimensions in written(metric)
            if search_matches(query, METRIC_NAMESPACE, metric.name, dimensions)
        ]
        assert found, f"{title}: {query.expression} finds no metric of the catalogue"
        return
    dimensions = dict(query.dimensions)
    if query.namespace == METRIC_NAMESPACE:
        matching = [
            m
            for m in catalogued()
            if m.name == query.name and m.dimensions == tuple(name for name, _ in query.dimensions)
        ]
        assert matching, f"{title}: {query.name} with dimensions {list(dimensions)} is not in the catalogue"
        assert any(dimensions["service"] in m.emitted_by for m in matching), f"{title}: {query.name} {dimensions}"
        return
    assert query.namespace in AWS_METRICS, f"{title}: {query.namespace}"
    dimension, names = AWS_METRICS[query.namespace]
    assert query.name in names, f"{title}: {query.namespace} {query.name}"
    assert list(dimensions) == [dimension], title
    resource = re.fullmatch(r"<(\w+)(?:\.QueueName)?>", dimensions[dimension])
    assert resource is not None, f"{title}: {dimensions[dimension]} names no resource of the template"
    kind = RESOURCES[resource.group(1)]["Type"]
    assert kind == ("AWS::SQS::Queue" if query.namespace == "AWS/SQS" else "AWS::Serverless::Function"), title


def graphed(namespace: str, name: str) -> set[str]:
    """The resources whose ``name`` metric some widget graphs."""
    return {
        dict(q.dimensions)[AWS_METRICS[namespace][0]].strip("<>").removesuffix(".QueueName")
        for _, q in QUERIES
        if isinstance(q, MetricQuery) and q.namespace == namespace and q.name == name
    }


def test_every_queue_and_function_of_the_template_is_graphed() -> None:
    queues = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::SQS::Queue"}
    sources = {name for name in queues if "RedrivePolicy" in RESOURCES[name]["Properties"]}
    dead_letter_queues = {
        RESOURCES[name]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for name in sources
    }
    assert graphed("AWS/SQS", "ApproximateNumberOfMessagesVisible") == sources | dead_letter_queues
    assert graphed("AWS/SQS", "ApproximateAgeOfOldestMessage") == sources
    # every function but the custom resource's (it exists only while the stack creates or changes the index)
    functions = {
        name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function" and "Condition" not in r
    }
    for metric in ("Errors", "Throttles", "Duration", "ConcurrentExecutions"):
        assert graphed("AWS/Lambda", metric) == functions, metric


def test_the_dead_letter_search_finds_every_error_code_and_not_the_total() -> None:
    [search] = [
        q for title, q in QUERIES if title == "Dead-lettered messages by error code" and isinstance(q, SearchQuery)
    ]
    found = {
        metric.name
        for metric in catalogued()
        for dimensions in written(metric)
        if search_matches(search, METRIC_NAMESPACE, metric.name, dimensions)
    }
    assert found == {f"PoisonMessages.{code}" for code in ERROR_CODES}


def test_the_per_tenant_searches_ask_for_one_metric_by_its_exact_name() -> None:
    searches = [(title, q) for title, q in QUERIES if isinstance(q, SearchQuery) and "tenant" in q.dimension_names]
    assert len(searches) >= 10
    for title, query in searches:
        assert query.dimension_names == {"tenant", "service"}, title
        assert query.metric_name() is not None, title  # RecordsUpserted, not every metric with "Records" in it


def test_the_dashboard_is_an_output() -> None:
    [name] = [n for n, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert TEMPLATE["Outputs"]["DashboardName"]["Value"] == {"Ref": name}


def test_every_alarm_has_a_runbook_line_in_operating_md() -> None:
    rows = set(re.findall(r"^\| `(\w+Alarm)`", OPERATING_DOC, flags=re.MULTILINE))
    alarms = {name for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms - rows == set(), "docs/operating.md's alarm tables have no row for these"
    assert rows - alarms == set(), "docs/operating.md has rows for alarms the template does not have"


def test_the_body_is_json_once_substituted_and_names_no_unknown_resource() -> None:
    json.loads(resolved_body())
    for reference in re.findall(r"<([\w:.]+)>", resolved_body()):
        name = reference.split(".", 1)[0]
        assert name in RESOURCES or name.startswith("AWS::"), reference
