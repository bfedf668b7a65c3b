"""X-Ray tracing of the functions: Powertools' Tracer when tracing is on, and nothing at all when it is off.

The template's ``Tracing`` parameter turns on X-Ray active tracing of IngestFunction, QueryFunction and
ReceiptsFunction and sets their ``POWERTOOLS_TRACE_DISABLED`` (docs/operating.md, "Tracing"). A
container decides once, on first use (:class:`~vector_relay.settings.TracingSettings`): when tracing is
off, :func:`active_tracer` is None, no Tracer is built and the X-Ray SDK is never imported (a disabled
Powertools ``Tracer()`` still imports ``aws_xray_sdk.core``, ~15 ms of every cold start), and every
helper here returns at once; so do they in an invocation Lambda did not sample.

What a sampled invocation's trace holds:

* the handler's subsegment (``## lambda_handler``, Powertools' ``capture_lambda_handler``, its
  response not captured) with the batch's annotations (:func:`annotate_batch`): ``tenant`` (the one
  tenant of the batch's valid messages, ``multi`` for several) and ``outcome`` (``ok``,
  ``dead_lettered`` or ``retried``), and its counts as metadata;
* under it, one subsegment per version-guard claim group (up to 100 records of one namespace), per
  Pinecone request (each attempt of a query), per dead-letter send, and one for the batch's write
  receipts or query replies (:data:`SPAN_NAMES`).

A subsegment says what was done with names, counts, codes, namespaces and tenants: never a secret,
a vector, metadata values, a filter, a message body, or an exception's text (which may quote input):
a failure is a flag and the exception's type or the failure's kind.

**Concurrency.** The X-Ray SDK keeps the open (sub)segments per thread, and ``end_subsegment`` ends
whatever is open last on that thread. Subsegments opened by concurrent asyncio tasks on the handler's
thread therefore nest inside each other and end each other at the wrong time (aws-xray-sdk-python
issue 164; Powertools' escape hatch ``in_subsegment_async`` ends the thread's last-opened subsegment
too, and Lambda's context is per thread, not per task), and one opened on a pool thread would hang
from the function's segment, not the handler's subsegment (each thread starts from Lambda's). So
work in concurrent tasks (Pinecone requests) and on the version guard's claim threads is timed into a
:class:`SpanLog`, plain timings with no X-Ray call, and :meth:`SpanLog.record` writes them as
subsegments with their own start and end times, from the handler's thread, once that work has ended.
Work on the handler's thread is a :func:`span`, written as it ends.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from aws_lambda_powertools import Tracer

from vector_relay.settings import tracing_settings

if TYPE_CHECKING:
    from types import TracebackType

type Namespace = Literal["local", "remote"]  # X-Ray's: the function's own work, or a call to an HTTP service
type AnnotationValue = str | int | float | bool

METADATA_NAMESPACE = "vector_relay"

# Every subsegment the package writes (docs/operating.md lists them; a test holds the two equal).
SPAN_NAMES = (
    "guard claim",
    "guard release",
    "pinecone upsert",
    "pinecone delete_ids",
    "pinecone delete_by_filter",
    "pinecone delete_all",
    "pinecone query",
    "dead-letter send",
    "receipt send",
    "receipt resend",
    "reply send",
)


@cache
def active_tracer() -> Tracer | None:
    """The container's Tracer when tracing is on (built on first use); None when it is off."""
    if not tracing_settings().enabled:
        return None
    # No patching: the subsegments are the ones named here. Patching httpx or urllib3 would record
    # every Pinecone URL from inside concurrent tasks (see the module's docstring), and patching
    # botocore one subsegment per AWS call, from the guard's threads too.
    return Tracer(disabled=False, auto_patch=False)


def reset_tracing() -> None:
    """Decide again on next use (tests, which switch tracing on and off)."""
    active_tracer.cache_clear()


