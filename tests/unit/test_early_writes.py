"""Send while validating: full requests go out while the batch is read, and the batch-wide rules still hold.

Driven as the ingest service drives it (messages added in batch order, then the plan for the rest),
against an in-memory gateway that logs when each request starts and ends. What is asserted is the
order the product promises (a record written twice: the later write starts after the earlier one
ended; a filter operation after every earlier write), never how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.parsing import parse_write_message
from vector_relay.deadline import Deadline
from vector_relay.errors import FailureKind, TransientError
from vector_relay.ingest.early_writes import BackgroundSending, EarlyWrites, depend_on_early
from vector_relay.ingest.planning import MAX_RECORDS_PER_REQUEST, PlannableWrite, coalesce, pack
from vector_relay.ingest.runner import PlanRunner, WriteOutcome
from vector_relay.keys.api_key_cache import ApiKey, ApiKeyCache, GatewaySource
from vector_relay.pinecone.data_plane import CallResult
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.pinecone.wire import EncodedRecord, encode_upsert

HALF = MAX_RECORDS_PER_REQUEST // 2


class LoggingGateway:
    """Logs ``("start" | "end", kind, ids)``; an upsert carrying ``fail_id`` fails transiently, one carrying
    ``uncertain_id`` succeeds after an attempt that may still land (a 5xx, then a success)."""

    def __init__(
        self,
        log: list[tuple[str, str, tuple[str, ...]]],
        fail_id: str | None,
        gate: threading.Event,
        uncertain_id: str | None = None,
    ) -> None:
        self.log, self.fail_id, self.gate, self.uncertain_id = log, fail_id, gate, uncertain_id

    async def upsert(self, namespace: str, records: Sequence[EncodedRecord], *, timeout: float) -> CallResult:
        return await self._answer("upsert", tuple(r.id for r in records))

    async def delete_ids(self, namespace: str, ids: Sequence[str], *, timeout: float) -> CallResult:
        return await self._answer("delete_ids", tuple(ids))

    async def delete_by_filter(self, namespace: str, filter_: Any, *, timeout: float) -> CallResult:
        return await self._answer("delete_by_filter", ())

    async def delete_all(self, namespace: str, *, timeout: float) -> CallResult:
        return await self._answer("delete_all", ())

    async def _answer(self, kind: str, ids: tuple[str, ...]) -> CallResult:
        self.log.append(("start", kind, ids))
        while not self.gate.is_set():  # the test decides when answers come (never a duration)
            await asyncio.sleep(0.001)
        self.log.append(("end", kind, ids))
        if self.fail_id is not None and self.fail_id in ids:
            raise PineconeRequestError(FailureKind.TRANSIENT, "Pinecone 503: unavailable", status=503)
        if self.uncertain_id is not None and self.uncertain_id in ids:
            return CallResult(elapsed_ms=1.0, attempts=2, uncertain=True)
        return CallResult(elapsed_ms=1.0)


def upsert(*records: tuple[str, int]) -> PlannableWrite:
    body = {
        "schema_version": 1,
        "op": "upsert",
        "tenant": "t",
        "records": [{"id": i, "version": v, "values": [1.0, float(v)]} for i, v in records],
    }
    return encode_upsert(parse_write_message(json.dumps(body), ValidationContext()))


def filled(prefix: str, count: int = HALF) -> PlannableWrite:
    return upsert(*((f"{prefix}{n}", 1) for n in range(count)))


def delete_by_filter() -> PlannableWrite:
    body = {"schema_version": 1, "op": "delete_by_filter", "tenant": "t", "filter": {"genre": {"$eq": "x"}}}
    return parse_write_message(json.dumps(body), ValidationContext())


class Batch:
    """A batch as IngestRun handles it: messages added one by one, then the plan for what is left."""

    def __init__(self, fail_id: str | None = None, *, answer: bool = True, uncertain_id: str | None = None) -> None:
        self.log: list[tuple[str, str, tuple[str, ...]]] = []
        self.gate = threading.Event()
        if answer:
            self.gate.set()
        keys = ApiKeyCache(lambda: ApiKey(value="k", version_id="v"))
        source = GatewaySource(keys, lambda key: LoggingGateway(self.log, fail_id, self.gate, uncertain_id))  # type: ignore[arg-type,return-value]
        self.loop = asyncio.Runner()
        self.runner = PlanRunner(source, deadline=Deadline(300), max_concurrency=4)
        self.sending = BackgroundSending(self.loop, self.runner, None)
        self.early = EarlyWrites(self.sending.send)
        self.messages: list[tuple[str, str, PlannableWrite]] = []

    def add(self, message_id: str, message: PlannableWrite) -> None:
        self.messages.append((message_id, "ns", message))
        self.early.add(message_id, "ns", message)

    def finish(self) -> WriteOutcome:
        coalesced = coalesce(self.messages)
        if not self.sending.started:
            return self.loop.run(self.runner.run(pack(coalesced)))
        settled = self.early.settle(coalesced)
        outcome = self.sending.finish(pack(coalesced, exclude=settled.sent), settled.rewritten)
        depend_on_early(outcome, settled, coalesced, self.sending)
        return outcome

    def close(self) -> None:
        self.gate.set()
        self.sending.close()
        self.loop.close()

    def started(self) -> list[tuple[str, ...]]:
        return [ids for event, kind, ids in self.log if event == "start" and kind == "upsert"]

    def wait_for_starts(self, count: int) -> None:
        ceiling = time.monotonic() + 60
        while len(self.started()) < count:
            assert time.monotonic() < ceiling, f"{count} request(s) never started: {self.log}"
            time.sleep(0.001)


def test_a_full_request_goes_out_while_the_rest_of_the_batch_is_still_being_read() -> None:
    batch = Batch(answer=False)
    try:
        batch.add("m1", filled("a"))
        batch.add("m2", filled("b"))  # 1,000 records: a full request
        batch.wait_for_starts(1)  # sent before m3 exists
        batch.add("m3", filled("c", 10))
        batch.gate.set()
        outcome = batch.finish()
    finally:
        batch.close()
    first, second = batch.started()
    assert set(first) == {f"a{n}" for n in range(HALF)} | {f"b{n}" for n in range(HALF)}
    assert set(second) == {f"c{n}" for n in range(10)}
    assert (outcome.failures, outcome.records_upserted, outcome.early_requests) == ({}, 2 * HALF + 10, 1)


def test_a_record_written_again_after_it_was_sent_early_is_sent_again_only_after_the_early_request_ended() -> None:
    batch = Batch(answer=False)
    try:
        batch.add("m1", upsert(("x", 1), *((f"a{n}", 1) for n in range(HALF - 1))))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", upsert(("x", 2)))  # x again, a higher version: the batch's winner
        batch.gate.set()
        outcome = batch.finish()
    finally:
        batch.close()
    early_end = batch.log.index(("end", "upsert", batch.started()[0]))
    again = batch.log.index(("start", "upsert", ("x",)))
    assert early_end < again  # x v1 ended before x v2 started: the later version lands last
    assert outcome.failures == {}
    assert ("ns", "x") in outcome.landed


def test_a_record_sent_again_is_not_landed_when_only_its_early_write_landed() -> None:
    batch = Batch(fail_id="y")
    try:
        batch.add("m1", upsert(("x", 1), *((f"a{n}", 1) for n in range(HALF - 1))))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", upsert(("x", 2), ("y", 1)))  # x v2 goes with y, whose request fails
        outcome = batch.finish()
    finally:
        batch.close()
    assert set(outcome.failures) == {"m1", "m3"}  # m1 waits for x v2, its winner, as any superseded write does
    assert ("ns", "x") not in outcome.landed  # its lease must outlive x v2's failed (maybe late) request
    assert ("ns", "a0") in outcome.landed


def test_a_lower_version_read_after_the_early_write_depends_on_it() -> None:
    batch = Batch(fail_id="x")
    try:
        batch.add("m1", upsert(("x", 5), *((f"a{n}", 1) for n in range(HALF - 1))))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", upsert(("x", 4)))  # superseded by the early write, which fails
        outcome = batch.finish()
    finally:
        batch.close()
    assert len(batch.started()) == 1  # x v4 is never sent
    assert set(outcome.failures) == {"m1", "m2", "m3"}
    assert isinstance(outcome.failures["m3"], TransientError)
    assert "superseded" in str(outcome.failures["m3"])


def test_a_record_seen_twice_before_its_request_filled_is_left_to_the_plan() -> None:
    batch = Batch()
    try:
        batch.add("m1", upsert(("x", 1), ("a", 1)))
        batch.add("m2", upsert(("x", 3)))  # taken back: the plan decides x
        batch.add("m3", filled("b", MAX_RECORDS_PER_REQUEST - 1))  # a, then 999 b: full
        batch.wait_for_starts(1)
        outcome = batch.finish()
    finally:
        batch.close()
    early, planned = batch.started()
    assert "x" not in early
    assert planned == ("x",)
    assert outcome.failures == {}


def test_a_filter_operation_follows_every_write_sent_before_it_and_stops_early_sending() -> None:
    batch = Batch()
    try:
        batch.add("m1", filled("a"))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", delete_by_filter())
        batch.add("m4", filled("c"))
        batch.add("m5", filled("d"))  # full, but after the filter: planned, sent after it
        outcome = batch.finish()
    finally:
        batch.close()
    assert outcome.early_requests == 1
    filter_start = batch.log.index(("start", "delete_by_filter", ()))
    assert batch.log.index(("end", "upsert", batch.started()[0])) < filter_start
    assert all(batch.log.index(("start", "upsert", ids)) > filter_start for ids in batch.started()[1:])
    assert outcome.failures == {}


def test_a_failed_early_request_holds_back_what_follows_it_in_the_namespace() -> None:
    batch = Batch(fail_id="a0")
    try:
        batch.add("m1", filled("a"))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", delete_by_filter())
        batch.add("m4", filled("c", 3))
        outcome = batch.finish()
    finally:
        batch.close()
    assert set(outcome.failures) == {"m1", "m2", "m3", "m4"}
    assert "kept in order" in str(outcome.failures["m3"])
    assert [kind for event, kind, _ in batch.log if event == "start"] == ["upsert"]  # nothing after it was sent


def test_a_batch_that_never_fills_a_request_sends_nothing_early() -> None:
    batch = Batch()
    try:
        batch.add("m1", filled("a", 10))
        batch.add("m2", filled("b", 10))
        outcome = batch.finish()
    finally:
        batch.close()
    assert not batch.sending.started
    assert (outcome.early_requests, len(batch.started()), outcome.failures) == (0, 1, {})


def test_a_record_whose_early_write_may_still_land_is_not_sent_again_in_the_same_batch() -> None:
    batch = Batch(answer=False, uncertain_id="x")
    try:
        batch.add("m1", upsert(("x", 1), *((f"a{n}", 1) for n in range(HALF - 1))))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)
        batch.add("m3", upsert(("x", 2)))
        batch.gate.set()
        outcome = batch.finish()
    finally:
        batch.close()
    assert batch.started() == [batch.started()[0]]  # x v2 never sent: a copy of x v1 could land after it
    assert {"m1", "m3"} <= set(outcome.failures)  # m3 retried; m1 waits for x's winner with it
    assert "may still land" in str(outcome.failures["m3"])
    assert ("ns", "x") not in outcome.landed  # its lease is kept until it ends


def test_a_message_superseded_by_two_early_requests_fails_when_either_fails() -> None:
    batch = Batch(fail_id="y")
    try:
        batch.add("m1", upsert(("x", 5), *((f"a{n}", 1) for n in range(HALF - 1))))
        batch.add("m2", filled("b"))
        batch.wait_for_starts(1)  # x v5 went out
        batch.add("m3", upsert(("y", 5), *((f"c{n}", 1) for n in range(HALF - 1))))
        batch.add("m4", filled("d"))
        batch.wait_for_starts(2)  # y v5 went out, and fails
        batch.add("m5", upsert(("x", 3), ("y", 3)))  # both superseded by early writes
        outcome = batch.finish()
    finally:
        batch.close()
    assert "m5" in outcome.failures
    assert "superseded" in str(outcome.failures["m5"])
    assert "m1" not in outcome.failures
