"""AWS clients, built on first use and reused across warm invocations, each call bounded by the time left.

Built lazily (not at import) so moto or the local stack is in place before a client exists; tests
call :func:`clear_client_caches`. ``AWS_ENDPOINT_URL`` (read by boto3 itself) points every client
at the local stack.

**Time-boxed calls.** botocore has no per-call deadline: a client's worst case is fixed by its
config (attempts, connect and read timeouts, back-off between attempts). So each service has a few
clients, one per :class:`CallProfile`, and while an invocation runs (:func:`vector_relay.deadline.invocation_deadline`,
set by the batch processor) every factory hands out the most patient client whose worst case still
ends before the invocation must return. With too little time left for even one short attempt it
raises :class:`OutOfTimeError` (transient: the message stays on its queue, or the best-effort call
is skipped), so no AWS call can carry an invocation past Lambda's timeout. Outside an invocation
(scripts, the rotation function, tests) the most patient client is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from vector_relay.deadline import aws_time_left
from vector_relay.errors import OutOfTimeError

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

# botocore's standard retry mode waits rand(0, 1) x min(2 ** (n - 1), 20) s before retry n (1 s
# base for throttling, less otherwise) and, when the answer carries x-amz-retry-after, up to 5 s
# more (botocore/retries/standard.py, ExponentialBackoff.delay_amount). The worst case counts both.
_MAX_BACKOFF_SECONDS = 20
_RETRY_AFTER_EXTRA_SECONDS = 5


@dataclass(frozen=True, slots=True)
class CallProfile:
    """How patient one AWS client is: attempts in all (``total_max_attempts``) and per-attempt timeouts."""

    attempts: int
    connect_timeout: float
    read_timeout: float

    @property
    def worst_case_seconds(self) -> float:
        """Every attempt runs into both timeouts, and every back-off is the longest botocore can choose.

        (``read_timeout`` bounds each wait for data, not the whole answer; AWS's answers to these
        calls are small, read in one go.)
        """
        backoffs = sum(
            min(1 << retry, _MAX_BACKOFF_SECONDS) + _RETRY_AFTER_EXTRA_SECONDS for retry in range(self.attempts - 1)
        )
        return self.attempts * (self.connect_timeout + self.read_timeout) + backoffs

    def config(self, **extra: Any) -> Config:
        return Config(
            retries={"mode": "standard", "total_max_attempts": self.attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            **extra,
        )


# From the most patient to the briefest. The first: the first and two jittered retries of
# throttling, 5xx and connection errors; ``total_max_attempts`` counts attempts, where botocore's
# ``max_attempts`` would count retries.
AWS_PROFILES = (
    CallProfile(attempts=3, connect_timeout=3, read_timeout=10),  # worst case 52 s
    CallProfile(attempts=2, connect_timeout=1, read_timeout=4),  # 16 s
    CallProfile(attempts=1, connect_timeout=1, read_timeout=2),  # 3 s
)

# The version guard writes claims under a short lock only while LOCK_WRITE_MARGIN_SECONDS of it
# remain, so one DynamoDB call must end well inside that: one attempt (a failure is retried by SQS),
# at most 0.5 s to connect and 1.5 s to answer. Its parameters are built by code, so botocore's
# validation of them is skipped (it costs about a fifth of the client's time per request).
GUARD_PROFILE = CallProfile(attempts=1, connect_timeout=0.5, read_timeout=1.5)
GUARD_CONFIG = GUARD_PROFILE.config(parameter_validation=False)


def fits(profile: CallProfile) -> bool:
    """Whether a call with ``profile`` is sure to end before the current invocation must return."""
    left = aws_time_left()
    return left is None or profile.worst_case_seconds <= left


def _profile_now(what: str) -> CallProfile:
    for profile in AWS_PROFILES:
        if fits(profile):
            return profile
    left = max(aws_time_left() or 0.0, 0.0)
    briefest = AWS_PROFILES[-1].worst_case_seconds
    raise OutOfTimeError(
        f"{what} not called: {left:.1f} s of the invocation left, the briefest call may take {briefest:g} s"
    )


@cache
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def _client(service: str, profile: CallProfile) -> Any:
    return _session().client(service, config=profile.config())  # type: ignore[call-overload]


def sqs_client() -> SQSClient:
    return _client("sqs", _profile_now("SQS"))  # type: ignore[no-any-return]


def ssm_client() -> SSMClient:
    return _client("ssm", _profile_now("SSM"))  # type: ignore[no-any-return]


def secrets_client() -> SecretsManagerClient:
    return _client("secretsmanager", _profile_now("Secrets Manager"))  # type: ignore[no-any-return]


def s3_client() -> S3Client:
    return _client("s3", _profile_now("S3"))  # type: ignore[no-any-return]


def lambda_client() -> LambdaClient:
    return _client("lambda", _profile_now("Lambda"))  # type: ignore[no-any-return]


@cache
def dynamodb_client() -> DynamoDBClient:
    """The version guard's client (one short attempt per call; the guard checks the time left itself)."""
    return _session().client("dynamodb", config=GUARD_CONFIG)


def aws_credentials() -> Credentials | None:
    """The shared session's credentials (the function role's, from the environment in Lambda)."""
    return _session().get_credentials()


def load_service_models(services: tuple[str, ...]) -> None:
    """Load these services' models into the shared session (a client is built and dropped; no connection)."""
    for service in services:
        _session().client(service)  # type: ignore[call-overload]


def forget_clients() -> None:
    """Build every AWS client again on next use (after a SnapStart restore: their pools are stale).

    The session stays: it holds the loaded service models, so the new clients are cheap to make.
    """
    _client.cache_clear()
    dynamodb_client.cache_clear()


def clear_client_caches() -> None:
    """Forget every cached client and the session (tests: each starts with moto active and no client built)."""
    for factory in (_session, _client, dynamodb_client):
        factory.cache_clear()
