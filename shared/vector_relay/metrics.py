"""The relay's metrics: the catalogue of every metric a function writes, and the only way to write one.

Each metric is a :class:`Metric` here (name, unit, dimensions, the functions that write it, what it
means), written with :meth:`Metric.emit` (or :meth:`Metric.emit_now`, :func:`metric_data`); a
family of per-code metrics (``PoisonMessages.<error_code>``) is a :class:`MetricFamily` whose
:meth:`~MetricFamily.of` names one member. No other module calls ``add_metric``, ``single_metric`` or
``put_metric_data`` with names of its own, and ``tests/unit/test_metrics.py`` holds the catalogue
against the code, ``docs/metrics.md`` and the template's alarms.

The metric namespace is fixed in code rather than read from the environment: a missing variable
must not make ``log_metrics`` fail an invocation after its batch was already handled.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

METRIC_NAMESPACE = "VectorRelay"
logger = Logger(child=True)

# The function that writes a metric: its POWERTOOLS_SERVICE_NAME in template.yaml, the `service` dimension's value.
Service = Literal["ingest", "query", "receipts", "reconcile", "rotate_key"]
SERVICE_DIMENSION = ("service",)  # Powertools adds it to every metric from POWERTOOLS_SERVICE_NAME
# Per tenant: one series per registered tenant (the registry bounds them; cost in docs/metrics.md).
TENANT_DIMENSIONS = ("tenant", "service")
# The `tenant` of a dead letter whose tenant is not in the registry (or cannot be read): one series for them all.
UNREGISTERED_TENANT = "-"
# Values of one metric in one EMF line: CloudWatch's limit, at which Powertools writes the line and starts another.
MAX_VALUES_PER_LINE = 100


def function_metrics() -> Metrics:
    """The Powertools Metrics of a function (service dimension from ``POWERTOOLS_SERVICE_NAME``)."""
    return Metrics(namespace=METRIC_NAMESPACE)


@dataclass(frozen=True)
class Metric:
    """One metric of the namespace ``VectorRelay``."""

    name: str
    unit: MetricUnit
    emitted_by: tuple[Service, ...]
    meaning: str
    dimensions: tuple[str, ...] = SERVICE_DIMENSION

    def emit(self, metrics: Metrics, value: float) -> None:
        """Add ``value`` to the invocation's metrics (written when the handler's ``log_metrics`` flushes)."""
        metrics.add_metric(name=self.name, unit=self.unit, value=value)

    def emit_by_tenant(self, values: Mapping[str, Sequence[float]]) -> None:
        """Write each tenant's values at once, with the ``tenant`` dimension (see :func:`emit_per_tenant`)."""
        emit_per_tenant({tenant: {self: tenant_values} for tenant, tenant_values in values.items()})

    def emit_now(self, value: float) -> None:
        """Write ``value`` at once, in an EMF line of its own (for a handler that flushes no ``Metrics``)."""
        with single_metric(name=self.name, unit=self.unit, value=value, namespace=METRIC_NAMESPACE):
            pass  # written as the block ends


