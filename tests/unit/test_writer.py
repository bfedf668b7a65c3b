"""The plan runner's decisions, with a scripted in-memory gateway (no network): failure mapping, order, deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.parsing import parse_write_message
from vector_relay.deadline import Deadline
from vector_relay.errors import AuthError, DeadlineError, FailureKind, TransientError
from vector_relay.ingest.planning import WritePlan, coalesce, pack
from vector_relay.ingest.runner import PlanRunner, WriteOutcome
from vector_relay.keys.api_key_cache import ApiKey, ApiKeyCache, GatewaySource
from vector_relay.pinecone.data_plane import CallResult
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.pinecone.wire import EncodedRecord


class ScriptedGateway:
    """Records calls; fails a request when ``reject`` / ``fail`` say so."""

    def __init__(self, key: ApiKey, log: list[tuple[str, str, tuple[str, ...]]], script: dict[str, Any]) -> None:
        self.key = key
        self.log = log
        self.script = script

    async def upsert(self, namespace: str, records: Sequence[EncodedRecord], *, timeout: float) -> CallResult:
        ids = tuple(r.id for r in records)
        return await self._answer("upsert", namespace, ids, timeout)

    async def delete_ids(self, namespace: str, ids: Sequence[str], *, timeout: float) -> CallResult:
        return await self._answer("delete_ids", namespace, tuple(ids), timeout)

    async def delete_by_filter(self, namespace: str, filter_: Any, *, timeout: float) -> CallResult:
        return await self._answer("delete_by_filter", namespace, (), timeout)

    async def delete_all(self, namespace: str, *, timeout: float) -> CallResult:
        return await self._answer("delete_all", namespace, (), timeout)

    async def _answer(self, kind: str, namespace: str, ids: tuple[str, ...], timeout: float) -> CallResult:
        self.log.append((kind, self.key.value, ids))
        if self.script.get("sleep"):
            await asyncio.sleep(self.script["sleep"])
        if self.key.value in self.script.get("refused_keys", ()):
            raise PineconeRequestError(FailureKind.AUTH, "Pinecone 401: Unauthorized", status=401)
        if any(i in self.script.get("reject_ids", ()) for i in ids):
            raise PineconeRequestError(FailureKind.REJECTED, "Pinecone 400: bad record", status=400)
        if kind in self.script.get("fail_kinds", ()):
            raise PineconeRequestError(FailureKind.TRANSIENT, "Pinecone 503: unavailable", status=503)
        if namespace in self.script.get("uncertain_namespaces", ()):
            return CallResult(elapsed_ms=1.0, attempts=2, uncertain=True)  # a 5xx first, then success
        return CallResult(elapsed_ms=1.0)


class Keys:
    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.reads = 0

    def read(self) -> ApiKey:
        value = self.values[min(self.reads, len(self.values) - 1)]
        self.reads += 1
        return ApiKey(value=value, version_id=f"v-{value}")


def plan_writes(messages: Sequence[tuple[str, str, Any]]) -> WritePlan:
    """The plan for ``(message_id, namespace, message)`` triples in batch order, as the ingest service makes it."""
    return pack(coalesce(messages))


def up(tenant_ns: str, *ids: str, version: int = 1) -> Any:
    body = {
        "schema_version": 1,
        "op": "upsert",
        "tenant": "t",
        "records": [{"id": i, "version": version, "values": [1.0, 2.0]} for i in ids],
    }
    return parse_write_message(json.dumps(body), ValidationContext())


def run(
    messages: list[tuple[str, str, Any]],
    script: dict[str, Any] | None = None,
    keys: Keys | None = None,
    seconds: float = 30.0,
) -> tuple[WriteOutcome, list[tuple[str, str, tuple[str, ...]]], Keys]:
    log: list[tuple[str, str, tuple[str, ...]]] = []
    keys = keys or Keys("k1")
    source = GatewaySource(ApiKeyCache(keys.read), lambda key: ScriptedGateway(key, log, script or {}))  # type: ignore[arg-type,return-value]
    runner = PlanRunner(source, deadline=Deadline(seconds), max_concurrency=4)
    outcome = asyncio.run(runner.run(plan_writes(messages)))
    return outcome, log, keys


def test_everything_lands_in_one_request() -> None:
    outcome, log, _ = run([("m1", "ns", up("ns", "a", "b")), ("m2", "ns", up("ns", "c"))])
    assert outcome.failures == {}
    assert outcome.poison == {}
    assert outcome.records_upserted == 3
    assert log == [("upsert", "k1", ("a", "b", "c"))]


def test_a_rejected_request_is_split_until_the_bad_message_is_alone() -> None:
    messages = [(f"m{i}", "ns", up("ns", f"r{i}")) for i in range(8)]
    outcome, log, _ = run(messages, {"reject_ids": {"r5"}})
    assert set(outcome.poison) == {"m5"}
    assert outcome.poison["m5"].error_code == "pinecone_rejected"
    assert "bad record" in outcome.poison["m5"].detail
    assert outcome.failures == {}
    landed = {i for kind, _, ids in log if kind == "upsert" for i in ids if i != "r5"}
    assert landed == {f"r{i}" for i in range(8)} - {"r5"}
    assert len(log) <= 1 + 2 * 3  # one request, then at most two per level of a binary split


def test_messages_superseded_by_a_rejected_write_are_retried_not_dropped() -> None:
    messages = [("m1", "ns", up("ns", "a", version=1)), ("m2", "ns", up("ns", "a", version=2))]
    outcome, _, _ = run(messages, {"reject_ids": {"a"}})
    assert set(outcome.poison) == {"m2"}
    assert isinstance(outcome.failures["m1"], TransientError)


def test_transient_failure_fails_exactly_the_contributing_messages() -> None:
    messages = [
        ("m1", "ns-a", up("ns-a", "a")),
        (
            "m2",
            "ns-b",
            parse_write_message(
                '{"schema_version":1,"op":"delete","tenant":"t","records":[{"id":"x","version":1}]}',
                ValidationContext(),
            ),
        ),
    ]
    outcome, _, _ = run(messages, {"fail_kinds": {"delete_ids"}})
    assert set(outcome.failures) == {"m2"}
    assert "503" in str(outcome.failures["m2"])


def test_a_write_that_succeeded_after_an_uncertain_attempt_is_not_landed() -> None:
    """Its records keep their leases: the failed attempt may still be applied after a newer write."""
    messages = [("m1", "sure", up("sure", "a")), ("m2", "unsure", up("unsure", "b"))]
    outcome, _, _ = run(messages, {"uncertain_namespaces": {"unsure"}})
    assert outcome.failures == {}
    assert outcome.records_upserted == 2
    assert outcome.landed == {("sure", "a")}
    assert (outcome.retries, outcome.uncertain_landings) == (1, 1)


def test_a_failed_stage_holds_back_the_later_stages_of_its_namespace() -> None:
    by_filter = parse_write_message(
        '{"schema_version":1,"op":"delete_by_filter","tenant":"t","filter":{"a":1}}', ValidationContext()
    )
    messages = [
        ("m1", "ns", up("ns", "a")),
        ("m2", "ns", by_filter),
        ("m3", "ns", up("ns", "b")),
        ("m4", "other", up("other", "c")),
    ]
    outcome, log, _ = run(messages, {"fail_kinds": {"upsert"}})
    assert set(outcome.failures) == {"m1", "m2", "m3", "m4"}
    assert [kind for kind, _, _ in log].count("delete_by_filter") == 0  # never sent out of order


def test_a_refused_key_is_reread_once_and_the_request_retried() -> None:
    keys = Keys("old", "new")
    outcome, log, keys = run(
        [(f"m{i}", f"ns{i}", up(f"ns{i}", "a")) for i in range(3)], {"refused_keys": {"old"}}, keys
    )
    assert outcome.failures == {}
    assert keys.reads == 2  # one initial read, one refresh for three refused requests
    assert [key for _, key, _ in log].count("new") == 3


def test_a_key_still_refused_after_the_refresh_is_an_auth_failure_not_poison() -> None:
    keys = Keys("old", "also-bad")
    outcome, _, _ = run([("m1", "ns", up("ns", "a"))], {"refused_keys": {"old", "also-bad"}}, keys)
    assert isinstance(outcome.failures["m1"], AuthError)
    assert outcome.poison == {}


def test_no_request_starts_when_the_deadline_is_too_close() -> None:
    outcome, log, _ = run([("m1", "ns", up("ns", "a"))], seconds=0.5)
    assert log == []
    assert isinstance(outcome.failures["m1"], DeadlineError)
    assert outcome.deadline_cutoffs == 1


@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_is_bounded(limit: int) -> None:
    in_flight = 0
    peak = 0
    full = asyncio.Event()  # calls are held until `limit` of them are in flight at once

    class Counting(ScriptedGateway):
        async def _answer(self, kind: str, namespace: str, ids: tuple[str, ...], timeout: float) -> CallResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight >= limit:
                full.set()
            await full.wait()
            await asyncio.sleep(0)  # let every other ready call in: more than `limit` would be seen here
            in_flight -= 1
            return CallResult(elapsed_ms=10)

    log: list[Any] = []
    source = GatewaySource(ApiKeyCache(Keys("k").read), lambda key: Counting(key, log, {}))  # type: ignore[arg-type,return-value]
    runner = PlanRunner(source, deadline=Deadline(30), max_concurrency=limit)
    plan = plan_writes([(f"m{i}", f"ns{i}", up(f"ns{i}", "a")) for i in range(8)])
    outcome = asyncio.run(runner.run(plan))
    assert outcome.failures == {}
    assert peak == limit


def test_namespace_rate_limit_spaces_request_starts() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    log: list[Any] = []
    source = GatewaySource(ApiKeyCache(Keys("k").read), lambda key: ScriptedGateway(key, log, {}))  # type: ignore[arg-type,return-value]
    runner = PlanRunner(
        source, deadline=Deadline(30), max_concurrency=8, namespace_rate_limit=10, clock=lambda: 100.0, sleep=fake_sleep
    )

    def deletes(first: int) -> Any:
        records = [{"id": f"r{i}", "version": 1} for i in range(first, first + 1000)]
        body = {"schema_version": 1, "op": "delete", "tenant": "t", "records": records}
        return parse_write_message(json.dumps(body), ValidationContext())

    messages = [(f"m{n}", "ns", deletes(n * 1000)) for n in range(3)] + [("m9", "other", up("o", "a"))]
    outcome = asyncio.run(runner.run(plan_writes(messages)))
    assert outcome.failures == {}
    assert sorted(slept) == [0.1, 0.2]  # three deletes to "ns" at 10/s; "other" is not held back


def test_a_key_read_that_fails_mid_batch_fails_its_request_only_and_leaves_nothing_running() -> None:
    """Five requests in flight; one is refused and the key re-read raises (Secrets Manager down).

    That request's messages are retried; the other four land; when ``run`` returns no task of the
    batch is left on the loop (the worker's loop outlives the invocation, so one would resume
    inside the next invocation and write after its lease).
    """
    in_flight: list[str] = []
    all_in_flight = asyncio.Event()
    read_failed = asyncio.Event()
    loop: asyncio.AbstractEventLoop | None = None

    class Holding(ScriptedGateway):
        async def _answer(self, kind: str, namespace: str, ids: tuple[str, ...], timeout: float) -> CallResult:
            self.log.append((kind, self.key.value, ids))
            if namespace == "ns0":
                await all_in_flight.wait()
                raise PineconeRequestError(FailureKind.AUTH, "Pinecone 401: Unauthorized", status=401)
            in_flight.append(namespace)
            if len(in_flight) == 4:
                all_in_flight.set()
            await read_failed.wait()  # still in flight when the refresh fails
            return CallResult(elapsed_ms=1.0)

    reads = 0

    def read() -> ApiKey:
        nonlocal reads
        reads += 1
        if reads == 1:
            return ApiKey(value="k1", version_id="v1")
        assert loop is not None
        loop.call_soon_threadsafe(read_failed.set)
        raise RuntimeError("Secrets Manager is unavailable")

    async def batch() -> tuple[WriteOutcome, set[asyncio.Task[Any]]]:
        nonlocal loop
        loop = asyncio.get_running_loop()
        log: list[Any] = []
        source = GatewaySource(ApiKeyCache(read), lambda key: Holding(key, log, {}))  # type: ignore[arg-type,return-value]
        runner = PlanRunner(source, deadline=Deadline(30), max_concurrency=8)
        outcome = await runner.run(plan_writes([(f"m{i}", f"ns{i}", up(f"ns{i}", "a")) for i in range(5)]))
        return outcome, asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    outcome, left_running = asyncio.run(batch())

    assert left_running == set()
    assert set(outcome.failures) == {"m0"}
    assert isinstance(outcome.failures["m0"], TransientError)
    assert "RuntimeError: Secrets Manager is unavailable" in str(outcome.failures["m0"])
    assert outcome.records_upserted == 4
    assert sorted(in_flight) == ["ns1", "ns2", "ns3", "ns4"]
