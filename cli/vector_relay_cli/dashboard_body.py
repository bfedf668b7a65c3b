"""A CloudWatch dashboard body (the JSON of ``PutDashboard``) read into widgets and metric queries.

The part of CloudWatch's dashboard body format that ``vector-relay dashboard`` draws, and no more;
anything else is refused with a message that says what (:class:`Unsupported`), widget by widget:

* widgets of type ``metric`` (views ``timeSeries`` and ``singleValue``, ``stacked``, one left
  ``yAxis`` with ``label``/``min``/``max``, horizontal ``annotations``, ``legend``) and ``text``;
* each entry of a widget's ``metrics``: ``[Namespace, MetricName, DimensionName, DimensionValue,
  ..., {options}]``, with the console's shorthand: ``"."`` is the previous entry's item at that
  position, and a leading ``"..."`` the previous entry's items with its last ones replaced by those
  that follow (``["...", "other-queue"]``); options ``stat``, ``period``, ``label``, ``id``,
  ``visible``, ``color``, ``region``, ``yAxis: "left"``;
* an entry ``[{"expression": "SEARCH(...)", ...}]`` (no other metric math), whose search has a
  metric schema ``{Namespace,DimensionName,...}`` (it finds metrics with exactly those dimensions,
  as CloudWatch's does) and terms ``Name="exact"`` or ``Name=token`` (``Name`` is ``MetricName`` or
  a dimension of the schema; a token matches a word of the value: ``PoisonMessages`` matches
  ``PoisonMessages.invalid_json``), each optionally after ``NOT``, joined by spaces or ``AND``;
* labels with the dynamic labels ``${PROP('MetricName')}``, ``${PROP('Namespace')}`` and
  ``${PROP('Dim.<name>')}``.

CloudWatch evaluates ``SEARCH`` itself; moto does not, so :func:`search_matches` is applied to what
``ListMetrics`` lists (the same code path in AWS and locally).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_STAT = "Average"  # CloudWatch's defaults for a metric widget
DEFAULT_PERIOD = 300
VIEWS = ("timeSeries", "singleValue")
WIDGET_PROPERTIES = frozenset(
    {"metrics", "view", "stacked", "region", "title", "stat", "period", "yAxis", "annotations", "legend", "liveData"}
)
METRIC_OPTIONS = frozenset({"stat", "period", "label", "id", "visible", "color", "region", "yAxis"})
EXPRESSION_OPTIONS = frozenset({"expression", "label", "id", "visible", "color", "region", "period"})
DYNAMIC_LABEL = re.compile(r"\$\{([^}]*)\}")
LABEL_PROPERTY = re.compile(r"PROP\('(MetricName|Namespace|Dim\.[^']+)'\)")
_SEARCH = re.compile(r"SEARCH\(\s*'((?:[^'\\]|\\.)*)'\s*,\s*'([^']+)'\s*(?:,\s*(\d+)\s*)?\)")
_SCHEMA = re.compile(r"\s*\{([^}]*)\}")
_TERM = re.compile(r'\s*(?:AND\s+)?(?:(NOT)\s+)?([A-Za-z][\w.-]*)=(?:"([^"]*)"|([^\s"()]+))')
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


class Unsupported(ValueError):
    """The body uses something :mod:`vector_relay_cli.dashboard_body` does not draw; the message says what."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a widget sits on the dashboard's grid: 24 columns wide, rows as tall as they need."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One metric of a widget, with the statistic and period it is drawn with."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str
    period: int
    label: str  # may hold dynamic labels (resolved by :func:`series_label`)
    color: str | None = None


@dataclass(frozen=True, slots=True)
class SearchTerm:
    field: str  # "MetricName" or a dimension name
    value: str
    exact: bool
    negated: bool


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A ``SEARCH(...)`` entry: the metrics it finds are drawn with its statistic and period."""

    expression: str
    namespace: str
    dimension_names: frozenset[str]
    terms: tuple[SearchTerm, ...]
    stat: str
    period: int
    label: str
    color: str | None = None

    def metric_name(self) -> str | None:
        """The one metric name the search asks for exactly (a ``ListMetrics`` filter), if it does."""
        exact = [t.value for t in self.terms if t.field == "MetricName" and t.exact and not t.negated]
        return exact[0] if len(exact) == 1 else None

    def matches(self, namespace: str, name: str, dimensions: dict[str, str]) -> bool:
        return search_matches(self, namespace, name, dimensions)

    def query_for(self, name: str, dimensions: dict[str, str]) -> MetricQuery:
        """The metric query of one metric the search found."""
        return MetricQuery(
            self.namespace, name, tuple(sorted(dimensions.items())), self.stat, self.period, self.label, self.color
        )


@dataclass(frozen=True, slots=True)
class Annotation:
    value: float
    label: str
    color: str | None = None


@dataclass(frozen=True, slots=True)
class MetricWidget:
    title: str
    placement: Placement
    view: str
    stacked: bool
    queries: tuple[MetricQuery | SearchQuery, ...]
    region: str | None
    y_label: str
    y_min: float | None
    y_max: float | None
    annotations: tuple[Annotation, ...]


@dataclass(frozen=True, slots=True)
class TextWidget:
    placement: Placement
    markdown: str

    @property
    def title(self) -> str:
        """Its first line, without markdown's heading marks (a text widget has no title of its own)."""
        first = self.markdown.strip().splitlines()[0] if self.markdown.strip() else "(empty text)"
        return first.lstrip("#").strip()


