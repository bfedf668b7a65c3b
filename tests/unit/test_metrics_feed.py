"""The local stack reads the functions' EMF lines as CloudWatch Logs does, and sends their metrics to CloudWatch
in calls PutMetricData takes, from a thread of its own that never raises into the function's output pump."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricResolution, MetricUnit, single_metric

from relay_local.aws_metrics import invocation_metrics
from relay_local.metrics_feed import (
    MAX_CALL_POINTS,
    InvalidEmf,
    MetricPoint,
    MetricsFeed,
    emf_metric_points,
    put_metric_data_calls,
)
from relay_local.runtime import InvocationResult
from tests.conftest import wait_until

NOW_MS = 1_780_000_000_000
AT = datetime.fromtimestamp(NOW_MS / 1000, UTC)
CEILING = 30.0  # seconds: generous, for a thread to hand over what it was given


def emf(members: dict[str, Any], *directives: dict[str, Any], timestamp: int = NOW_MS) -> str:
    return json.dumps({"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": list(directives)}, **members})


def points(line: str) -> list[MetricPoint] | None:
    return emf_metric_points(line, now_ms=NOW_MS)


# ---------------------------------------------------------------------------- the format
def test_each_directive_dimension_set_and_metric_is_one_metric_with_the_members_values() -> None:
    line = emf(
        {"service": "ingest", "tenant": "acme", "Upserted": [3, 3, 1.5], "Latency": 12, "requestId": "r-1"},
        {
            "Namespace": "VectorRelay",
            "Dimensions": [["service"], ["tenant", "service"]],
            "Metrics": [{"Name": "Upserted", "Unit": "Count"}, {"Name": "Latency", "StorageResolution": 1}],
        },
        {"Namespace": "Other", "Dimensions": [[]], "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}]},
    )

    service, tenant = (("service", "ingest"),), (("tenant", "acme"), ("service", "ingest"))
    assert points(line) == [
        MetricPoint("VectorRelay", "Upserted", service, AT, (3.0, 3.0, 1.5), "Count", 60),
        MetricPoint("VectorRelay", "Upserted", tenant, AT, (3.0, 3.0, 1.5), "Count", 60),
        MetricPoint("VectorRelay", "Latency", service, AT, 12.0, "None", 1),
        MetricPoint("VectorRelay", "Latency", tenant, AT, 12.0, "None", 1),
        MetricPoint("Other", "Latency", (), AT, 12.0, "Milliseconds", 60),
    ]


def test_a_list_is_sent_as_values_and_counts_and_a_number_as_one_value() -> None:
    listed = MetricPoint("N", "M", (("service", "ingest"),), AT, (3.0, 3.0, 1.5), "Count")
    single = MetricPoint("N", "M", (), AT, 12.0, "Milliseconds", 1)

    assert listed.datum() == {
        "MetricName": "M",
        "Dimensions": [{"Name": "service", "Value": "ingest"}],
        "Timestamp": AT,
        "Unit": "Count",
        "StorageResolution": 60,
        "Values": [3.0, 1.5],
        "Counts": [2.0, 1.0],
    }
    assert single.datum() == {
        "MetricName": "M",
        "Dimensions": [],
        "Timestamp": AT,
        "Unit": "Milliseconds",
        "StorageResolution": 1,
        "Value": 12.0,
    }


@pytest.mark.parametrize(
    "line",
    [
        "START RequestId: 8f5e Version: $LATEST",
        "plain text that names _aws without quotes",
        '{"level": "INFO", "message": "batch done", "service": "ingest"}',
        '{"level": "INFO", "message": {"_aws": "nested, not at the top"}}',
        '["_aws"]',
        "",
    ],
    ids=["text", "text-with-name", "json-log", "nested-_aws", "json-list", "empty"],
)
def test_a_line_that_is_no_emf_document_gives_nothing(line: str) -> None:
    assert points(line) is None


GOOD = {"Namespace": "VectorRelay", "Dimensions": [["service"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [', "not one JSON object"),
        (emf({"service": "ingest", "M": 1}, GOOD) + " trailing", "not one JSON object"),
        (emf({"service": "ingest", "M": float("nan")}, GOOD), "not one JSON object"),
        (emf({"service": "ingest"}, GOOD), "metric 'M'"),
        (emf({"service": "ingest", "M": "3"}, GOOD), "metric 'M'"),
        (emf({"service": "ingest", "M": True}, GOOD), "metric 'M'"),
        (emf({"service": "ingest", "M": [1] * 101}, GOOD), "metric 'M'"),
        (emf({"service": "ingest", "M": 2.0**400}, GOOD), "metric 'M'"),
        (emf({"M": 1}, GOOD), "dimension 'service'"),
        (emf({"service": 7, "M": 1}, GOOD), "dimension 'service'"),
        (emf({"service": "ingest", "M": 1}, {**GOOD, "Metrics": [{"Name": "M", "Unit": "Parsecs"}]}), ".Unit"),
        (emf({"service": "ingest", "M": 1}, {**GOOD, "Metrics": [{"Name": "M", "StorageResolution": 5}]}), "Storage"),
        (emf({"service": "ingest", "M": 1}, {**GOOD, "Dimensions": []}), ".Dimensions"),
        (emf({"service": "ingest", "M": 1}, {**GOOD, "Namespace": ""}), ".Namespace"),
        (emf({"service": "ingest", "M": 1}, GOOD, timestamp=NOW_MS - 15 * 24 * 3600 * 1000), "two weeks"),
        (emf({"service": "ingest", "M": 1}, GOOD, timestamp=NOW_MS + 3 * 3600 * 1000), "two hours"),
        (json.dumps({"_aws": {"CloudWatchMetrics": [GOOD]}, "service": "ingest", "M": 1}), "Timestamp"),
        (json.dumps({"_aws": {"Timestamp": NOW_MS}, "service": "ingest", "M": 1}), "CloudWatchMetrics"),
    ],
    ids=[
        "truncated",
        "trailing-text",
        "nan",
        "metric-missing",
        "metric-a-string",
        "metric-a-boolean",
        "over-100-values",
        "out-of-range",
        "dimension-missing",
        "dimension-not-a-string",
        "unknown-unit",
        "storage-resolution",
        "no-dimension-set",
        "empty-namespace",
        "timestamp-too-old",
        "timestamp-ahead",
        "no-timestamp",
        "no-directives",
    ],
)
def test_a_document_that_breaks_the_specification_gives_no_metric_and_says_why(line: str, why: str) -> None:
    with pytest.raises(InvalidEmf, match=re.escape(why)):
        points(line)


def test_what_powertools_writes_becomes_the_metrics_cloudwatch_would_make(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "ingest")
    metrics = Metrics(namespace="VectorRelay")
    metrics.add_metric(name="RecordsUpserted", unit=MetricUnit.Count, value=3)
    metrics.add_metric(name="PineconeLatency", unit=MetricUnit.Milliseconds, value=12.5)
    metrics.add_metric(name="PineconeLatency", unit=MetricUnit.Milliseconds, value=4)
    metrics.add_metric(name="Fast", unit=MetricUnit.Count, value=1, resolution=MetricResolution.High)
    metrics.flush_metrics()
    per_tenant = EphemeralMetrics(namespace="VectorRelay")
    per_tenant.add_dimension(name="tenant", value="acme")
    for value in range(150):  # Powertools writes a line by itself at 100 values
        per_tenant.add_metric(name="WriteAppliedAfter", unit=MetricUnit.Milliseconds, value=value)
    per_tenant.flush_metrics()
    with single_metric(name="KeysKept", unit=MetricUnit.Count, value=2, namespace="VectorRelay"):
        pass

    lines = capsys.readouterr().out.splitlines()
    found = [p for line in lines for p in emf_metric_points(line, now_ms=json.loads(line)["_aws"]["Timestamp"]) or []]

    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for p in found:
        sums[p.name, p.dimensions] = sums.get((p.name, p.dimensions), 0.0) + (
            sum(p.value) if isinstance(p.value, tuple) else p.value
        )
    service, tenant = (("service", "ingest"),), (("tenant", "acme"), ("service", "ingest"))
    assert sums == {
        ("RecordsUpserted", service): 3.0,
        ("PineconeLatency", service): 16.5,
        ("Fast", service): 1.0,
        ("WriteAppliedAfter", tenant): float(sum(range(150))),
        ("KeysKept", service): 2.0,
    }
    assert {p.name: (p.unit, p.storage_resolution) for p in found} == {
        "RecordsUpserted": ("Count", 60),
        "PineconeLatency": ("Milliseconds", 60),
        "Fast": ("Count", 1),
        "WriteAppliedAfter": ("Milliseconds", 60),
        "KeysKept": ("Count", 60),
    }
    assert [len(p.value) for p in found if p.name == "WriteAppliedAfter" and isinstance(p.value, tuple)] == [100, 50]


# ---------------------------------------------------------------------------- the calls
def point(namespace: str, name: str = "M", dimension: str = "x") -> MetricPoint:
    return MetricPoint(namespace, name, (("d", dimension),), AT, 1.0, "Count")


def test_calls_hold_one_namespace_and_at_most_the_api_limit_of_points() -> None:
    data = [point("A") for _ in range(MAX_CALL_POINTS + 1)] + [point("B"), point("A")]

    calls = list(put_metric_data_calls(data))

    assert [(namespace, len(entries)) for namespace, entries in calls] == [
        ("A", MAX_CALL_POINTS),
        ("A", 2),
        ("B", 1),
    ]


def test_calls_stay_well_under_a_megabyte() -> None:
    wide = [point("A", dimension="v" * 1000) for _ in range(MAX_CALL_POINTS)]

    calls = list(put_metric_data_calls(wide))

    assert len(calls) > 1
    assert all(len(json.dumps(entries, default=str)) < 1024 * 1024 for _, entries in calls)
    assert sum(len(entries) for _, entries in calls) == MAX_CALL_POINTS


class FakeCloudWatch:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.lock = threading.Lock()

    def put_metric_data(self, *, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        if self.fail:
            raise ConnectionError("moto is gone")
        with self.lock:
            self.calls.append((Namespace, MetricData))


def test_the_feed_sends_emf_lines_and_the_stacks_own_points_and_counts_what_it_skipped() -> None:
    cloudwatch = FakeCloudWatch()
    feed = MetricsFeed("http://unused", "us-east-1", client=cloudwatch, clock=lambda: NOW_MS / 1000).start()
    result = InvocationResult("ok", {"batchItemFailures": []}, 25.0)

    feed.log_line(emf({"service": "ingest", "M": [1, 2]}, GOOD) + "\n")
    feed.log_line("START RequestId: 8f5e Version: $LATEST\n")
    feed.log_line('{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [\n')  # cut short
    feed.publish(invocation_metrics("vector-relay-local-IngestFunction", result, concurrent=2, at=AT))
    feed.stop()

    assert not feed.alive
    sent = {(namespace, e["MetricName"]): e for namespace, entries in cloudwatch.calls for e in entries}
    assert sent[("VectorRelay", "M")]["Values"] == [1.0, 2.0]
    lambda_dimensions = [{"Name": "FunctionName", "Value": "vector-relay-local-IngestFunction"}]
    assert {name: (e["Value"], e["Dimensions"]) for (ns, name), e in sent.items() if ns == "AWS/Lambda"} == {
        "Invocations": (1.0, lambda_dimensions),
        "Errors": (0.0, lambda_dimensions),
        "Duration": (25.0, lambda_dimensions),
        "ConcurrentExecutions": (2.0, lambda_dimensions),
    }
    c = feed.counters
    assert (c.emf_lines, c.invalid_lines, c.points_sent, c.failed_calls) == (1, 1, 5, 0)
    assert "not one JSON object" in c.last_invalid


def test_a_failing_cloudwatch_is_counted_and_never_raises_into_the_caller() -> None:
    feed = MetricsFeed("http://unused", "us-east-1", client=FakeCloudWatch(fail=True), clock=lambda: NOW_MS / 1000)
    feed.start()

    feed.log_line(emf({"service": "ingest", "M": 1}, GOOD))
    feed.stop()
    feed.log_line(emf({"service": "ingest", "M": 1}, GOOD))  # after stop: dropped, not raised
    feed.publish([point("A")])

    c = feed.counters
    assert (c.failed_calls, c.points_sent, c.dropped) == (1, 0, 2)
    assert "moto is gone" in c.last_failure


def test_the_feed_sends_within_its_flush_interval_without_being_stopped() -> None:
    cloudwatch = FakeCloudWatch()
    feed = MetricsFeed("http://unused", "us-east-1", client=cloudwatch, flush_seconds=0.05).start()
    try:
        feed.publish([point("A")])

        wait_until(lambda: bool(cloudwatch.calls), "the point is sent while the feed runs", ceiling=CEILING)
    finally:
        feed.stop()


def test_flush_sends_what_was_taken_before_it_returns_and_a_stopped_feed_says_it_cannot() -> None:
    cloudwatch = FakeCloudWatch()
    feed = MetricsFeed(
        "http://unused", "us-east-1", client=cloudwatch, flush_seconds=3600, clock=lambda: NOW_MS / 1000
    ).start()
    feed.publish([point("Stack", name="Own")])
    feed.log_line(emf({"service": "ingest", "M": 1}, GOOD))

    assert feed.flush()  # not an hour later: now

    sent = sorted((namespace, datum["MetricName"]) for namespace, data in cloudwatch.calls for datum in data)
    assert ("Stack", "Own") in sent
    assert len(sent) == 2
    feed.stop()
    assert not feed.flush()
