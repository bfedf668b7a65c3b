"""The settings a worker's timing rests on, checked against the function's timeout on its first invocation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools import Logger

from vector_relay.aws_clients import GUARD_PROFILE
from vector_relay.deadline import FINISH_SECONDS, MIN_REQUEST_SECONDS
from vector_relay.errors import ConfigurationError
from vector_relay.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(child=True)


class TimedEdge(Protocol):
    """What the check reads of the edge, and the flag it sets once the settings passed."""

    settings: Settings
    guarded: bool
    timing_checked: bool


def check_timing(context: LambdaContext | None, edge: TimedEdge) -> None:
    """On a container's first invocation: the settings that must hold together with the function's timeout.

    The first invocation's time left stands for the timeout. A mismatch is a ConfigurationError:
    the batch is retried (not dead-lettered) and the log says what to change.
    """
    if edge.timing_checked or context is None:
        return
    problems = timing_problems(
        edge.settings, guarded=edge.guarded, function_seconds=context.get_remaining_time_in_millis() / 1000
    )
    if problems:
        logger.error("settings do not hold together", extra={"problems": problems})
        raise ConfigurationError("; ".join(problems))
    edge.timing_checked = True


def timing_problems(settings: Settings, *, guarded: bool, function_seconds: float) -> list[str]:
    """What is wrong with the deadline, lease and timeout settings of a worker (docs/ordering.md)."""
    margin = settings.deadline_margin_ms / 1000
    problems = []
    if margin + MIN_REQUEST_SECONDS >= function_seconds:
        problems.append(
            f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) leaves less than {MIN_REQUEST_SECONDS:g} s "
            f"for Pinecone in a {function_seconds:.1f} s invocation"
        )
    if guarded:
        claim_overrun = GUARD_PROFILE.worst_case_seconds - MIN_REQUEST_SECONDS + FINISH_SECONDS
        if margin < claim_overrun:
            problems.append(
                f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) must be at least {claim_overrun * 1000:.0f}: "
                "a version-guard claim started just before the deadline must end before the invocation returns"
            )
        cover = margin + settings.write_version_lease_slack_seconds
        if cover < settings.pinecone_request_timeout_seconds:
            problems.append(
                f"DEADLINE_MARGIN_MS ({settings.deadline_margin_ms}) + WRITE_VERSION_LEASE_SLACK_SECONDS "
                f"({settings.write_version_lease_slack_seconds:g}) = {cover:g} s must be at least "
                f"PINECONE_REQUEST_TIMEOUT_SECONDS ({settings.pinecone_request_timeout_seconds:g}): the lease "
                "must cover a request sent at the deadline for as long as one attempt may take"
            )
    return problems
