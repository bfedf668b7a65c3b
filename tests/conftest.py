"""Fixtures every test shares: a clean environment, fresh caches, Lambda's context, sample events, moto's server."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from relay_local.moto_server import MotoServer
from vector_relay.aws_clients import clear_client_caches
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings
from vector_relay.tracing import reset_tracing

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"

# Property tests judge results, never speed: no per-example deadline, and no "too slow" health check
# (data generation slows down on a busy machine; that is not a failure of the code under test).
settings.register_profile("vector-relay", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vector-relay")

# The deployment the sample events assume (events/README.md).
SAMPLE_TENANTS = {"acme": "tenant-acme", "globex": "tenant-globex"}
SAMPLE_DIMENSION = 384
SAMPLE_REPLY_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/vector-relay-example-replies"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake AWS credentials, no stray AWS configuration, tracing off (tests/xray_tracing.py turns it on), and
    settings and clients rebuilt for each test."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "tests")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    _clear_caches()
    yield
    _clear_caches()


def _clear_caches() -> None:
    get_settings.cache_clear()
    reset_tracing()
    reset_worker_dependencies()
    clear_client_caches()


@dataclass
class FakeLambdaContext:
    """What handlers read from Lambda's context object."""

    function_name: str = "vector-relay-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:vector-relay-test"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/, by file name without .json."""
    return json.loads((EVENTS / f"{name}.json").read_text())


def wait_until(condition: Callable[[], bool], what: str, *, ceiling: float = 120.0, poll: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail after ``ceiling`` seconds (generous: a verdict, not a race)."""
    deadline = time.monotonic() + ceiling
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not met within {ceiling:.0f} s"
        time.sleep(poll)


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """moto's server as the local stack runs it (relay_local.moto_server: DynamoDB requests applied
    atomically) on a loopback port the OS picks (port 0) for the whole session; state is reset per test.
    """
    server = MotoServer(port=0)
    yield server.url
    server.stop()


def reset_moto(moto_server_url: str) -> None:
    """Empty moto's backends. They are global to the process: the local stack's own moto server
    (started in-process by the demo and stack tests) sees what earlier tests left, and vice versa."""
    with urllib.request.urlopen(urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST"), timeout=10):
        pass


@pytest.fixture
def aws(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every boto3 client in the test talks to a freshly reset moto server, over HTTP."""
    reset_moto(moto_server_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    _clear_caches()
    return moto_server_url


@pytest.fixture
def sample_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings for the deployment the sample events assume (no DLQ URL: tests that need one set it)."""
    monkeypatch.setenv("PINECONE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:pinecone-AbCdEf")
    monkeypatch.setenv("PINECONE_INDEX_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("PINECONE_INDEX_DIMENSION", str(SAMPLE_DIMENSION))
    monkeypatch.setenv("PINECONE_INDEX_METRIC", "cosine")
    monkeypatch.setenv("TENANT_REGISTRY", json.dumps(SAMPLE_TENANTS))
    monkeypatch.setenv("REPLY_QUEUE_ALLOW_LIST", SAMPLE_REPLY_QUEUE)