@dataclass(frozen=True, slots=True)
class UnsupportedWidget:
    title: str
    placement: Placement
    reason: str


Widget = MetricWidget | TextWidget | UnsupportedWidget


def parse_dashboard(body: str) -> list[Widget]:
    """The widgets of a dashboard body, in reading order (top to bottom, left to right).

    A widget that uses something not drawn here is an :class:`UnsupportedWidget` with the reason;
    a body that is not a dashboard at all raises :class:`Unsupported`.
    """
    try:
        document = json.loads(body)
    except ValueError as error:
        raise Unsupported(f"the dashboard body is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("widgets"), list):
        raise Unsupported("the dashboard body has no widgets array")
    widgets = [_widget(raw) for raw in document["widgets"]]
    return sorted(widgets, key=lambda w: (w.placement.y, w.placement.x))


def _widget(raw: Any) -> Widget:
    if not isinstance(raw, dict):
        raise Unsupported(f"a widget is not an object: {raw!r}")
    properties = raw.get("properties") or {}
    placement = Placement(
        int(raw.get("x", 0)), int(raw.get("y", 0)), int(raw.get("width", 6)), int(raw.get("height", 6))
    )
    kind = raw.get("type")
    title = str(properties.get("title") or f"({kind} widget)")
    try:
        if kind == "text":
            return TextWidget(placement, str(properties.get("markdown", "")))
        if kind == "metric":
            return _metric_widget(properties, placement, title)
        raise Unsupported(f"widget type {kind!r} is not drawn (metric and text widgets are)")
    except Unsupported as refusal:
        return UnsupportedWidget(title, placement, str(refusal))


def _metric_widget(properties: dict[str, Any], placement: Placement, title: str) -> MetricWidget:
    unknown = sorted(set(properties) - WIDGET_PROPERTIES)
    if unknown:
        raise Unsupported(f"widget properties {', '.join(unknown)} are not drawn")
    view = str(properties.get("view", "timeSeries"))
    if view not in VIEWS:
        raise Unsupported(f"view {view!r} is not drawn ({' and '.join(VIEWS)} are)")
    stat = str(properties.get("stat", DEFAULT_STAT))
    period = int(properties.get("period", DEFAULT_PERIOD))
    region = properties.get("region")
    y_axis = properties.get("yAxis") or {}
    if set(y_axis) - {"left"}:
        raise Unsupported("only the left y axis is drawn")
    left = y_axis.get("left") or {}
    annotations = properties.get("annotations") or {}
    if set(annotations) - {"horizontal"}:
        raise Unsupported("only horizontal annotations are drawn")
    return MetricWidget(
        title=title,
        placement=placement,
        view=view,
        stacked=bool(properties.get("stacked", False)),
        queries=tuple(_queries(properties.get("metrics") or [], stat, period, region)),
        region=str(region) if region else None,
        y_label=str(left.get("label", "")),
        y_min=_number(left.get("min")),
        y_max=_number(left.get("max")),
        annotations=tuple(
            Annotation(float(a["value"]), str(a.get("label", "")), a.get("color"))
            for a in annotations.get("horizontal", [])
        ),
    )


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _queries(entries: list[Any], stat: str, period: int, region: Any) -> list[MetricQuery | SearchQuery]:
    queries: list[MetricQuery | SearchQuery] = []
    previous: list[str] | None = None
    for entry in entries:
        if not isinstance(entry, list) or not entry:
            raise Unsupported(f"a metrics entry is not a non-empty array: {entry!r}")
        options: dict[str, Any] = entry[-1] if isinstance(entry[-1], dict) else {}
        items = entry[:-1] if options else entry
        if options.get("region") not in (None, region):
            raise Unsupported(f"a metric of region {options['region']} in a widget of region {region}")
        if not items:
            if "expression" not in options:
                raise Unsupported(f"an entry with neither a metric nor an expression: {entry!r}")
            query: MetricQuery | SearchQuery = _search(options, stat, period)
        else:
            previous = _expand(items, previous)
            query = _metric(previous, options, stat, period)
        if options.get("visible", True):
            queries.append(query)
    return queries


def _expand(items: list[Any], previous: list[str] | None) -> list[str]:
    """``items`` with the console's shorthand ``"..."`` and ``"."`` replaced by the previous entry's items."""
    if not all(isinstance(item, str) for item in items):
        raise Unsupported(f"a metric's items must be strings: {items!r}")
    if items[0] == "...":
        rest = items[1:]
        if previous is None or len(rest) > len(previous):
            raise Unsupported(f'"..." in {items!r} has no previous metric of that many items to repeat')
        items = previous[: len(previous) - len(rest)] + rest
    expanded = []
    for position, item in enumerate(items):
        if item == ".":
            if previous is None or position >= len(previous):
                raise Unsupported(f'"." in {items!r} has no previous metric item at position {position}')
            item = previous[position]
        expanded.append(str(item))
    if len(expanded) < 2 or len(expanded) % 2:
        raise Unsupported(f"a metric is [Namespace, MetricName, Name, Value, ...]: {expanded!r}")
    return expanded


def _metric(items: list[str], options: dict[str, Any], stat: str, period: int) -> MetricQuery:
    unknown = sorted(set(options) - METRIC_OPTIONS)
    if unknown:
        raise Unsupported(f"metric options {', '.join(unknown)} are not drawn")
    if options.get("yAxis", "left") != "left":
        raise Unsupported("only the left y axis is drawn")
    namespace, name, *pairs = items
    dimensions = tuple(zip(pairs[::2], pairs[1::2], strict=True))
    label = str(options.get("label") or " ".join([name, *(value for _, value in dimensions)]))
    check_label(label)
    return MetricQuery(
        namespace,
        name,
        dimensions,
        str(options.get("stat", stat)),
        int(options.get("period", period)),
        label,
        options.get("color"),
    )


def _search(options: dict[str, Any], stat: str, period: int) -> SearchQuery:
    unknown = sorted(set(options) - EXPRESSION_OPTIONS)
    if unknown:
        raise Unsupported(f"expression options {', '.join(unknown)} are not drawn")
    expression = str(options["expression"]).strip()
    found = _SEARCH.fullmatch(expression)
    if found is None:
        raise Unsupported(f"expression {expression!r}: only SEARCH('...', 'Stat'[, Period]) is drawn, no metric math")
    query, search_stat, search_period = found.groups()
    schema = _SCHEMA.match(query)
    if schema is None:
        raise Unsupported(f"{expression}: a SEARCH without a metric schema {{Namespace,DimensionName,...}}")
    names = [name.strip().strip('"') for name in schema.group(1).split(",")]
    namespace, dimension_names = names[0], frozenset(names[1:])
    terms = _terms(query[schema.end() :], expression, dimension_names)
    label = str(options.get("label", ""))
    check_label(label)
    return SearchQuery(
        expression,
        namespace,
        dimension_names,
        terms,
        search_stat,
        int(search_period or options.get("period", period)),
        label,
        options.get("color"),
    )


def _terms(text: str, expression: str, dimension_names: frozenset[str]) -> tuple[SearchTerm, ...]:
    terms: list[SearchTerm] = []
    position = 0
    while text[position:].strip():
        found = _TERM.match(text, position)
        if found is None:
            raise Unsupported(
                f'{expression}: the search term {text[position:].strip()!r} is not drawn (only Name="exact" and '
                "Name=token terms, each optionally after NOT, joined by spaces or AND)"
            )
        negated, field, exact, token = found.groups()
        if field != "MetricName" and field not in dimension_names:
            raise Unsupported(f"{expression}: {field} is neither MetricName nor a dimension of the schema")
        terms.append(SearchTerm(field, exact if exact is not None else token, exact is not None, negated is not None))
        position = found.end()
    return tuple(terms)


def search_matches(search: SearchQuery, namespace: str, name: str, dimensions: dict[str, str]) -> bool:
    """Whether a metric ``ListMetrics`` lists is one ``search`` finds."""
    if namespace != search.namespace or set(dimensions) != search.dimension_names:
        return False
    for term in search.terms:
        value = name if term.field == "MetricName" else dimensions[term.field]
        found = value == term.value if term.exact else term.value.lower() in words(value)
        if found == term.negated:
            return False
    return True


def words(value: str) -> set[str]:
    """The words a partial search term matches (lower case): the value's parts between punctuation, and their
    camel-case parts: ``PoisonMessages.invalid_json`` -> poisonmessages, poison, messages, invalid, json."""
    found = {value.lower()}
    for part in re.split(r"[^A-Za-z0-9]+", value):
        if part:
            found.add(part.lower())
            found.update(word.lower() for word in _WORD.findall(part))
    return found


def check_label(label: str) -> None:
    """Refuse a label with a dynamic label other than the ``PROP`` ones this module fills in."""
    for inner in DYNAMIC_LABEL.findall(label):
        if LABEL_PROPERTY.fullmatch(inner) is None:
            raise Unsupported(
                f"dynamic label ${{{inner}}} is not drawn (${{PROP('MetricName')}}, ${{PROP('Namespace')}} and "
                "${PROP('Dim.<name>')} are)"
            )


def series_label(query: MetricQuery) -> str:
    """The query's label with its dynamic labels filled in from the metric."""
    dimensions = dict(query.dimensions)

    def fill(found: re.Match[str]) -> str:
        key = found.group(1)[len("PROP('") : -len("')")]
        if key == "MetricName":
            return query.name
        if key == "Namespace":
            return query.namespace
        return dimensions.get(key[len("Dim.") :], "")

    label = DYNAMIC_LABEL.sub(fill, query.label).strip()
    return label or " ".join([query.name, *(value for _, value in query.dimensions)])
