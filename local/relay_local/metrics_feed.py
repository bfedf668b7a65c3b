"""The functions' metrics into moto's CloudWatch, as CloudWatch Logs puts them into CloudWatch in AWS.

In AWS a function writes its metrics as log lines in CloudWatch's embedded metric format (EMF: what
Powertools' ``Metrics``, ``EphemeralMetrics`` and ``single_metric`` print), and CloudWatch Logs
extracts them into metrics. moto's CloudWatch Logs does not, so on one machine the metrics went
nowhere. Here :func:`emf_metric_points` reads one log line as the EMF specification says CloudWatch
does (the specification: "Specification: Embedded metric format", Amazon CloudWatch User Guide):

* a line is an EMF document when it is a JSON object with an ``_aws`` member; any other line is a
  log line and nothing more;
* ``_aws`` holds ``Timestamp`` (an integer, milliseconds since the epoch) and ``CloudWatchMetrics``,
  a list of directives, each a ``Namespace``, ``Dimensions`` (one or more dimension sets, each a
  list of at most 30 member names) and ``Metrics`` (at most 100 definitions: ``Name``, an optional
  ``Unit``, default ``None``, and an optional ``StorageResolution``, 1 or 60, default 60);
* every (directive, dimension set, metric) is one metric: its values are the top-level member
  named like the metric (a number, or a list of at most 100 numbers, each a sample), its
  dimensions the top-level string members the set names, in the set's order;
* a document that breaks a rule (a missing or non-numeric target, a dimension that is not a
  string, an unknown unit, a timestamp PutMetricData would refuse) gives no metric at all, and is
  counted (:class:`InvalidEmf`; CloudWatch counts such events as ``EMFValidationErrors`` and
  ``EMFParsingErrors``).

:class:`MetricsFeed` takes the lines of the functions' output (from the runtime's pump, which must
never wait on it) and metric points the local stack makes itself (``AWS/Lambda``, ``AWS/SQS``:
:mod:`relay_local.aws_metrics`), and sends them to ``PutMetricData`` from a thread of its own, about a
second after the first of them waits, one namespace a call, within the API's limits (1,000 data
points and 1 MB a call).
It never raises into its callers: a line it cannot take (its queue full) is dropped and counted,
a call that fails is counted.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from relay_local.provisioning import aws_client

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

# The embedded metric format's limits (the specification's text and its JSON schema).
MAX_DIRECTIVE_METRICS = 100
MAX_DIMENSION_SET_KEYS = 30
MAX_DIMENSION_VALUE_CHARS = 1024
MAX_NAME_CHARS = 1024
MAX_VALUES = 100
STORAGE_RESOLUTIONS = (1, 60)
# CloudWatch's units (MetricDatum.Unit); an EMF metric without one is "None".
UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
# PutMetricData: time stamps up to two weeks old and two hours ahead; values within ±2^360, finite.
OLDEST_MS = 14 * 24 * 3600 * 1000
NEWEST_MS = 2 * 3600 * 1000
VALUE_LIMIT = 2.0**360
# PutMetricData's limits per call. The size is estimated as the data points' JSON, kept under half
# the limit: botocore's encodings (CBOR, JSON, or the query protocol's longer one) all fit then.
MAX_CALL_POINTS = 1000
MAX_CALL_BYTES = 1024 * 1024
CALL_BYTES_BUDGET = MAX_CALL_BYTES // 2

EMF_MARKER = '"_aws"'  # a line without it is no EMF document (the cheap test the pump's lines get)


class InvalidEmf(ValueError):
    """A line with an ``_aws`` member that the specification says gives no metric; the message says why."""


@dataclass(frozen=True)
class MetricPoint:
    """One ``PutMetricData`` entry: a number, or the samples of an EMF list, of one metric."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]  # (name, value), in the dimension set's order
    timestamp: datetime
    value: float | tuple[float, ...]  # a list in the line: its samples, sent as Values and Counts
    unit: str = "None"
    storage_resolution: int = 60

    def datum(self) -> MetricDatumTypeDef:
        """The entry as boto3's ``put_metric_data`` takes it."""
        datum: dict[str, Any] = {
            "MetricName": self.name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in self.dimensions],
            "Timestamp": self.timestamp,
            "Unit": self.unit,
            "StorageResolution": self.storage_resolution,
        }
        if isinstance(self.value, tuple):
            counts = Counter(self.value)  # insertion-ordered: the values in the order they first came
            datum["Values"] = list(counts)
            datum["Counts"] = [float(count) for count in counts.values()]
        else:
            datum["Value"] = self.value
        return cast("MetricDatumTypeDef", datum)


