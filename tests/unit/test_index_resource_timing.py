"""Whether the answer to CloudFormation still fits in the invocation when every attempt to send it, and
the hand-over to the next invocation, take their longest (an injected clock; no network)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.unit.index_fakes import INVOCATION_SECONDS, URL, Clock, FakeIndexes, create_event
from vector_relay.operations.index_resource import (
    HAND_OVER_WORST_CASE_SECONDS,
    RESERVE_SECONDS,
    SEND_ATTEMPTS,
    SEND_TIMEOUT_SECONDS,
    handle,
    send_response,
    send_worst_case_seconds,
)


class TimingOut:
    """urlopen against an S3 that never answers: each attempt connects slowly, then waits for an answer
    that does not come (each step just inside the timeout), on the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.attempts = 0

    def __call__(self, request: Any, *, timeout: float) -> Any:
        self.attempts += 1
        self.clock.sleep(2 * timeout)
        raise TimeoutError("timed out")


def test_sending_the_answer_takes_at_most_its_worst_case_and_the_reserve_covers_it() -> None:
    clock = Clock()
    opener = TimingOut(clock)

    with pytest.raises(TimeoutError):
        send_response(URL, {"Status": "SUCCESS"}, opener=opener, sleep=clock.sleep)

    # 3 attempts of 15 s to connect and 15 s for the answer, 1 s and 2 s between them
    assert (opener.attempts, SEND_TIMEOUT_SECONDS) == (SEND_ATTEMPTS, 15.0) == (3, 15.0)
    assert clock() == send_worst_case_seconds() == 93.0
    assert HAND_OVER_WORST_CASE_SECONDS + clock() <= RESERVE_SECONDS


def test_an_index_ready_at_the_last_poll_is_still_answered_before_the_invocation_ends() -> None:
    # GIVEN the poll times of a wait that never ends (to find the last poll one invocation makes)
    probe_clock = Clock()
    never = FakeIndexes(probe_clock, ready_at=float("inf"))
    handle(
        create_event(),
        admin=lambda: never,
        time_left=lambda: INVOCATION_SECONDS - probe_clock(),
        respond=lambda body: pytest.fail("handed on, not answered"),
        reinvoke=lambda event: None,
        clock=probe_clock,
        sleep=probe_clock.sleep,
    )
    last_poll = never.describes[-1]

    # WHEN the index is Ready exactly at that poll, and then every attempt to answer times out
    clock = Clock()
    indexes = FakeIndexes(clock, ready_at=last_poll)
    opener = TimingOut(clock)
    with pytest.raises(TimeoutError):
        handle(
            create_event(),
            admin=lambda: indexes,
            time_left=lambda: INVOCATION_SECONDS - clock(),
            respond=lambda body: send_response(URL, body, opener=opener, sleep=clock.sleep),
            reinvoke=lambda event: pytest.fail("ready: answered, not handed on"),
            clock=clock,
            sleep=clock.sleep,
        )

    # THEN the last attempt ended before Lambda would have stopped the function
    assert indexes.describes[-1] == last_poll
    assert opener.attempts == SEND_ATTEMPTS
    assert clock() <= INVOCATION_SECONDS


def test_a_hand_over_that_fails_slowly_is_still_answered_before_the_invocation_ends() -> None:
    # GIVEN an index that stays Initializing, and a Lambda Invoke that fails after its longest time
    clock = Clock()
    indexes = FakeIndexes(clock, ready_at=float("inf"))
    opener = TimingOut(clock)

    def reinvoke(event: Mapping[str, Any]) -> None:
        clock.sleep(HAND_OVER_WORST_CASE_SECONDS)
        raise ConnectionError("Lambda did not answer")

    # WHEN the wait runs out and the hand-over fails: the handler answers FAILED, every attempt timing out
    with pytest.raises(TimeoutError):
        handle(
            create_event(),
            admin=lambda: indexes,
            time_left=lambda: INVOCATION_SECONDS - clock(),
            respond=lambda body: send_response(URL, body, opener=opener, sleep=clock.sleep),
            reinvoke=reinvoke,
            clock=clock,
            sleep=clock.sleep,
        )

    # THEN that too ended in time
    assert opener.attempts == SEND_ATTEMPTS
    assert clock() <= INVOCATION_SECONDS


def test_the_lifecycle_doc_states_the_reserve_the_code_keeps() -> None:
    text = (ROOT / "docs" / "index-lifecycle.md").read_text()

    assert f"`RESERVE_SECONDS` ({RESERVE_SECONDS:g} s)" in text
    assert f"profile, {HAND_OVER_WORST_CASE_SECONDS:g} s)" in text
    assert f"apart: {send_worst_case_seconds():g} s)" in text
