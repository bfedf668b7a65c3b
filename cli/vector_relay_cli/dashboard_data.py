"""The data of a dashboard's metric widgets, from CloudWatch: ``ListMetrics`` for searches, ``GetMetricData``.

Each widget is read on its own (one failing widget does not hide the others). A ``SEARCH`` is
resolved here, not by CloudWatch: the metrics of its namespace (and metric name, when the search
names one exactly) are listed and :func:`~vector_relay_cli.dashboard_body.search_matches` picks
them, so moto, which evaluates no search, draws the same graphs as AWS. Like CloudWatch's, a
search finds at most 500 metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.dashboard_body import MetricQuery, MetricWidget, SearchQuery, series_label

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDataQueryTypeDef

GET_METRIC_DATA_MAX_QUERIES = 500  # CloudWatch's limit of MetricDataQueries in one GetMetricData request
SEARCH_MAX_METRICS = 500  # CloudWatch's limit of the metrics one SEARCH returns
MAX_POINTS = 1440  # per series: a longer window is read with a longer period (whole minutes), as the console does


@dataclass(frozen=True, slots=True)
class Series:
    metric: tuple[str, str, tuple[tuple[str, str], ...]]  # namespace, name, dimensions: what was read
    label: str
    stat: str
    period: int  # seconds, as read
    color: str | None
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]


@dataclass(slots=True)
class WidgetData:
    widget: MetricWidget
    series: list[Series] = field(default_factory=list)
    error: str | None = None  # CloudWatch refused or failed the widget's requests

    @property
    def with_data(self) -> list[Series]:
        return [s for s in self.series if s.values]

    @property
    def points(self) -> int:
        return sum(len(s.values) for s in self.series)


def read_period(period: int, start: datetime, end: datetime) -> int:
    """``period``, or a longer one in whole minutes when the window would have more than MAX_POINTS points."""
    needed = (end - start).total_seconds() / MAX_POINTS
    if needed <= period:
        return period
    return int(math.ceil(needed / 60) * 60)


class MetricReader:
    """Reads widgets' data from one CloudWatch client; listed metrics are kept for the run (searches share them)."""

    def __init__(self, cloudwatch: CloudWatchClient) -> None:
        self.cloudwatch = cloudwatch
        self._listed: dict[tuple[str, str | None], list[tuple[str, dict[str, str]]]] = {}

    def read(self, widget: MetricWidget, start: datetime, end: datetime) -> WidgetData:
        data = WidgetData(widget)
        try:
            queries = [q for query in widget.queries for q in self.resolve(query)]
            data.series = self._metric_data(queries, start, end)
        except (ClientError, BotoCoreError) as error:
            data.error = str(error)
        return data

    def resolve(self, query: MetricQuery | SearchQuery) -> list[MetricQuery]:
        """The metric queries a widget's entry stands for: itself, or the metrics a search finds (sorted)."""
        if isinstance(query, MetricQuery):
            return [query]
        found = sorted(
            (name, tuple(sorted(dimensions.items())))
            for name, dimensions in self._list(query.namespace, query.metric_name())
            if query.matches(query.namespace, name, dimensions)
        )
        return [query.query_for(name, dict(dimensions)) for name, dimensions in found[:SEARCH_MAX_METRICS]]

    def _list(self, namespace: str, name: str | None) -> list[tuple[str, dict[str, str]]]:
        key = (namespace, name)
        if key not in self._listed:
            seen: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
            arguments: dict[str, Any] = {"Namespace": namespace, **({"MetricName": name} if name else {})}
            for page in self.cloudwatch.get_paginator("list_metrics").paginate(**arguments):
                for metric in page.get("Metrics", []):
                    dimensions = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    # moto lists a metric once per value put; CloudWatch once
                    seen[(metric.get("MetricName", ""), tuple(sorted(dimensions.items())))] = dimensions
            self._listed[key] = [(metric_name, dimensions) for (metric_name, _), dimensions in seen.items()]
        return self._listed[key]

    def _metric_data(self, queries: Sequence[MetricQuery], start: datetime, end: datetime) -> list[Series]:
        series: list[Series] = []
        for chunk_start in range(0, len(queries), GET_METRIC_DATA_MAX_QUERIES):
            chunk = queries[chunk_start : chunk_start + GET_METRIC_DATA_MAX_QUERIES]
            periods = [read_period(q.period, start, end) for q in chunk]
            requests: list[MetricDataQueryTypeDef] = [
                {
                    "Id": f"q{index}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": query.namespace,
                            "MetricName": query.name,
                            "Dimensions": [{"Name": n, "Value": v} for n, v in query.dimensions],
                        },
                        "Period": period,
                        "Stat": query.stat,
                    },
                    "ReturnData": True,
                }
                for index, (query, period) in enumerate(zip(chunk, periods, strict=True))
            ]
            points: dict[str, dict[datetime, float]] = {r["Id"]: {} for r in requests}
            for result in self._results(requests, start, end):
                for timestamp, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                    points[result["Id"]][timestamp] = value
            for index, (query, period) in enumerate(zip(chunk, periods, strict=True)):
                ordered = sorted(points[f"q{index}"].items())
                series.append(
                    Series(
                        metric=(query.namespace, query.name, query.dimensions),
                        label=series_label(query),
                        stat=query.stat,
                        period=period,
                        color=query.color,
                        timestamps=tuple(t for t, _ in ordered),
                        values=tuple(v for _, v in ordered),
                    )
                )
        return series

    def _results(self, requests: list[MetricDataQueryTypeDef], start: datetime, end: datetime) -> Iterator[Any]:
        if not requests:
            return
        token: str | None = None
        while True:
            more: dict[str, Any] = {"NextToken": token} if token else {}
            page = self.cloudwatch.get_metric_data(
                MetricDataQueries=requests, StartTime=start, EndTime=end, ScanBy="TimestampAscending", **more
            )
            yield from page.get("MetricDataResults", [])
            token = page.get("NextToken")
            if not token:
                return