# ---------------------------------------------------------------------------- the format
def emf_metric_points(line: str, *, now_ms: int) -> list[MetricPoint] | None:
    """The metrics of one log line; None if it is no EMF document; :class:`InvalidEmf` if it is a bad one."""
    if EMF_MARKER not in line:
        return None
    try:
        document = json.loads(line.strip(), parse_constant=_refuse_constant)
    except ValueError:
        raise InvalidEmf("not one JSON object (EMFParsingErrors)") from None
    if not isinstance(document, dict) or "_aws" not in document:
        return None  # a structured log line that mentions "_aws" somewhere inside
    metadata = document["_aws"]
    if not isinstance(metadata, dict):
        raise InvalidEmf("_aws is not an object")
    timestamp_ms = metadata.get("Timestamp")
    if not _is_integer(timestamp_ms):
        raise InvalidEmf("_aws.Timestamp is not an integer (milliseconds since the epoch)")
    if not now_ms - OLDEST_MS <= timestamp_ms <= now_ms + NEWEST_MS:
        raise InvalidEmf("_aws.Timestamp is more than two weeks old or more than two hours ahead")
    directives = metadata.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        raise InvalidEmf("_aws.CloudWatchMetrics is not a list")
    timestamp = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    points: list[MetricPoint] = []
    for number, directive in enumerate(directives):
        points += _directive_points(document, directive, f"_aws.CloudWatchMetrics[{number}]", timestamp)
    return points


def _directive_points(
    document: Mapping[str, Any], directive: Any, where: str, timestamp: datetime
) -> list[MetricPoint]:
    if not isinstance(directive, dict):
        raise InvalidEmf(f"{where} is not an object")
    namespace = directive.get("Namespace")
    if not _is_name(namespace):
        raise InvalidEmf(f"{where}.Namespace is not a string of 1 to {MAX_NAME_CHARS} characters")
    dimension_sets = directive.get("Dimensions")
    if not isinstance(dimension_sets, list) or not dimension_sets:
        raise InvalidEmf(f"{where}.Dimensions is not a list of dimension sets")
    dimensions = [_dimensions(document, keys, f"{where}.Dimensions[{i}]") for i, keys in enumerate(dimension_sets)]
    definitions = directive.get("Metrics")
    if not isinstance(definitions, list) or len(definitions) > MAX_DIRECTIVE_METRICS:
        raise InvalidEmf(f"{where}.Metrics is not a list of at most {MAX_DIRECTIVE_METRICS} metrics")
    points = []
    for i, definition in enumerate(definitions):
        name, unit, resolution = _definition(definition, f"{where}.Metrics[{i}]")
        value = _metric_value(document, name)
        if value == ():
            continue  # an empty list: no sample
        points += [
            MetricPoint(namespace, name, dimension_set, timestamp, value, unit, resolution)
            for dimension_set in dimensions
        ]
    return points


