"""Admission under the guard: a request's claims awaited with one wake-up; every write sent counted for the release."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.parsing import parse_write_message
from vector_relay.deadline import Deadline
from vector_relay.ingest.admission import GuardedBatch, _all_done
from vector_relay.ingest.claim_session import MAX_GROUP, PUMPED_MIN_RECORDS, ClaimSession
from vector_relay.ingest.guard_records import ClaimLock, GuardedWrite, Lease, SentClaim, Verdict
from vector_relay.ingest.planning import PlannableWrite, Winner, coalesce
from vector_relay.pinecone.wire import encode_upsert


def test_claims_done_already_need_no_wait() -> None:
    claims: list[Future[int]] = [Future() for _ in range(3)]
    for number, claim in enumerate(claims):
        claim.set_result(number)
    waiting = _all_done(claims)
    with pytest.raises(StopIteration):  # finished at its first step: never suspended, no loop wake-up asked for
        waiting.send(None)


def test_the_wait_ends_only_when_the_last_claim_finishes_on_another_thread() -> None:
    claims: list[Future[int]] = [Future() for _ in range(50)]
    claims[0].set_result(0)  # one done before the wait, the rest from claim threads
    release = threading.Event()

    def finish() -> None:
        release.wait(60)
        for number, claim in enumerate(claims[1:], 1):
            if number % 2:
                claim.set_result(number)
            else:
                claim.set_exception(RuntimeError("DynamoDB could not be asked"))

    async def scenario() -> None:
        waiting = asyncio.ensure_future(_all_done(claims))
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing has finished the pending claims yet: the wait cannot have ended
        thread = threading.Thread(target=finish)
        thread.start()
        release.set()
        await asyncio.wait_for(waiting, timeout=60)
        thread.join(60)
        assert all(claim.done() for claim in claims)

    asyncio.run(scenario())


def test_a_cancelled_wait_lets_its_claims_finish_later_without_error() -> None:
    claim: Future[int] = Future()

    errors: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        waiting = asyncio.ensure_future(_all_done([claim]))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        claim.set_result(1)  # wakes a loop future that was cancelled: must be ignored, not raise
        for _ in range(3):
            await asyncio.sleep(0)  # let the loop run the wake-up it was handed

    asyncio.run(scenario())
    assert claim.result() == 1
    assert errors == []


class _Claimer:
    """Claims every write below version 7; a v7 write is left undecided (busy: the deadline's stop, a lost lock)."""

    def now(self) -> float:
        return 0.0

    def _lock(self, namespace: str, stop: object = None) -> ClaimLock:
        return ClaimLock(namespace, "lock-token", 1e12)

    def _unlock(self, lock: ClaimLock) -> None:
        pass

    def _claim_blind(
        self, namespace: str, writes: Sequence[GuardedWrite], *_: object, **__: object
    ) -> tuple[set[object], list[GuardedWrite]]:
        return set(), list(writes)  # every blind claim refused: each record is read and decided

    def _claim_locked(self, namespace: str, writes: Sequence[GuardedWrite], *_: object, **__: object) -> dict:  # type: ignore[type-arg]
        return {write.key: Verdict.CLAIMED for write in writes if write.version < 7}


class _Guard:
    def lease(self, seconds: float) -> Lease:
        return Lease("invocation-token", 10**13)

    def session(self, lease: Lease, *, stop: Callable[[], bool], spans: object) -> ClaimSession:
        return ClaimSession(_Claimer(), ThreadPoolExecutor(2), lease, stop, spans)  # type: ignore[arg-type]


class _Tenants:
    def namespace_for(self, tenant: str) -> str:
        return "ns"


def _upsert(record_id: str, version: int) -> PlannableWrite:
    body = {
        "schema_version": 1,
        "op": "upsert",
        "tenant": "t",
        "records": [{"id": record_id, "version": version, "values": [1.0]}],
    }
    return encode_upsert(parse_write_message(json.dumps(body), ValidationContext()))


def test_a_write_sent_early_is_among_the_claimed_writes_when_a_later_unclaimed_write_won_the_batch() -> None:
    """x v5 claimed and sent early; x v7 won the batch but was never claimed: the release must still name x v5,
    so that if it did not land, its record stays leased (it may land late) instead of being released."""
    batch = GuardedBatch(_Guard(), 60, Deadline(300), _Tenants())  # type: ignore[arg-type]
    first, later = _upsert("x", 5), _upsert("x", 7)
    batch.submit(first)
    batch.submit(later)
    batch.coalesced = coalesce([("m1", "ns", first), ("m3", "ns", later)])
    batch.session.close()
    early_upsert = {("ns", "x"): Winner("ns", 0, 1, 5, "m1", first.records[0], "x")}  # type: ignore[union-attr]

    summary = batch.settle(early_upsert)

    assert [(write.key, write.version) for write in summary.claimed] == [(("ns", "x"), 5)]
    assert summary.busy == 1  # x v7: its message waits
    assert batch.settle().claimed == []  # without the early write: the release would call x landed


class _RecordingClaimer(_Claimer):
    """As _Claimer, recording the groups it claims."""

    def __init__(self) -> None:
        self.groups: list[list[tuple[str, int]]] = []

    def _claim_locked(self, namespace: str, writes: Sequence[GuardedWrite], *_: object, **__: object) -> dict:  # type: ignore[type-arg]
        self.groups.append([(write.record_id, write.version) for write in writes])
        return {write.key: Verdict.CLAIMED for write in writes}


def test_small_submissions_waiting_together_share_a_claim_but_a_record_written_twice_never_joins_its_first() -> None:
    claimer = _RecordingClaimer()
    pool, gate = ThreadPoolExecutor(1), threading.Event()
    pool.submit(gate.wait, 60)  # the pool's one thread is busy until the gate opens: every submission waits
    session = ClaimSession(claimer, pool, Lease("t", 10**13), lambda: False)  # type: ignore[arg-type]

    def write(record_id: str, version: int) -> list[GuardedWrite]:
        return [GuardedWrite("ns", record_id, version, "upsert")]

    waiting = [session.submit("ns", write(record_id, 1)) for record_id in ("a", "b", "c")]
    again = session.submit("ns", write("b", 2))  # b is waiting already: its second write goes after
    gate.set()
    session.close()

    assert waiting[0] is waiting[1] is waiting[2]  # one submission: one future, one hand-over
    assert waiting[0].result() == {("ns", r): Verdict.CLAIMED for r in ("a", "b", "c")}
    assert again is not waiting[0]
    assert again.result() == {("ns", "b"): Verdict.CLAIMED}
    assert claimer.groups == [[("a", 1), ("b", 1), ("c", 1)], [("b", 2)]]


class _HeldClaimer(_Claimer):
    """Each group's blind claim is sent at once and answered only when ``answer`` is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.sent: list[list[str]] = []
        self.third_sent = threading.Event()

    def _claim_blind(
        self,
        namespace: str,
        writes: Sequence[GuardedWrite],
        lease: Lease,
        stop: object,
        sent: Callable[[], None],
        first: object = None,
    ) -> tuple[set[object], list[GuardedWrite]]:
        sent()
        self.sent.append([write.record_id for write in writes])
        if len(self.sent) == 3:
            self.third_sent.set()
        assert self.answer.wait(60)
        return {write.key for write in writes}, []


def test_sealing_sends_the_groups_still_queued_without_waiting_for_the_ones_in_flight() -> None:
    """Two groups in flight (their answers held back) and a third queued behind them: once the batch is read,
    the third is sent too rather than when one of the first two returns."""
    claimer = _HeldClaimer()
    session = ClaimSession(claimer, ThreadPoolExecutor(4), Lease("t", 10**13), lambda: False)  # type: ignore[arg-type]
    futures = [
        session.submit("ns", [GuardedWrite("ns", f"{group}-{n}", 1, "upsert") for n in range(MAX_GROUP)])
        for group in "abc"
    ]
    session.seal()
    assert claimer.third_sent.wait(60)  # with the first two still unanswered
    claimer.answer.set()
    session.close()
    assert sorted(group[0] for group in claimer.sent) == ["a-0", "b-0", "c-0"]
    assert all(set(future.result().values()) == {Verdict.CLAIMED} for future in futures)


class _Answered:
    """A blind claim's answer, there at once: every put applied, or the transaction cancelled for ``refused``."""

    def __init__(self, refused: list[str]) -> None:
        self.refused = refused

    def ready(self) -> bool:
        return True

    def __call__(self) -> dict[str, object]:
        if self.refused:
            reasons = [{"Code": "ConditionalCheckFailed"}] * len(self.refused)
            error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
            raise ClientError({"Error": error, "CancellationReasons": reasons}, "TransactWriteItems")  # type: ignore[typeddict-unknown-key]
        return {}


class _PumpedClaimer(_Claimer):
    """A guard whose blind claims are sent by the caller and answered at once; the records in ``refused`` are
    refused (then read and decided: v7 stays undecided, as :class:`_Claimer` does)."""

    def __init__(self, refused: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.refused = refused
        self.senders: list[threading.Thread] = []
        self.continued_on: list[threading.Thread] = []

    def _send_blind(
        self, namespace: str, writes: Sequence[GuardedWrite], lease: Lease, now_ms: int | None = None
    ) -> SentClaim:
        self.senders.append(threading.current_thread())
        carried = list(writes)[:MAX_GROUP]
        return SentClaim(0, _Answered([w.record_id for w in carried if w.record_id in self.refused]), len(carried))

    def _claim_blind(
        self, namespace: str, writes: Sequence[GuardedWrite], *_: object, first: SentClaim | None = None, **__: object
    ) -> tuple[set[object], list[GuardedWrite]]:
        assert first is not None  # a pumped group goes on from the answer the submitting thread read
        self.continued_on.append(threading.current_thread())
        try:
            first.answer()
        except ClientError:  # refused in part: the rest sent again (here: claimed), the refused ones left to read
            refused = [w for w in writes if w.record_id in self.refused]
            return {w.key for w in writes if w not in refused}, refused
        return {w.key for w in writes}, []


class _CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(4)
        self.submitted = 0

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> Future:  # type: ignore[override,type-arg]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_pumped_claims_are_sent_and_decided_between_messages_on_the_submitting_thread() -> None:
    """The handler's thread sends each group and reads its answer between two messages: no claim thread needs
    the interpreter while the batch is validated (a thread that wants it waits up to the 5 ms switch interval)."""
    claimer, pool = _PumpedClaimer(), _CountingPool()
    session = ClaimSession(claimer, pool, Lease("t", 10**13), lambda: False, pumped=True)  # type: ignore[arg-type]
    messages = [[GuardedWrite("ns", f"m{m}-{n}", 1, "upsert") for n in range(PUMPED_MIN_RECORDS)] for m in range(5)]
    futures = [session.submit("ns", writes) for writes in messages]
    assert all(future.done() for future in futures[:-1])  # each answered by the time the next message came
    session.close()
    assert pool.submitted == 0  # not one group went to a claim thread
    assert claimer.senders == [threading.current_thread()] * 5
    assert [future.result() for future in futures] == [
        dict.fromkeys((write.key for write in writes), Verdict.CLAIMED) for writes in messages
    ]
    pool.shutdown()


def test_pumped_small_messages_wait_to_be_claimed_together() -> None:
    """Where answers come back at once, each one-record message would be a request of its own: a group leaves
    between messages only once enough records wait, and the rest at the seal."""
    claimer, pool = _PumpedClaimer(), _CountingPool()
    session = ClaimSession(claimer, pool, Lease("t", 10**13), lambda: False, pumped=True)  # type: ignore[arg-type]
    futures = [session.submit("ns", [GuardedWrite("ns", f"r{n}", 1, "upsert")]) for n in range(PUMPED_MIN_RECORDS + 5)]
    assert len(claimer.senders) == 1  # the first PUMPED_MIN_RECORDS together; the last five wait for the seal
    assert pool.submitted == 0
    session.close()  # the last five sent at the seal, whose answer a claim thread reads
    assert len(claimer.senders) == 2
    assert all(future.result()[("ns", f"r{n}")] is Verdict.CLAIMED for n, future in enumerate(futures))
    pool.shutdown()


class _CountedAnswer(_Answered):
    """An answer that counts how often it was asked whether it had come."""

    asked = 0

    def ready(self) -> bool:
        _CountedAnswer.asked += 1
        return True


def test_pumped_answers_are_not_polled_for_while_no_group_could_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking whether an answer has come is a system call (``select``); between two messages it is asked only
    once enough records wait for a group to leave, and at the seal."""
    monkeypatch.setattr(_CountedAnswer, "asked", 0)
    monkeypatch.setattr(sys.modules[__name__], "_Answered", _CountedAnswer)
    claimer, pool = _PumpedClaimer(), _CountingPool()
    session = ClaimSession(claimer, pool, Lease("t", 10**13), lambda: False, pumped=True)  # type: ignore[arg-type]
    first = [GuardedWrite("ns", f"g{n}", 1, "upsert") for n in range(PUMPED_MIN_RECORDS)]
    group = session.submit("ns", first)  # a group leaves at once: nothing was in flight to ask about
    for n in range(PUMPED_MIN_RECORDS - 1):  # fewer than a group's worth wait: its answer is not asked for
        session.submit("ns", [GuardedWrite("ns", f"r{n}", 1, "upsert")])
    assert _CountedAnswer.asked == 0
    assert not group.done()
    session.submit("ns", [GuardedWrite("ns", "last", 1, "upsert")])  # now a group could leave: asked, read
    assert _CountedAnswer.asked == 1
    assert group.done()
    session.close()
    assert pool.submitted == 0  # the second group's answer read at the seal, on this thread
    pool.shutdown()


def test_a_pumped_group_with_a_refused_record_is_decided_on_a_claim_thread_from_the_answer_read() -> None:
    """A refusal needs more round trips (the rest sent again, the refused ones read under the lock): a claim thread
    goes on from the answer the submitting thread read, and the verdicts are a drain's."""
    claimer, pool = _PumpedClaimer(refused={"held"}), _CountingPool()
    session = ClaimSession(claimer, pool, Lease("t", 10**13), lambda: False, pumped=True)  # type: ignore[arg-type]
    writes = [GuardedWrite("ns", record_id, 7, "upsert") for record_id in ("a", "held", "b")]
    verdicts = session.submit("ns", writes)
    session.close()
    assert verdicts.result() == {
        ("ns", "a"): Verdict.CLAIMED,
        ("ns", "held"): Verdict.BUSY,
        ("ns", "b"): Verdict.CLAIMED,
    }
    assert claimer.continued_on
    assert threading.current_thread() not in claimer.continued_on
    pool.shutdown()
