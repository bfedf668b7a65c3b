"""Each AWS call of an invocation gets the most patient client that still ends before the invocation must."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vector_relay.aws_clients import (
    AWS_PROFILES,
    GUARD_PROFILE,
    fits,
    s3_client,
    secrets_client,
    sqs_client,
    ssm_client,
)
from vector_relay.deadline import aws_time_left, invocation_deadline
from vector_relay.errors import OutOfTimeError, TransientError

FACTORIES = [sqs_client, ssm_client, secrets_client, s3_client]


def frozen() -> float:
    return 1000.0


def test_worst_cases_count_every_attempt_timeout_and_the_longest_back_offs() -> None:
    # 3 x (3 + 10) s, then back-offs of up to 1 s and 2 s, each up to 5 s longer with x-amz-retry-after
    assert [p.worst_case_seconds for p in AWS_PROFILES] == [52, 16, 3]
    assert GUARD_PROFILE.worst_case_seconds == 2


@pytest.mark.parametrize(
    ("seconds_left", "attempts", "read_timeout"),
    [(600, 3, 10), (52, 3, 10), (51.9, 2, 4), (16, 2, 4), (15.9, 1, 2), (3, 1, 2)],
)
@pytest.mark.parametrize("factory", FACTORIES)
def test_the_client_handed_out_fits_the_time_left(
    factory: Callable[[], Any], seconds_left: float, attempts: int, read_timeout: float
) -> None:
    with invocation_deadline(seconds_left, clock=frozen):
        assert aws_time_left() == pytest.approx(seconds_left)
        client = factory()
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": attempts}
    assert client.meta.config.read_timeout == read_timeout


@pytest.mark.parametrize("factory", FACTORIES)
def test_with_too_little_time_left_no_client_is_handed_out(factory: Callable[[], Any]) -> None:
    with invocation_deadline(2.9, clock=frozen), pytest.raises(OutOfTimeError, match=r"2\.9 s of the invocation left"):
        factory()
    assert issubclass(OutOfTimeError, TransientError)  # the message stays on its queue and is retried


def test_outside_an_invocation_the_most_patient_client_is_used() -> None:
    assert aws_time_left() is None
    assert fits(AWS_PROFILES[0])
    assert sqs_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_the_guard_release_fits_only_with_two_seconds_left() -> None:
    with invocation_deadline(2, clock=frozen):
        assert fits(GUARD_PROFILE)
    with invocation_deadline(1.9, clock=frozen):
        assert not fits(GUARD_PROFILE)


def test_the_deadline_follows_into_threads_started_by_asyncio() -> None:
    import asyncio

    async def read_in_thread() -> float | None:
        return await asyncio.to_thread(aws_time_left)

    with invocation_deadline(42, clock=frozen):
        assert asyncio.run(read_in_thread()) == 42  # key reads during a 401 refresh run this way
