"""A dashboard body as `vector-relay dashboard` reads it: the console's shorthand, SEARCH, refusals saying what."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vector_relay_cli.dashboard_body import (
    MetricQuery,
    MetricWidget,
    SearchQuery,
    TextWidget,
    UnsupportedWidget,
    parse_dashboard,
    search_matches,
    series_label,
    words,
)
from vector_relay_cli.dashboard_data import read_period


def body(*widgets: dict[str, Any]) -> str:
    return json.dumps({"widgets": list(widgets)})


def metric_widget(metrics: list[Any], **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": 0,
        "y": 0,
        "width": 12,
        "height": 6,
        "properties": {"title": "t", "region": "us-east-1", "metrics": metrics, **properties},
    }


def only(widget: dict[str, Any]) -> MetricWidget:
    [parsed] = parse_dashboard(body(widget))
    assert isinstance(parsed, MetricWidget), parsed
    return parsed


def refusal(widget: dict[str, Any]) -> str:
    [parsed] = parse_dashboard(body(widget))
    assert isinstance(parsed, UnsupportedWidget), parsed
    return parsed.reason


def test_the_consoles_shorthand_repeats_the_previous_metric() -> None:
    widget = only(
        metric_widget(
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "ingest", {"label": "ingest"}],
                ["...", "query"],
                [".", "ApproximateAgeOfOldestMessage", ".", ".", {"stat": "p99", "period": 60}],
            ],
            stat="Maximum",
            period=300,
        )
    )
    visible, age = "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"
    assert [(q.name, q.dimensions, q.stat, q.period, q.label) for q in widget.queries] == [
        (visible, (("QueueName", "ingest"),), "Maximum", 300, "ingest"),
        (visible, (("QueueName", "query"),), "Maximum", 300, f"{visible} query"),  # no label: name and values
        (age, (("QueueName", "query"),), "p99", 60, f"{age} query"),
    ]


def test_defaults_are_cloudwatch_s_and_hidden_metrics_are_not_drawn() -> None:
    widget = only(metric_widget([["NS", "A"], ["NS", "B", {"visible": False}]]))
    assert [(q.name, q.stat, q.period) for q in widget.queries] == [("A", "Average", 300)]


def test_a_search_is_read_with_its_own_statistic_and_period() -> None:
    expression = "SEARCH('{VectorRelay,service,tenant} MetricName=\"RecordsUpserted\"', 'Sum', 60)"
    widget = only(metric_widget([[{"expression": expression, "id": "e1", "label": "${PROP('Dim.tenant')}"}]]))
    [search] = widget.queries
    assert isinstance(search, SearchQuery)
    assert (search.namespace, search.dimension_names, search.stat, search.period) == (
        "VectorRelay",
        {"service", "tenant"},
        "Sum",
        60,
    )
    assert search.metric_name() == "RecordsUpserted"
    assert search.matches("VectorRelay", "RecordsUpserted", {"tenant": "acme", "service": "ingest"})
    # exactly the schema's dimensions, as CloudWatch's search: the service-wide series is not found
    assert not search.matches("VectorRelay", "RecordsUpserted", {"service": "ingest"})
    assert not search.matches("VectorRelay", "RecordsDeleted", {"tenant": "acme", "service": "ingest"})
    found = search.query_for("RecordsUpserted", {"tenant": "acme", "service": "ingest"})
    assert series_label(found) == "acme"


def test_a_word_matches_a_part_of_the_name_and_not_excludes() -> None:
    expression = "SEARCH('{VectorRelay,service} MetricName=PoisonMessages NOT MetricName=\"PoisonMessages\"', 'Sum')"
    [search] = only(metric_widget([[{"expression": expression}]], period=120)).queries
    assert isinstance(search, SearchQuery)
    assert search.period == 120  # none in the expression: the widget's
    assert search_matches(search, "VectorRelay", "PoisonMessages.invalid_json", {"service": "ingest"})
    assert not search_matches(search, "VectorRelay", "PoisonMessages", {"service": "ingest"})
    assert not search_matches(search, "VectorRelay", "ErrorReplies.invalid_json", {"service": "query"})
    assert not search_matches(search, "Other", "PoisonMessages.invalid_json", {"service": "ingest"})
    assert words("PoisonMessages.invalid_json") >= {"poisonmessages", "poison", "messages", "invalid", "json"}
    assert "poisonmessages.invalid_json" in words("PoisonMessages.invalid_json")


def test_a_dimension_term_and_an_explicit_and() -> None:
    expression = "SEARCH('{VectorRelay,service,tenant} MetricName=\"QueryLatency\" AND tenant=\"acme\"', 'p99', 60)"
    [search] = only(metric_widget([[{"expression": expression}]])).queries
    assert isinstance(search, SearchQuery)
    assert search.matches("VectorRelay", "QueryLatency", {"tenant": "acme", "service": "query"})
    assert not search.matches("VectorRelay", "QueryLatency", {"tenant": "globex", "service": "query"})


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ([{"expression": "m1 + m2"}], "only SEARCH"),
        ([{"expression": "SEARCH('{NS,a} MetricName=\"X\" OR MetricName=\"Y\"', 'Sum', 60)"}], "'OR MetricName"),
        ([{"expression": "SEARCH('MetricName=\"X\"', 'Sum', 60)"}], "without a metric schema"),
        ([{"expression": "SEARCH('{NS,a} b=\"X\"', 'Sum', 60)"}], "b is neither MetricName nor a dimension"),
        (["NS", "M", {"label": "${MAX}"}], "dynamic label ${MAX} is not drawn"),
        (["NS", "M", {"yAxis": "right"}], "only the left y axis"),
        (["NS", "M", {"accountId": "111122223333"}], "metric options accountId"),
        (["NS", "M", {"region": "eu-west-1"}], "a metric of region eu-west-1"),
        (["...", "x"], '"..." in'),
        (["NS", "M", "dimension-without-value"], "[Namespace, MetricName, Name, Value, ...]"),
    ],
)
def test_what_is_not_drawn_is_refused_with_what_it_is(entry: list[Any], says: str) -> None:
    assert says in refusal(metric_widget([entry]))


def test_other_widget_types_and_views_are_refused_and_the_rest_is_drawn() -> None:
    widgets = parse_dashboard(
        body(
            {"type": "log", "x": 0, "y": 6, "width": 6, "height": 6, "properties": {"title": "logs"}},
            metric_widget([["NS", "M"]], view="pie") | {"y": 12},
            {"type": "text", "x": 0, "y": 0, "width": 24, "height": 2, "properties": {"markdown": "## Hello\nworld"}},
        )
    )
    assert [type(w) for w in widgets] == [TextWidget, UnsupportedWidget, UnsupportedWidget]  # in reading order
    assert widgets[0].title == "Hello"
    assert isinstance(widgets[1], UnsupportedWidget)
    assert "widget type 'log' is not drawn" in widgets[1].reason
    assert isinstance(widgets[2], UnsupportedWidget)
    assert "view 'pie' is not drawn" in widgets[2].reason


def test_series_labels_fill_in_the_metric_s_properties() -> None:
    query = MetricQuery(
        "VectorRelay",
        "PoisonMessages.invalid_json",
        (("service", "ingest"),),
        "Sum",
        300,
        "${PROP('MetricName')} (${PROP('Dim.service')}) in ${PROP('Namespace')}",
    )
    assert series_label(query) == "PoisonMessages.invalid_json (ingest) in VectorRelay"


def test_a_long_window_is_read_with_a_longer_period_in_whole_minutes() -> None:
    end = datetime(2026, 1, 1, tzinfo=UTC)
    assert read_period(60, end - timedelta(hours=1), end) == 60
    assert read_period(300, end - timedelta(days=1), end) == 300
    assert read_period(60, end - timedelta(days=7), end) == 420  # 10,080 minutes in at most 1,440 points
