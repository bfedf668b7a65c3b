"""Read-your-writes: a query with min_lsn is asked again, with back-off, until the index reaches it or time runs out.

Time is a clock the test owns: the injected sleep moves it, so every wait here takes no wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.contract.messages import QueryMessage
from vector_relay.deadline import MIN_REQUEST_SECONDS, Deadline
from vector_relay.errors import FailureKind
from vector_relay.pinecone.data_plane import QueryResult
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.query.freshness import (
    FIRST_DELAY_SECONDS,
    MAX_DELAY_SECONDS,
    Answer,
    Pacing,
    query_until_fresh,
    reached,
)
from vector_relay.query.replies import ok_reply


class Clock:
    """Seconds on a monotonic clock that only the injected sleep moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)  # the batch's other queries run during the wait, as they would in a real one
        self.now += seconds


class Index:
    """Answers each attempt with the next indexed LSN of ``lsns`` (the last one again once they run out)."""

    def __init__(self, clock: Clock, deadline: Deadline, lsns: list[int | None], name: str = "q") -> None:
        self.clock = clock
        self.deadline = deadline
        self.lsns = lsns
        self.name = name
        self.attempts: list[tuple[str, float]] = []  # (query, time left when it was sent)
        self.fail_from: int | None = None  # attempts from this one (1, 2, ...) fail transiently

    def lsn_at(self, attempt: int) -> int | None:
        return self.lsns[min(attempt, len(self.lsns)) - 1]

    async def attempt(self) -> QueryResult | PineconeRequestError:
        self.attempts.append((self.name, self.deadline.left()))
        number = len(self.attempts)
        if self.fail_from is not None and number >= self.fail_from:
            return PineconeRequestError(FailureKind.TRANSIENT, "503 from Pinecone")
        lsn = self.lsn_at(number)
        matches = [{"id": f"seen-at-{lsn}", "score": 0.9}]
        return QueryResult(matches=matches, read_units=2, elapsed_ms=12.0, indexed_lsn=lsn)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pacing(clock: Clock, seed: int = 7) -> Pacing:
    return Pacing(sleep=clock.sleep, rng=random.Random(seed))


def run(
    index: Index, min_lsn: int | None, clock: Clock, deadline: Deadline, slots: int = 4
) -> Answer | PineconeRequestError:
    async def go() -> Answer | PineconeRequestError:
        return await query_until_fresh(index.attempt, min_lsn, deadline, asyncio.Semaphore(slots), pacing(clock))

    return asyncio.run(go())


def answer(outcome: Answer | PineconeRequestError) -> Answer:
    assert isinstance(outcome, Answer), outcome
    return outcome


