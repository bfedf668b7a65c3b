"""Custom::PineconeIndex waiting for the index, with an in-memory index admin and an injected clock.

A describe that fails for a moment while the index comes up must not fail the stack; one that
fails for good must, naming the index it made, so the rollback's Delete finds it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.index_fakes import INVOCATION_SECONDS, Clock, FakeIndexes, create_event, unavailable
from vector_relay.errors import FailureKind
from vector_relay.operations.index_resource import RESERVE_SECONDS, Answer, handle
from vector_relay.pinecone.errors import PineconeRequestError


def test_a_transient_describe_error_while_waiting_is_polled_past_not_a_failed_stack() -> None:
    # GIVEN Pinecone answers the wait's first poll (describe 1 is the Create's own) with 503, after the
    # SDK's own retries, while the index comes up
    clock = Clock()
    indexes = FakeIndexes(clock, ready_at=3.0, fail=lambda call: unavailable() if call == 2 else None)
    answers: list[dict[str, Any]] = []

    # WHEN the Create runs
    answer = handle(
        create_event(),
        admin=lambda: indexes,
        time_left=lambda: INVOCATION_SECONDS - clock(),
        respond=answers.append,
        reinvoke=lambda event: pytest.fail("the wait fits in one invocation"),
        clock=clock,
        sleep=clock.sleep,
    )

    # THEN the failed poll was one more wait, and the stack heard SUCCESS once the index was Ready
    assert indexes.calls > 2
    assert answer is not None
    assert (answer.status, answer.physical_id) == ("SUCCESS", "relay-index")
    assert [body["Status"] for body in answers] == ["SUCCESS"]


def test_a_describe_error_that_is_not_transient_fails_with_the_index_s_id() -> None:
    # GIVEN the key is refused by the time the wait polls (revoked mid-deploy)
    clock = Clock()
    refused = PineconeRequestError(FailureKind.AUTH, "Pinecone 401: Unauthorized", status=401)
    indexes = FakeIndexes(clock, ready_at=3.0, fail=lambda call: refused if call == 2 else None)
    answers: list[dict[str, Any]] = []

    answer = handle(
        create_event(),
        admin=lambda: indexes,
        time_left=lambda: INVOCATION_SECONDS - clock(),
        respond=answers.append,
        reinvoke=lambda event: pytest.fail("not a wait"),
        clock=clock,
        sleep=clock.sleep,
    )

    # THEN the Create fails at once, and names the index it made, so the rollback's Delete finds it
    assert answer == Answer("FAILED", "Pinecone 401: Unauthorized", "relay-index", {})
    assert [(body["Status"], body["PhysicalResourceId"]) for body in answers] == [("FAILED", "relay-index")]


def test_describe_errors_until_time_runs_out_hand_the_wait_on_naming_the_error() -> None:
    # GIVEN a later round of the wait, and describe answering 503 every time
    clock = Clock()
    indexes = FakeIndexes(clock, ready_at=float("inf"), fail=lambda call: unavailable())
    indexes.create(name="relay-index", dimension=8, metric="cosine")
    handed_on: list[dict[str, Any]] = []
    waiting = {"started": 0.0, "rounds": 1, "physical_id": "relay-index", "message": "created index relay-index"}

    answer = handle(
        create_event(VectorRelayWait=waiting),
        admin=lambda: indexes,
        time_left=lambda: INVOCATION_SECONDS - clock(),
        respond=lambda body: pytest.fail("a new invocation answers"),
        reinvoke=handed_on.append,
        clock=clock,
        sleep=clock.sleep,
    )

    # THEN it polled on while time was left and handed the wait on (the 45-minute limit decides, not one 503)
    assert answer is None
    assert indexes.calls > 10
    [next_event] = handed_on
    assert next_event["VectorRelayWait"]["rounds"] == 2
    assert next_event["VectorRelayWait"]["physical_id"] == "relay-index"
    assert INVOCATION_SECONDS - clock() >= RESERVE_SECONDS  # the hand-over starts with the reserve intact