def _dimensions(document: Mapping[str, Any], keys: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(keys, list) or len(keys) > MAX_DIMENSION_SET_KEYS:
        raise InvalidEmf(f"{where} is not a list of at most {MAX_DIMENSION_SET_KEYS} dimension names")
    dimension_set = []
    for key in keys:
        if not isinstance(key, str) or not key:
            raise InvalidEmf(f"{where} holds a dimension name that is not a string")
        value = document.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_DIMENSION_VALUE_CHARS:
            raise InvalidEmf(
                f"dimension {key!r}: the line has no string member of 1 to {MAX_DIMENSION_VALUE_CHARS} characters "
                "by that name"
            )
        dimension_set.append((key, value))
    return tuple(dimension_set)


def _definition(definition: Any, where: str) -> tuple[str, str, int]:
    if not isinstance(definition, dict):
        raise InvalidEmf(f"{where} is not an object")
    name = definition.get("Name")
    if not _is_name(name):
        raise InvalidEmf(f"{where}.Name is not a string of 1 to {MAX_NAME_CHARS} characters")
    unit = definition.get("Unit", "None")
    if unit not in UNITS:
        raise InvalidEmf(f"{where}.Unit is not a CloudWatch unit")
    resolution = definition.get("StorageResolution", 60)
    if not _is_integer(resolution) or resolution not in STORAGE_RESOLUTIONS:
        raise InvalidEmf(f"{where}.StorageResolution is not 1 or 60")
    return str(name), str(unit), int(resolution)


def _metric_value(document: Mapping[str, Any], name: str) -> float | tuple[float, ...]:
    value = document.get(name)
    if _is_number(value):
        return float(value)
    if isinstance(value, list) and len(value) <= MAX_VALUES and all(_is_number(v) for v in value):
        return tuple(float(v) for v in value)
    raise InvalidEmf(
        f"metric {name!r}: the line has no member by that name holding a number or a list of at most {MAX_VALUES}"
    )


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


def _is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number PutMetricData takes (JSON's true and false are no numbers; Python's bool is an int)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and abs(value) <= VALUE_LIMIT


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON number")  # Python's json takes NaN and Infinity; JSON does not


# ---------------------------------------------------------------------------- the calls
def put_metric_data_calls(points: Sequence[MetricPoint]) -> Iterator[tuple[str, list[MetricDatumTypeDef]]]:
    """``(namespace, entries)`` per ``PutMetricData`` call: one namespace each, within the per-call limits."""
    by_namespace: dict[str, list[MetricPoint]] = {}
    for point in points:
        by_namespace.setdefault(point.namespace, []).append(point)
    for namespace, members in by_namespace.items():
        call: list[MetricDatumTypeDef] = []
        size = 0
        for point in members:
            datum = point.datum()
            datum_size = len(json.dumps(datum, default=str))
            if call and (len(call) >= MAX_CALL_POINTS or size + datum_size > CALL_BYTES_BUDGET):
                yield namespace, call
                call, size = [], 0
            call.append(datum)
            size += datum_size
        if call:
            yield namespace, call


@dataclass
class FeedCounters:
    """What the feed did; read by the stack when it stops, and by tests."""

    emf_lines: int = 0  # lines that gave metrics
    invalid_lines: int = 0  # lines with an _aws member that gave none (InvalidEmf)
    dropped: int = 0  # lines and points not taken: the queue was full, or the feed had stopped
    points_sent: int = 0
    calls: int = 0
    failed_calls: int = 0
    last_invalid: str = ""  # why the last invalid line was refused (names members, never values)
    last_failure: str = ""


@dataclass
class _Points:
    points: list[MetricPoint] = field(default_factory=list)


_STOP = object()


@dataclass
class _Flush:
    """Send what is pending now and say so (:meth:`MetricsFeed.flush`)."""

    done: threading.Event = field(default_factory=threading.Event)


class MetricsFeed:
    """Takes log lines and metric points from any thread at once; sends them to moto's CloudWatch from its own."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        *,
        flush_seconds: float = 1.0,
        max_queued: int = 10_000,
        client: Any = None,  # a CloudWatch client (tests pass a fake); by default one for endpoint_url
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = FeedCounters()
        self._client = client if client is not None else aws_client("cloudwatch", endpoint_url, region)
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()  # for the counters the callers' threads change
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-feed", daemon=True)

    def start(self) -> MetricsFeed:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Its thread is running (from :meth:`start` until :meth:`stop` has ended it)."""
        return self._thread.is_alive()

    def log_line(self, line: str) -> None:
        """One line of a function's output (called by the runtime's pump: returns at once, never raises)."""
        if EMF_MARKER in line:
            self._offer(line)

    def publish(self, points: Sequence[MetricPoint]) -> None:
        """Metric points the local stack makes itself (AWS/Lambda, AWS/SQS); returns at once, never raises."""
        if points:
            self._offer(_Points(list(points)))

    def flush(self, timeout: float = 30.0) -> bool:
        """Send what was taken so far now; True once it is in moto (False: the feed is stopped, full or slow)."""
        marker = _Flush()
        if self._closed.is_set() or not self._thread.is_alive():
            return False
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Send what was taken so far, then end the thread (waits up to ``timeout`` for moto)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)  # after everything taken before: all of it is sent
        self._thread.join(timeout)

    def __enter__(self) -> MetricsFeed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _offer(self, item: object) -> None:
        try:
            if self._closed.is_set():
                raise queue.Full
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.counters.dropped += len(item.points) if isinstance(item, _Points) else 1

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        pending: list[MetricPoint] = []
        due: float | None = None  # when what is pending is sent (flush_seconds after the first of it came)
        while True:
            wait = None if due is None else max(0.0, due - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if isinstance(item, _Flush):
                self._send(pending)
                pending, due = [], None
                item.done.set()
                continue
            if item is not None:
                pending += self._points(item)
                if pending and due is None:
                    due = time.monotonic() + self._flush_seconds
            if pending and (len(pending) >= MAX_CALL_POINTS or (due is not None and time.monotonic() >= due)):
                self._send(pending)
                pending, due = [], None
        self._send(pending)

    def _points(self, item: object) -> list[MetricPoint]:
        if isinstance(item, _Points):
            return item.points
        try:
            points = emf_metric_points(str(item), now_ms=int(self._clock() * 1000))
        except InvalidEmf as error:
            with self._lock:
                self.counters.invalid_lines += 1
                self.counters.last_invalid = str(error)
            return []
        except Exception as error:  # a bug here must not end the thread: the line is counted as invalid
            with self._lock:
                self.counters.invalid_lines += 1
                self.counters.last_invalid = f"{type(error).__name__} reading the line"
            return []
        if points is None:
            return []
        with self._lock:
            self.counters.emf_lines += 1
        return points

    def _send(self, points: list[MetricPoint]) -> None:
        for namespace, data in put_metric_data_calls(points):
            try:
                self._client.put_metric_data(Namespace=namespace, MetricData=data)
            except Exception as error:  # moto gone or refusing: counted; the feed goes on
                with self._lock:
                    self.counters.failed_calls += 1
                    self.counters.last_failure = f"{type(error).__name__}: {error}"[:300]
                continue
            with self._lock:
                self.counters.calls += 1
                self.counters.points_sent += len(data)
