"""Settings that must hold together are refused at cold start, with the variables named (docs/ordering.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import FakeLambdaContext
from vector_relay.aws_clients import GUARD_PROFILE
from vector_relay.errors import ConfigurationError
from vector_relay.settings import Settings
from vector_relay.sqs.timing import check_timing, timing_problems

BASE = {"pinecone_secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:k", "pinecone_index_host": "https://h"}


def settings(**values: Any) -> Settings:
    return Settings(**BASE, **values)


def test_the_defaults_hold_together_in_every_function_of_the_template() -> None:
    assert timing_problems(settings(), guarded=True, function_seconds=30) == []
    assert timing_problems(settings(), guarded=True, function_seconds=60) == []
    settings().check_rotation_timing()


def test_a_grace_shorter_than_the_cache_ttl_plus_the_longest_worker_timeout_is_refused() -> None:
    with pytest.raises(ConfigurationError) as refused:
        settings(key_revocation_grace_seconds=359).check_rotation_timing()
    settings(key_revocation_grace_seconds=360).check_rotation_timing()
    message = str(refused.value)
    assert "KEY_REVOCATION_GRACE_SECONDS (359)" in message
    assert "API_KEY_CACHE_TTL_SECONDS (300)" in message
    assert "WORKER_MAX_TIMEOUT_SECONDS (60) = 360" in message


def test_a_margin_that_leaves_pinecone_no_time_is_refused() -> None:
    [problem] = timing_problems(settings(deadline_margin_ms=5000), guarded=False, function_seconds=6)
    assert problem.startswith("DEADLINE_MARGIN_MS (5000) leaves less than 1 s")
    assert timing_problems(settings(deadline_margin_ms=5000), guarded=False, function_seconds=6.5) == []


def test_with_the_guard_a_claim_at_the_deadline_must_end_before_the_return() -> None:
    assert GUARD_PROFILE.worst_case_seconds == 2.0  # one attempt, 0.5 s to connect, 1.5 s to answer
    late = settings(deadline_margin_ms=1499, pinecone_request_timeout_seconds=1)
    [problem] = timing_problems(late, guarded=True, function_seconds=30)
    assert "must be at least 1500" in problem
    assert timing_problems(late, guarded=False, function_seconds=30) == []  # no guard, no claims
    assert (
        timing_problems(
            settings(deadline_margin_ms=1500, pinecone_request_timeout_seconds=1), guarded=True, function_seconds=30
        )
        == []
    )


def test_with_the_guard_the_lease_covers_an_attempt_sent_at_the_deadline() -> None:
    short = settings(deadline_margin_ms=2000, write_version_lease_slack_seconds=1, pinecone_request_timeout_seconds=10)
    [problem] = timing_problems(short, guarded=True, function_seconds=30)
    assert "= 3 s must be at least PINECONE_REQUEST_TIMEOUT_SECONDS (10)" in problem
    enough = settings(deadline_margin_ms=2000, write_version_lease_slack_seconds=8, pinecone_request_timeout_seconds=10)
    assert timing_problems(enough, guarded=True, function_seconds=30) == []


class Deps:
    """The fields of the edge check_timing reads."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.settings = settings(**values)
        self.guarded = True
        self.timing_checked = False


def test_a_worker_checks_on_its_first_invocation_only_and_raises_a_configuration_error() -> None:
    bad = Deps({"deadline_margin_ms": 1000})
    with pytest.raises(ConfigurationError, match="DEADLINE_MARGIN_MS"):
        check_timing(FakeLambdaContext(remaining_ms=30_000), bad)  # type: ignore[arg-type]
    assert not bad.timing_checked  # and again on the next invocation: the batch is retried until fixed

    good = Deps({})
    check_timing(FakeLambdaContext(remaining_ms=30_000), good)  # type: ignore[arg-type]
    assert good.timing_checked
    check_timing(FakeLambdaContext(remaining_ms=1), good)  # type: ignore[arg-type]  # late in a warm run: no check