# ------------------------------------------------------------------------------------------ the answers
def test_a_query_without_min_lsn_is_asked_once_and_says_nothing_of_freshness(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [3])

    got = answer(run(index, None, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn) == (None, 3)
    assert len(index.attempts) == 1
    assert clock.waits == []


def test_an_index_already_at_min_lsn_is_fresh_at_once(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [9])

    got = answer(run(index, 9, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn) == (True, 9)
    assert clock.waits == []


def test_a_lagging_index_is_asked_again_until_it_reaches_min_lsn(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [3, 5, 8, 9, 12])

    got = answer(run(index, 9, clock, deadline))

    assert got.fresh is True
    assert got.result.indexed_lsn == 9
    assert got.result.matches == [{"id": "seen-at-9", "score": 0.9}]  # the matches of the answer that got there
    assert got.result.read_units == 2 * 4  # every attempt was a query Pinecone billed
    assert len(clock.waits) == 3
    for retry, wait in enumerate(clock.waits):  # 50 ms doubling, each drawn in the upper half of its step
        step = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2**retry)
        assert step / 2 <= wait <= step


def test_when_the_deadline_comes_first_the_last_matches_go_back_not_fresh_with_the_lsn_seen(clock: Clock) -> None:
    deadline = Deadline(6, clock)
    index = Index(clock, deadline, [3, 4, 5])  # never reaches 9

    got = answer(run(index, 9, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn) == (False, 5)
    assert got.result.matches == [{"id": "seen-at-5", "score": 0.9}]
    assert len(index.attempts) > 3
    # every attempt had room to run, and the waiting stopped when another would not have had it
    assert all(left >= MIN_REQUEST_SECONDS for _, left in index.attempts)
    assert deadline.left() >= MIN_REQUEST_SECONDS
    assert deadline.left() < MIN_REQUEST_SECONDS + MAX_DELAY_SECONDS
    assert max(clock.waits) <= MAX_DELAY_SECONDS


def test_a_deadline_too_close_for_even_one_wait_answers_the_first_result(clock: Clock) -> None:
    deadline = Deadline(MIN_REQUEST_SECONDS + 0.01, clock)
    index = Index(clock, deadline, [3, 9])

    got = answer(run(index, 9, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn, len(index.attempts)) == (False, 3, 1)


def test_no_lsn_from_pinecone_grpc_is_not_fresh_and_not_waited_for(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [None])

    got = answer(run(index, 0, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn) == (False, None)
    assert len(index.attempts) == 1
    assert clock.waits == []


def test_the_first_attempts_failure_is_the_querys(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [3])
    index.fail_from = 1

    got = run(index, 9, clock, deadline)

    assert isinstance(got, PineconeRequestError)
    assert got.kind is FailureKind.TRANSIENT


def test_a_later_attempts_failure_ends_the_wait_with_the_answer_in_hand(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    index = Index(clock, deadline, [3, 4, 9])
    index.fail_from = 3

    got = answer(run(index, 9, clock, deadline))

    assert (got.fresh, got.result.indexed_lsn, got.result.read_units) == (False, 4, 4)


def test_no_attempt_starts_with_less_than_the_least_request_time_left(clock: Clock) -> None:
    deadline = Deadline(MIN_REQUEST_SECONDS / 2, clock)
    index = Index(clock, deadline, [9])

    got = run(index, 9, clock, deadline)

    assert isinstance(got, PineconeRequestError)
    assert got.kind is FailureKind.DEADLINE
    assert index.attempts == []


# -------------------------------------------------------------------------------------- its batch mates
def test_a_waiting_query_holds_no_pinecone_slot_while_it_waits(clock: Clock) -> None:
    deadline = Deadline(20, clock)
    waiting = Index(clock, deadline, [1, 2, 3, 4, 9], name="waiting")
    plain = Index(clock, deadline, [1], name="plain")
    plain.attempts = waiting.attempts  # one log of who asked Pinecone, in order

    async def batch() -> list[Answer | PineconeRequestError]:
        slots = asyncio.Semaphore(1)  # one query at a time for the whole batch
        return list(
            await asyncio.gather(
                query_until_fresh(waiting.attempt, 9, deadline, slots, pacing(clock)),
                query_until_fresh(plain.attempt, None, deadline, slots, pacing(clock)),
            )
        )

    first, second = asyncio.run(batch())

    assert answer(first).fresh is True
    assert answer(second).fresh is None
    # the plain query was sent during the first wait (the clock had not moved yet), not after it
    assert waiting.attempts[:2] == [("waiting", 20.0), ("plain", 20.0)]


# ------------------------------------------------------------------------------------------------ pacing
@pytest.mark.parametrize("seed", range(20))
def test_waits_start_at_50_ms_double_and_stop_growing_at_one_second(seed: int) -> None:
    pace = Pacing(rng=random.Random(seed))
    assert 0.025 <= pace.delay(0) <= 0.05
    assert 0.05 <= pace.delay(1) <= 0.1
    assert 0.5 <= pace.delay(5) <= 1.0
    assert 0.5 <= pace.delay(10_000) <= 1.0  # no overflow however long it has waited


@pytest.mark.parametrize(
    ("indexed", "min_lsn", "fresh"), [(None, 0, False), (4, 5, False), (5, 5, True), (6, 5, True), (0, 0, True)]
)
def test_an_answer_reflects_the_writes_up_to_its_indexed_lsn(indexed: int | None, min_lsn: int, fresh: bool) -> None:
    assert reached(indexed, min_lsn) is fresh


# ------------------------------------------------------------------------------------------------ replies
@pytest.fixture
def record() -> SQSRecord:
    return SQSRecord({"messageId": "m-1", "body": "{}", "attributes": {}, "messageAttributes": {}})


def query(**fields: object) -> QueryMessage:
    body = {"schema_version": 1, "op": "query", "tenant": "acme", "reply_to": "r", "id": "a"} | fields
    return QueryMessage.model_validate(body)


@pytest.mark.parametrize(
    ("min_lsn", "indexed", "fresh", "expected"),
    [
        (None, 41, None, {"lsn": 41}),
        (None, None, None, {"lsn": None}),
        (40, 41, True, {"lsn": 41, "fresh": True}),
        (42, 41, False, {"lsn": 41, "fresh": False}),
        (0, None, False, {"lsn": None, "fresh": False}),
    ],
)
def test_an_ok_reply_carries_the_lsn_seen_and_fresh_only_for_min_lsn(
    record: SQSRecord, min_lsn: int | None, indexed: int | None, fresh: bool | None, expected: dict[str, object]
) -> None:
    result = QueryResult(matches=[{"id": "a", "score": 1.0}], read_units=1, elapsed_ms=1.0, indexed_lsn=indexed)

    body, stored = ok_reply(record, query(min_lsn=min_lsn), result, fresh)

    reply = json.loads(body)
    assert not stored
    assert {key: reply[key] for key in ("lsn", "fresh") if key in reply} == expected
    assert reply["matches"] == [{"id": "a", "score": 1.0}]