def capture_lambda_handler[**P, R](handler: Callable[P, R]) -> Callable[P, R]:
    """Powertools' ``capture_lambda_handler`` (response not captured) when tracing is on; a plain call when off."""
    traced: tuple[Tracer, Callable[P, R]] | None = None  # wrapped once per tracer, not per invocation

    @functools.wraps(handler)
    def handle(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal traced
        tracer = active_tracer()
        if tracer is None:
            return handler(*args, **kwargs)
        if traced is None or traced[0] is not tracer:
            traced = (tracer, tracer.capture_lambda_handler(handler, capture_response=False))
        return traced[1](*args, **kwargs)

    return handle


def annotate_batch(*, messages: int, tenants: Collection[str], dead_lettered: int, retried: int) -> None:
    """Annotate the handler's subsegment with one batch's tenant and outcome, and its counts as metadata.

    ``tenants``: the tenant of each valid message (registered tenants only, so the annotation's values
    are bounded by the registry). ``tenant`` is the one tenant, or ``multi``; no ``tenant`` when no
    message was valid. ``outcome`` is ``retried`` when any message goes back to its queue,
    ``dead_lettered`` when none does but some went to the DLQ, ``ok`` otherwise.
    """
    tracer = active_tracer()
    if tracer is None or _sampled_recorder() is None:
        return
    distinct = sorted(set(tenants))
    if distinct:
        tracer.put_annotation("tenant", distinct[0] if len(distinct) == 1 else "multi")
    tracer.put_annotation("outcome", "retried" if retried else "dead_lettered" if dead_lettered else "ok")
    batch = {
        "messages": messages,
        "valid": len(tenants),
        "dead_lettered": dead_lettered,
        "retried": retried,
        "tenants": distinct,
    }
    tracer.put_metadata("batch", batch, namespace=METADATA_NAMESPACE)


class Span:
    """What one span of work says: annotations, metadata and whether it failed. Counts, codes and names only."""

    __slots__ = ("annotations", "end", "failure", "fault", "metadata", "name", "namespace", "start")
    recording = True  # False for the span of a function that does not trace: skip work done only for it

    def __init__(self, name: str, namespace: Namespace) -> None:
        self.name = name
        self.namespace = namespace
        self.start = time.time()
        self.end = self.start
        self.annotations: dict[str, AnnotationValue] = {}
        self.metadata: dict[str, object] = {}
        self.failure: str | None = None
        self.fault = False

    def annotate(self, key: str, value: AnnotationValue) -> None:
        """An indexed value (X-Ray filter expressions): ``key`` of letters, digits and ``_``."""
        self.annotations[key] = value

    def note(self, **metadata: object) -> None:
        self.metadata.update(metadata)

    def failed(self, failure: str, *, fault: bool = True) -> None:
        """It failed: ``failure`` names how (a failure kind, an exception's type), never what was sent.

        ``fault``: the other side's or ours (X-Ray's fault, a 5xx); False for a refusal of what was
        sent (X-Ray's error, a 4xx).
        """
        self.failure = failure
        self.fault = fault


class _NoSpan(Span):
    """The span of a function that does not trace: everything said to it is dropped."""

    __slots__ = ()
    recording = False

    def annotate(self, key: str, value: AnnotationValue) -> None:
        pass

    def note(self, **metadata: object) -> None:
        pass

    def failed(self, failure: str, *, fault: bool = True) -> None:
        pass


_NO_SPAN = _NoSpan("", "local")


class _Timing:
    """Times one span; an exception leaving it marks it failed with the exception's type (not its text)."""

    __slots__ = ("_done", "_name", "_namespace", "_span")

    def __init__(self, done: Callable[[Span], None], name: str, namespace: Namespace) -> None:
        self._done = done
        self._name = name
        self._namespace = namespace
        self._span: Span = _NO_SPAN

    def __enter__(self) -> Span:
        self._span = Span(self._name, self._namespace)
        return self._span

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        span = self._span
        span.end = time.time()
        if exc_type is not None and span.failure is None:
            span.failed(exc_type.__name__)
        self._done(span)


class _NotTiming:
    """The timing of a function that does not trace: one shared object, nothing done."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return _NO_SPAN

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        return None


_NOT_TIMING = _NotTiming()


def span(name: str, namespace: Namespace = "local") -> _Timing | _NotTiming:
    """A subsegment around a block on the handler's thread, written as the block ends.

    Nothing when tracing is off, or this invocation is not sampled (Lambda traces the first
    invocation each second and 5 % of the others).
    """
    if _sampled_recorder() is None:
        return _NOT_TIMING
    return _Timing(_write, name, namespace)


class SpanLog:
    """Spans timed off the handler's thread (concurrent tasks, pool threads), written later from it.

    :meth:`span` may be used from any thread or task; :meth:`record` from the handler's thread, once
    the work it timed has ended. One per batch.
    """

    def __init__(self) -> None:
        self._ended: list[Span] = []  # list.append is atomic: threads and tasks add without a lock

    def span(self, name: str, namespace: Namespace = "local") -> _Timing | _NotTiming:
        return _Timing(self._ended.append, name, namespace)

    def record(self) -> None:
        """Write every ended span as a subsegment of what is open on this thread (the handler's subsegment)."""
        ended, self._ended = self._ended, []
        for one in sorted(ended, key=lambda s: s.start):
            _write(one)


class _NoSpanLog(SpanLog):
    def span(self, name: str, namespace: Namespace = "local") -> _Timing | _NotTiming:
        return _NOT_TIMING

    def record(self) -> None:
        pass


NO_SPANS: SpanLog = _NoSpanLog()  # for code that runs without a batch's span log (the reconciler, tests)


def span_log() -> SpanLog:
    """A batch's span log (from the handler's thread): :data:`NO_SPANS` when tracing is off or the
    invocation is not sampled."""
    return NO_SPANS if _sampled_recorder() is None else SpanLog()


class _Recorder(Protocol):
    """What is used of the X-Ray SDK's recorder (``tracer.provider``): subsegments with given times."""

    def is_sampled(self) -> bool: ...
    def begin_subsegment(self, name: str, namespace: str = "local") -> Any: ...
    def end_subsegment(self, end_time: float | None = None) -> None: ...


def _sampled_recorder() -> _Recorder | None:
    """The recorder, when tracing is on and what is open on this thread is sampled."""
    tracer = active_tracer()
    if tracer is None:
        return None
    recorder = cast(_Recorder, tracer.provider)
    return recorder if recorder.is_sampled() else None


def _write(span: Span) -> None:
    """``span`` as a subsegment of the current (sub)segment, with its own start and end times."""
    recorder = _sampled_recorder()
    if recorder is None:
        return
    subsegment = recorder.begin_subsegment(span.name, span.namespace)
    if subsegment is None:  # no segment open on this thread: nothing to attach it to
        return
    subsegment.start_time = span.start
    for key, value in span.annotations.items():
        subsegment.put_annotation(key, value)
    for key, note in span.metadata.items():
        subsegment.put_metadata(key, note, METADATA_NAMESPACE)
    if span.failure is not None:
        subsegment.put_metadata("failure", span.failure, METADATA_NAMESPACE)
        if span.fault:
            subsegment.add_fault_flag()
        else:
            subsegment.add_error_flag()
    recorder.end_subsegment(span.end)