def emit_per_tenant(
    values: Mapping[str, Mapping[Metric, float | Sequence[float]]],
    properties: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Write each tenant's metrics at once: one EMF line per tenant with the ``tenant`` dimension.

    For the metrics whose dimensions are :data:`TENANT_DIMENSIONS` only; ``service`` comes from
    ``POWERTOOLS_SERVICE_NAME`` as for every other metric. A metric with more than 100 values spills
    into further lines (Powertools writes a line by itself when a metric reaches 100 values, keeping
    the dimension). ``properties[tenant]`` go into the tenant's line as EMF properties: searchable
    with Logs Insights, never metrics (high-cardinality detail such as error codes costs nothing there).
    A count of zero is left out (a list of values is written whole); a tenant with nothing to write
    writes no line. It never raises for what it is given to write (logged instead): the batch it
    counts is done.
    """
    for tenant_values in values.values():
        for metric in tenant_values:
            if metric.dimensions != TENANT_DIMENSIONS:
                raise ValueError(f"{metric.name} has no tenant dimension")
    try:
        for tenant, tenant_values in values.items():
            sink = EphemeralMetrics(namespace=METRIC_NAMESPACE)
            sink.add_dimension(name="tenant", value=tenant)
            for key, value in (properties or {}).get(tenant, {}).items():
                sink.add_metadata(key=key, value=value)
            for metric, written in tenant_values.items():
                _add_values(
                    sink, metric, ((written,) if written else ()) if isinstance(written, int | float) else written
                )
            if sink.metric_set:  # empty when nothing was written or Powertools wrote the last 100 values itself
                sink.flush_metrics()
    except Exception as error:  # a figure must never fail a batch whose work is done (its writes landed)
        logger.warning("could not write the per-tenant metrics", extra={"error": type(error).__name__})


def _add_values(sink: EphemeralMetrics, metric: Metric, values: Sequence[float]) -> None:
    """Add ``values`` to ``sink`` as ``add_metric`` one at a time would, without its cost per value.

    Powertools formats the metric's whole list of values into a debug message on every
    ``add_metric`` call, so a hundred values one by one cost a hundred growing formats (about 25 us
    a value, measured on a batch's freshness figures). Here ``add_metric`` takes the first value
    (checking the name and unit) and the 100th of a line (when Powertools writes the line and starts
    a new one); the values between are appended to its list directly.
    """
    position = 0
    while position < len(values):
        sink.add_metric(name=metric.name, unit=metric.unit, value=values[position])
        position += 1
        entry = sink.metric_set.get(metric.name)
        if entry is None:  # the line was full and written: the next value starts a new one
            continue
        room = MAX_VALUES_PER_LINE - 1 - len(entry["Value"])  # the last value of a line goes through add_metric
        if room > 0:
            taken = [_number(value) for value in values[position : position + room]]
            entry["Value"].extend(taken)
            position += len(taken)


def _number(value: float) -> float:
    """``value`` as ``add_metric`` takes it: a number, as a float (anything else raises, as ``add_metric`` does)."""
    if not isinstance(value, numbers.Number) or isinstance(value, complex):
        raise TypeError(f"{value!r} is not a valid number")
    return float(value)


@dataclass(frozen=True)
class MetricFamily:
    """Metrics named ``prefix`` + a member (one per code), documented as ``prefix<member>``.

    The members are not listed here (the catalogue imports nothing of the relay): ``member`` names the
    documented list they come from, and the test holds the two together.
    """

    prefix: str
    member: str
    unit: MetricUnit
    emitted_by: tuple[Service, ...]
    meaning: str
    dimensions: tuple[str, ...] = SERVICE_DIMENSION

    @property
    def name(self) -> str:
        """The family's name as the docs write it, e.g. ``PoisonMessages.<error_code>``."""
        return f"{self.prefix}<{self.member}>"

    def of(self, member: str) -> Metric:
        """The family's metric for ``member``."""
        return Metric(f"{self.prefix}{member}", self.unit, self.emitted_by, self.meaning, self.dimensions)


def metric_data(values: Mapping[Metric, float], *, service: Service) -> list[MetricDatumTypeDef]:
    """``values`` as CloudWatch ``PutMetricData`` entries, with the dimensions the functions' EMF lines carry."""
    return [
        {
            "MetricName": metric.name,
            "Dimensions": [{"Name": "service", "Value": service}],
            "Value": float(value),
            "Unit": metric.unit.value,
        }
        for metric, value in values.items()
    ]


_COUNT = MetricUnit.Count
_MS = MetricUnit.Milliseconds

# ----------------------------------------------------------- the ingest worker (docs/ingest.md)
RECORDS_UPSERTED = Metric("RecordsUpserted", _COUNT, ("ingest",), "records upserted to Pinecone in the batch")
RECORDS_DELETED = Metric("RecordsDeleted", _COUNT, ("ingest",), "records deleted by id in the batch")
PINECONE_REQUESTS = Metric("PineconeRequests", _COUNT, ("ingest",), "Pinecone write requests the batch sent")
PINECONE_LATENCY = Metric("PineconeLatency", _MS, ("ingest",), "time of one Pinecone write request (one value each)")
TRANSIENT_FAILURES = Metric(
    "TransientFailures",
    _COUNT,
    ("ingest", "query"),
    "ingest: write requests that failed transiently; query: queries retried; SQS redelivers their messages",
)
DEADLINE_CUTOFFS = Metric(
    "DeadlineCutoffs", _COUNT, ("ingest",), "write requests not started for lack of time; SQS redelivers them"
)
PINECONE_INDEX_NOT_FOUND = Metric(
    "PineconeIndexNotFound",
    _COUNT,
    ("ingest",),
    "write requests answered 404 for the index itself (a wrong host or a deleted index); alarmed",
)
PINECONE_RETRIES = Metric(
    "PineconeRetries", _COUNT, ("ingest",), "attempts beyond the first of write requests that succeeded"
)
UNCERTAIN_LANDINGS = Metric(
    "UncertainLandings",
    _COUNT,
    ("ingest",),
    "write requests that succeeded after an attempt that may also land; their guard leases are kept to their end",
)
AUTH_REFRESHES = Metric(
    "AuthRefreshes", _COUNT, ("ingest",), "write requests retried after a 401/403 with the key read again"
)
AUTH_FAILURE = Metric(
    "AuthFailure",
    _COUNT,
    ("ingest", "query"),
    "Pinecone refused the key read again after a 401/403 (docs/rotation.md); the message is retried",
)
STALE_WRITES_DROPPED = Metric(
    "StaleWritesDropped",
    _COUNT,
    ("ingest",),
    "records the version guard dropped as older than the newest write (docs/ordering.md)",
)
BUSY_WRITES = Metric(
    "BusyWrites", _COUNT, ("ingest",), "records another worker's claim holds; they come back when it ends"
)
BUSY_REQUEUED = Metric(
    "BusyRequeued",
    _COUNT,
    ("ingest",),
    "waiting messages sent again as a fresh copy on their last delivery (docs/ordering.md)",
)
RECEIPTS_SENT = Metric(
    "ReceiptsSent", _COUNT, ("ingest",), "write receipts sent to tenants' receipt queues (docs/contract.md)"
)
WRITE_APPLIED_AFTER = Metric(
    "WriteAppliedAfter",
    _MS,
    ("ingest",),
    "per tenant: from a write message's first send (SentTimestamp, carried onto copies) to the batch that "
    "applied it; one value per applied message",
    TENANT_DIMENSIONS,
)
TENANT_RECORDS_UPSERTED = Metric(
    "RecordsUpserted", _COUNT, ("ingest",), "per tenant: records upserted to Pinecone", TENANT_DIMENSIONS
)
TENANT_RECORDS_DELETED = Metric(
    "RecordsDeleted", _COUNT, ("ingest",), "per tenant: records deleted by id", TENANT_DIMENSIONS
)
TENANT_STALE_WRITES_DROPPED = Metric(
    "StaleWritesDropped",
    _COUNT,
    ("ingest",),
    "per tenant: records the version guard dropped as older than the newest write",
    TENANT_DIMENSIONS,
)
TENANT_BUSY_WRITES = Metric(
    "BusyWrites", _COUNT, ("ingest",), "per tenant: records another worker's claim held", TENANT_DIMENSIONS
)
RECEIPTS_RETRIED = Metric(
    "ReceiptsRetried",
    _COUNT,
    ("ingest",),
    "write receipts their tenant's queue did not take, sent to the retry queue for ReceiptsFunction",
)
RECEIPTS_LOST = Metric(
    "ReceiptsLost",
    _COUNT,
    ("ingest",),
    "write receipts neither their queue nor the retry queue took; their writes stand; alarmed (docs/operating.md)",
)
# ----------------------------------------------------------- the SQS edge of both workers
POISON_MESSAGES = Metric("PoisonMessages", _COUNT, ("ingest", "query"), "messages dead-lettered (docs/runbook-dlq.md)")
TENANT_POISON_MESSAGES = Metric(
    "PoisonMessages",
    _COUNT,
    ("ingest", "query"),
    "per tenant (`-`: not in the registry, or unreadable): messages dead-lettered; one line per code, the code "
    "in its `error_code` property (Logs Insights query relay-dead-letters-by-tenant)",
    TENANT_DIMENSIONS,
)
POISON_MESSAGES_BY_CODE = MetricFamily(
    "PoisonMessages.",
    "error_code",
    _COUNT,
    ("ingest", "query"),
    "messages dead-lettered with this error code (docs/contract.md lists the codes)",
)
# ----------------------------------------------------------- the query worker
QUERY_REPLIES = Metric("QueryReplies", _COUNT, ("query",), "replies sent, matches or errors")
ERROR_REPLIES_BY_CODE = MetricFamily(
    "ErrorReplies.",
    "error_code",
    _COUNT,
    ("query",),
    "error replies sent with this error code (docs/contract.md lists the codes)",
)
QUERY_LATENCY = Metric("QueryLatency", _MS, ("query",), "time of one answered Pinecone query (one value each)")
TENANT_QUERY_REPLIES = Metric(
    "QueryReplies", _COUNT, ("query",), "per tenant: replies sent, matches or errors", TENANT_DIMENSIONS
)
TENANT_QUERY_LATENCY = Metric(
    "QueryLatency",
    _MS,
    ("query",),
    "per tenant: time of one answered Pinecone query (one value each)",
    TENANT_DIMENSIONS,
)
TENANT_QUERY_READ_UNITS = Metric(
    "QueryReadUnits",
    _COUNT,
    ("query",),
    "per tenant: Pinecone read units of the tenant's queries, every attempt, as Pinecone reports them (`usage`; "
    "none over gRPC)",
    TENANT_DIMENSIONS,
)
OVERSIZED_REPLIES = Metric(
    "OversizedReplies", _COUNT, ("query",), "replies too large for SQS, stored in S3 and sent as a pointer"
)
FRESH_REPLIES = Metric(
    "FreshReplies",
    _COUNT,
    ("query",),
    "replies to read-your-writes queries (min_lsn) whose index had reached min_lsn: fresh true (docs/contract.md)",
)
NOT_FRESH_REPLIES = Metric(
    "NotFreshReplies",
    _COUNT,
    ("query",),
    "replies to read-your-writes queries answered fresh false: the index still behind min_lsn when time ran out, "
    "or no LSN known (gRPC)",
)
WRITES_INDEXED_AFTER = Metric(
    "WritesIndexedAfter",
    _MS,
    ("query",),
    "per tenant: from the first send of the newest write a read-your-writes query waited for (its writes_sent_at) "
    "to the answer that found it indexed; one value per fresh reply that says when its writes were sent",
    TENANT_DIMENSIONS,
)
# ----------------------------------------------------------- the receipt retry function (docs/operating.md)
RECEIPTS_RESENT = Metric(
    "ReceiptsResent", _COUNT, ("receipts",), "write receipts from the retry queue their tenant's receipt queue took"
)
RECEIPTS_DROPPED = Metric(
    "ReceiptsDropped",
    _COUNT,
    ("receipts",),
    "write receipts from the retry queue dropped: their tenant has no receipt queue in the registry now",
)
RECEIPTS_INVALID = Metric(
    "ReceiptsInvalid",
    _COUNT,
    ("receipts",),
    "messages on the retry queue that are not write receipts; dropped, as they can never be sent",
)
# ----------------------------------------------------------- the reconciler (docs/ordering.md)
# Also published by `vector-relay reconcile --metric` with the same dimension.
RECONCILE_CHECKED = Metric("ReconcileChecked", _COUNT, ("reconcile",), "records the pass compared with the index")
RECONCILE_IN_FLIGHT = Metric(
    "ReconcileInFlight", _COUNT, ("reconcile",), "records skipped because their write may still come from SQS"
)
RECONCILE_REPAIRED = Metric("ReconcileRepaired", _COUNT, ("reconcile",), "resurrected records deleted again")
RECONCILE_MISMATCHES = Metric(
    "ReconcileMismatches", _COUNT, ("reconcile",), "records where the index is not the newest write, all kinds; alarmed"
)
RECONCILE_MISMATCHES_MISSING = Metric(
    "ReconcileMismatchesMissing", _COUNT, ("reconcile",), "an upsert is recorded and the index has no such record"
)
RECONCILE_MISMATCHES_BEHIND = Metric(
    "ReconcileMismatchesBehind", _COUNT, ("reconcile",), "the index holds an older version than the one recorded"
)
RECONCILE_MISMATCHES_RESURRECTED = Metric(
    "ReconcileMismatchesResurrected", _COUNT, ("reconcile",), "a delete is recorded and the index holds the record"
)
RECONCILE_MISMATCHES_AHEAD = Metric(
    "ReconcileMismatchesAhead", _COUNT, ("reconcile",), "the index holds a newer version than the one recorded"
)
RECONCILE_MISMATCHES_UNVERSIONED = Metric(
    "ReconcileMismatchesUnversioned", _COUNT, ("reconcile",), "the index's record has no version key"
)
RECONCILE_DEAD_LETTERED = Metric(
    "ReconcileDeadLettered",
    _COUNT,
    ("reconcile",),
    "missing, behind or resurrected records whose write is in the DLQ (not counted as mismatches)",
)
# One per mismatch kind (vector_relay.operations.reconcile.MISMATCH_KINDS; the test holds the keys to it).
RECONCILE_MISMATCHES_BY_KIND: Mapping[str, Metric] = {
    "missing": RECONCILE_MISMATCHES_MISSING,
    "behind": RECONCILE_MISMATCHES_BEHIND,
    "resurrected": RECONCILE_MISMATCHES_RESURRECTED,
    "ahead": RECONCILE_MISMATCHES_AHEAD,
    "unversioned": RECONCILE_MISMATCHES_UNVERSIONED,
}
# ----------------------------------------------------------- key rotation (docs/rotation.md)
KEYS_KEPT_RETIREMENT_UNKNOWN = Metric(
    "KeysKeptRetirementUnknown",
    _COUNT,
    ("rotate_key",),
    "retired keys not revoked because when they left AWSCURRENT is unknown; revoke them by hand",
)

# Every metric, in the order of docs/metrics.md's table.
CATALOGUE: tuple[Metric | MetricFamily, ...] = (
    RECORDS_UPSERTED,
    RECORDS_DELETED,
    PINECONE_REQUESTS,
    PINECONE_LATENCY,
    TRANSIENT_FAILURES,
    DEADLINE_CUTOFFS,
    PINECONE_INDEX_NOT_FOUND,
    PINECONE_RETRIES,
    UNCERTAIN_LANDINGS,
    AUTH_REFRESHES,
    AUTH_FAILURE,
    STALE_WRITES_DROPPED,
    BUSY_WRITES,
    BUSY_REQUEUED,
    TENANT_RECORDS_UPSERTED,
    TENANT_RECORDS_DELETED,
    TENANT_STALE_WRITES_DROPPED,
    TENANT_BUSY_WRITES,
    WRITE_APPLIED_AFTER,
    RECEIPTS_SENT,
    RECEIPTS_RETRIED,
    RECEIPTS_LOST,
    POISON_MESSAGES,
    TENANT_POISON_MESSAGES,
    POISON_MESSAGES_BY_CODE,
    QUERY_REPLIES,
    ERROR_REPLIES_BY_CODE,
    QUERY_LATENCY,
    TENANT_QUERY_REPLIES,
    TENANT_QUERY_LATENCY,
    TENANT_QUERY_READ_UNITS,
    OVERSIZED_REPLIES,
    FRESH_REPLIES,
    NOT_FRESH_REPLIES,
    WRITES_INDEXED_AFTER,
    RECEIPTS_RESENT,
    RECEIPTS_DROPPED,
    RECEIPTS_INVALID,
    RECONCILE_CHECKED,
    RECONCILE_IN_FLIGHT,
    RECONCILE_REPAIRED,
    RECONCILE_MISMATCHES,
    RECONCILE_MISMATCHES_MISSING,
    RECONCILE_MISMATCHES_BEHIND,
    RECONCILE_MISMATCHES_RESURRECTED,
    RECONCILE_MISMATCHES_AHEAD,
    RECONCILE_MISMATCHES_UNVERSIONED,
    RECONCILE_DEAD_LETTERED,
    KEYS_KEPT_RETIREMENT_UNKNOWN,
)
