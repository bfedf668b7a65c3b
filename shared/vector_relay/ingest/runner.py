"""Run a :class:`~vector_relay.ingest.planning.WritePlan` against Pinecone: concurrent, bounded, ordered, in time.

* Namespaces run concurrently; inside a namespace the stages run in order, and a stage starts
  only when every request of the one before it succeeded (a failed stage fails the later ones, so
  nothing lands out of its place).
* At most ``max_concurrency`` requests are in flight at once; with a rate limit, requests to one
  namespace start no faster than it allows.
* No request starts when less than :data:`MIN_REQUEST_SECONDS` remain before the deadline, and
  none runs past it: the messages it carries are reported as failures for SQS to redeliver.
* A request Pinecone rejects (400/413/422) is split by message until the messages at fault are
  found alone; those are poison (``pinecone_rejected``), the others are retried in the split.
* On 401/403 the key is re-read once and the request retried once with the new key.
* A 404 that is not about a namespace (a wrong host, a deleted index) fails the request's messages
  like any transient failure, as :class:`IndexNotFoundError`, and is counted (``index_not_found``).
* With an ``admit`` hook (the version guard), each request is first narrowed to the records it
  may write, and waits for that answer; later requests are still being admitted while earlier ones run.
* Structured: every request runs in a task group that :meth:`PlanRunner.run` waits out, so nothing
  of an invocation is still in flight when it returns (the loop is kept across warm invocations,
  and a task left on it would resume inside the next one). Any error in a request, Pinecone's or
  not (a key read that fails during a refresh), fails that request's messages and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from aws_lambda_powertools import Logger

from vector_relay import tracing
from vector_relay.deadline import MIN_REQUEST_SECONDS, Deadline
from vector_relay.errors import (
    AuthError,
    DeadlineError,
    FailureKind,
    HeldBehindError,
    IndexNotFoundError,
    PoisonMessageError,
    Problem,
    TransientError,
)
from vector_relay.ingest.planning import PlannedRequest, WritePlan
from vector_relay.keys.api_key_cache import GatewaySource, call_with_key_refresh
from vector_relay.pinecone.data_plane import CallResult, PineconeGateway
from vector_relay.pinecone.errors import PineconeRequestError

logger = Logger(child=True)


class _Ended(enum.Enum):
    """How a request of a stage ended: everything sent landed; some of it must wait (another worker
    holds a record); or it failed."""

    LANDED = "landed"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Admission:
    """What of a planned request may be sent now (None: nothing), and whether that is all of it."""

    request: PlannedRequest | None
    complete: bool = True


@dataclass(slots=True)
class EarlyStage:
    """One namespace's requests sent while the batch was still being read, and what they mean for the plan.

    ``rewritten``: records sent early that a later message of the batch writes again (a higher or
    equal version): the plan's request carrying that write must follow the early ones, and a record
    counts as landed only when that later write has.
    """

    tasks: list[EarlyTask] = field(default_factory=list)
    rewritten: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class WriteOutcome:
    """What happened to each message: failed (retry) or rejected by Pinecone (poison). Others succeeded."""

    failures: dict[str, BaseException] = field(default_factory=dict)
    poison: dict[str, PoisonMessageError] = field(default_factory=dict)
    records_upserted: int = 0
    records_deleted: int = 0
    # The same two counts by namespace (each tenant has its own: the per-tenant metrics come from these).
    upserted_by_namespace: Counter[str] = field(default_factory=Counter)
    deleted_by_namespace: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    early_requests: int = 0  # started while the batch was still being read (early_writes)
    latencies_ms: list[float] = field(default_factory=list)
    deadline_cutoffs: int = 0
    index_not_found: int = 0  # requests answered 404 for the index itself (not for a namespace)
    auth_refreshes: int = 0
    retries: int = 0  # attempts beyond the first of requests that succeeded
    uncertain_landings: int = 0  # succeeded after an attempt that may also land: leases kept to their end
    landed: set[tuple[str, str]] = field(default_factory=set)  # (namespace, id) written by a successful request
    # Every (namespace, id) a successful request wrote, uncertain or not, with the LSN Pinecone gave that
    # request (None: unknown); and each filter operation's, by message id. Write receipts are built from them.
    written: dict[tuple[str, str], int | None] = field(default_factory=dict)
    filter_lsns: dict[str, int | None] = field(default_factory=dict)

    def fail(self, request: PlannedRequest, error: BaseException) -> None:
        for message_id in request.message_ids:
            if message_id not in self.poison:
                self.failures.setdefault(message_id, error)


class PlanRunner:
    def __init__(
        self,
        gateways: GatewaySource,
        *,
        deadline: Deadline,
        max_concurrency: int,
        namespace_rate_limit: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        admit: Callable[[PlannedRequest], Awaitable[Admission]] | None = None,
        spans: tracing.SpanLog = tracing.NO_SPANS,
    ) -> None:
        self._gateways = gateways
        self._admit = admit
        self._spans = spans  # one span per request sent (tasks run concurrently: timed, written later)
        self._clock = clock
        self._sleep = sleep
        self._deadline = deadline
        self._slots = asyncio.Semaphore(max_concurrency)
        self._min_interval = 1.0 / namespace_rate_limit if namespace_rate_limit > 0 else 0.0
        self._next_start: dict[str, float] = {}
        self.outcome = WriteOutcome()

    async def run(self, plan: WritePlan, early: Mapping[str, EarlyStage] | None = None) -> WriteOutcome:
        """Run every namespace of ``plan``; returns when all its requests have ended, none left running.

        ``early``: per namespace, requests of the batch's first segment already sent while the batch
        was being read (:mod:`vector_relay.ingest.early_writes`); they count as part of its first stage.
        """
        early = early or {}
        namespaces = list(plan.stages) + [namespace for namespace in early if namespace not in plan.stages]
        await _all(self.run_namespace(plan.stages.get(namespace, []), early.get(namespace)) for namespace in namespaces)
        return self.outcome

    def start_early(
        self, request: PlannedRequest, admit: Callable[[PlannedRequest], Awaitable[Admission]] | None
    ) -> EarlyTask:
        """Send ``request`` now (admitted by ``admit``), before the plan it belongs to is known."""
        self.outcome.early_requests += 1
        return asyncio.get_running_loop().create_task(self._admit_and_run(request, admit))

    async def run_namespace(self, stages: list[list[PlannedRequest]], early: EarlyStage | None = None) -> bool:
        """Run one namespace's stages in order (what :meth:`run` does for every namespace at once).

        The stages after one that did not land are not sent: their messages fail as held, and only
        wait (:class:`HeldBehindError`) when nothing of that stage failed, it only waited. Requests sent
        early join the first stage when it holds the first segment's writes and nothing sent early is
        written again later in the batch; otherwise they are a stage of their own before the first.
        """
        joined: list[EarlyTask] = []
        if early is not None and early.tasks:
            joined = list(early.tasks)
            if early.rewritten or not stages or stages[0][0].kind not in _WRITE_KINDS:
                stages = [[], *stages]  # a stage of their own
        for index, stage in enumerate(stages):
            ends = await _gather(
                [_awaited(task) for task in (joined if index == 0 else [])]
                + [self._admit_and_run(request) for request in stage]
            )
            doubtful = False
            if index == 0 and early is not None and early.rewritten:
                # A record written again later may be sent again only if its early write landed for certain (no
                # copy of it can still land after the later write); it counts as landed only with that write.
                doubtful = not early.rewritten <= self.outcome.landed
                self.outcome.landed -= early.rewritten
            if all(end is _Ended.LANDED for end in ends) and not doubtful:
                continue
            held: TransientError
            if doubtful:
                held = TransientError("an earlier write of this namespace may still land; kept in order for redelivery")
            elif _Ended.FAILED in ends:
                held = TransientError("an earlier operation on this namespace failed; kept in order for redelivery")
            else:
                held = HeldBehindError("kept in order behind an earlier write of this namespace that waits")
            for later in stages[index + 1 :]:
                for request in later:
                    self.outcome.fail(request, held)
            return False
        return True

    async def _admit_and_run(
        self, request: PlannedRequest, admit: Callable[[PlannedRequest], Awaitable[Admission]] | None = None
    ) -> _Ended:
        """Ask ``admit`` (the version guard; by default the runner's) what of ``request`` may be sent, then send that.

        A request admitted only in part (some records must wait for another worker) ends its
        stage as waiting once the rest is sent, so nothing after it in the batch overtakes the
        records held back.
        """
        admit = admit or self._admit
        if admit is None:
            return _Ended.LANDED if await self._run_request(request) else _Ended.FAILED
        try:
            admission = await admit(request)
        except Exception as error:
            self.outcome.fail(request, _unexpected(error, request, "admitting"))
            return _Ended.FAILED
        if admission.request is not None and not await self._run_request(admission.request):
            return _Ended.FAILED
        return _Ended.LANDED if admission.complete else _Ended.WAITING

    async def _run_request(self, request: PlannedRequest, *, uncertain: bool = False) -> bool:
        """Send ``request``; True when everything in it landed (or was correctly found poison).

        ``uncertain``: a copy of these records may still land from an earlier try (a rejected
        request whose first attempt timed out or got a 5xx, now split): success is then uncertain too.
        """
        try:
            result = await self._send_with_auth_retry(request)
        except PineconeRequestError as error:
            error.uncertain = error.uncertain or uncertain
            if error.kind is FailureKind.REJECTED:
                return await self._isolate_rejected(request, error)
            self.outcome.fail(request, _as_failure(error))
            if error.kind is FailureKind.DEADLINE:
                self.outcome.deadline_cutoffs += 1
            elif error.kind is FailureKind.INDEX_NOT_FOUND:
                self.outcome.index_not_found += 1
            return False
        except Exception as error:  # e.g. the secret unreadable during a key refresh
            self.outcome.fail(request, _unexpected(error, request, "sending"))
            return False
        # A write is "landed" (its lease may be released) only when no other copy of it can still be
        # applied: an earlier attempt that timed out or got a 5xx may reach the index after this one,
        # whichever path the retry took (the gateway's attempts, a key refresh, a split).
        if uncertain and not result.uncertain:
            self.outcome.uncertain_landings += 1
        landed = self.outcome.landed if not (result.uncertain or uncertain) else set()
        keys: list[tuple[str, str]] = []
        match request.kind:
            case "upsert":
                self.outcome.records_upserted += len(request.records)
                self.outcome.upserted_by_namespace[request.namespace] += len(request.records)
                keys = [(request.namespace, r.id) for r in request.records]
            case "delete_ids":
                self.outcome.records_deleted += len(request.ids)
                self.outcome.deleted_by_namespace[request.namespace] += len(request.ids)
                keys = [(request.namespace, i) for i in request.ids]
            case "delete_by_filter" | "delete_all":
                # filter operations are ordered by their place in the batch, not leased
                self.outcome.filter_lsns.update(dict.fromkeys(request.origins, result.lsn))
            case _:
                assert_never(request.kind)
        landed.update(keys)
        self.outcome.written.update(dict.fromkeys(keys, result.lsn))
        return True

    async def _isolate_rejected(self, request: PlannedRequest, error: PineconeRequestError) -> bool:
        if len(request.origins) <= 1:
            for message_id in request.origins:
                problem = Problem("pinecone_rejected", "", error.args[0] if error.args else "rejected by Pinecone")
                self.outcome.poison[message_id] = PoisonMessageError([problem])
                self.outcome.failures.pop(message_id, None)
            retry = TransientError("the write this message was superseded by was rejected; redelivery applies it")
            for message_id in request.dependents - set(request.origins):
                self.outcome.failures.setdefault(message_id, retry)
            return True
        return await _all(self._run_request(part, uncertain=error.uncertain) for part in request.split_by_origin())

    async def _send_with_auth_retry(self, request: PlannedRequest) -> CallResult:
        refreshed = await call_with_key_refresh(self._gateways, lambda gateway: self._send(gateway, request))
        self.outcome.auth_refreshes += refreshed.refreshes
        if refreshed.uncertain and not refreshed.value.uncertain:
            self.outcome.uncertain_landings += 1
            return dataclasses.replace(refreshed.value, uncertain=True)
        return refreshed.value

    async def _send(self, gateway: PineconeGateway, request: PlannedRequest) -> CallResult:
        async with self._slots:
            await self._respect_rate_limit(request.namespace)
            left = self._deadline.left()
            if left < MIN_REQUEST_SECONDS:
                raise PineconeRequestError(FailureKind.DEADLINE, "the invocation's deadline is too close to start")
            self.outcome.requests += 1
            with self._spans.span(f"pinecone {request.kind}", "remote") as span:
                span.note(namespace=request.namespace, records=len(request.records) + len(request.ids))
                try:
                    result = await self._call(gateway, request, left)
                except PineconeRequestError as error:
                    span.failed(error.kind.value, fault=error.kind is not FailureKind.REJECTED)
                    raise
                span.note(attempts=result.attempts, lsn=result.lsn)
            self.outcome.latencies_ms.append(result.elapsed_ms)
            self.outcome.retries += result.attempts - 1
            self.outcome.uncertain_landings += result.uncertain
            return result

    @staticmethod
    async def _call(gateway: PineconeGateway, request: PlannedRequest, timeout: float) -> CallResult:
        match request.kind:
            case "upsert":
                return await gateway.upsert(request.namespace, request.records, timeout=timeout)
            case "delete_ids":
                return await gateway.delete_ids(request.namespace, request.ids, timeout=timeout)
            case "delete_by_filter":
                assert request.filter is not None
                return await gateway.delete_by_filter(request.namespace, request.filter, timeout=timeout)
            case "delete_all":
                return await gateway.delete_all(request.namespace, timeout=timeout)
            case _:  # a new kind must be sent here, never as "delete every record" by default
                assert_never(request.kind)

    async def _respect_rate_limit(self, namespace: str) -> None:
        if not self._min_interval:
            return
        now = self._clock()
        start = max(now, self._next_start.get(namespace, now))
        self._next_start[namespace] = start + self._min_interval
        if start > now:
            await self._sleep(start - now)


_WRITE_KINDS = ("upsert", "delete_ids")

type EarlyTask = asyncio.Task[_Ended]


def ended_failed(task: EarlyTask) -> bool:
    """Whether a request started with :meth:`PlanRunner.start_early` failed (cancelled counts as failed);
    False while it runs, when it landed, or when it only waited."""
    return task.done() and (task.cancelled() or task.result() is _Ended.FAILED)


async def _awaited(task: EarlyTask) -> _Ended:
    """A request already running, awaited as part of a stage."""
    return await task


async def _all(runs: Iterable[Coroutine[Any, Any, bool]]) -> bool:
    """Run ``runs`` concurrently and wait for every one of them; True when all returned True."""
    return all(await _gather(runs))


async def _gather[T](runs: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``runs`` concurrently and wait for every one of them; their results in order.

    The runs catch their own errors, so the group only ever sees cancellation: then every run is
    cancelled and awaited before the cancellation goes on (``gather`` would leave them running).
    """
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run) for run in runs]
    return [task.result() for task in tasks]


def _unexpected(error: Exception, request: PlannedRequest, doing: str) -> TransientError:
    """A request's error that is not Pinecone's answer: its messages are retried, the error logged."""
    if isinstance(error, TransientError):
        return error
    logger.warning(
        f"{doing} a Pinecone request failed; its messages are retried",
        extra={"namespace": request.namespace, "kind": request.kind, "error": type(error).__name__},
        exc_info=error,
    )
    return TransientError(f"{doing} the request failed: {type(error).__name__}: {error}")


def _as_failure(error: PineconeRequestError) -> TransientError:
    if error.kind is FailureKind.AUTH:
        return AuthError(f"Pinecone refused the API key after a refresh: {error}")
    if error.kind is FailureKind.DEADLINE:
        return DeadlineError(str(error))
    if error.kind is FailureKind.INDEX_NOT_FOUND:
        return IndexNotFoundError(str(error))
    return TransientError(str(error))
