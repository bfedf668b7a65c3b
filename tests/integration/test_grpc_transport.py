"""The gateway over gRPC (PINECONE_TRANSPORT=grpc): one attempt per try on the wire, faults classified.

The SDK's gRPC client is built with its retries off (its public ``retry_config``), so every
attempt the emulator counts is one the gateway made; the gRPC deadline of an attempt is the time
the call has left. Faults come from the emulator's fault plan, served as gRPC statuses.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from pinecone import Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay.errors import FailureKind
from vector_relay.pinecone.data_plane import CallResult, PineconeGateway
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.pinecone.wire import EncodedRecord

RECORDS = [
    EncodedRecord("a", 1, None, size=0, grpc={"id": "a", "values": [1.0, 0.0], "metadata": {"_relay_version": "1"}})
]


@pytest.fixture
def grpc_host(pinecone_emulator: EmulatorHandle) -> str:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("grpc", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    client.close()
    return pinecone_emulator.control.grpc_host("grpc")


def upsert(
    host: str, api_key: str, *, max_attempts: int, timeout: float = 600, attempt_timeout: float = 300
) -> CallResult:
    """One gateway upsert over gRPC. By default no attempt times out, however busy the machine, so the
    attempt counts the tests assert are the gateway's retry decisions, not races with a slow answer."""

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    async def call() -> CallResult:
        gateway = PineconeGateway(
            host="https://unused.example",
            grpc_host=host,
            transport="grpc",
            api_key=api_key,
            attempt_timeout=attempt_timeout,
            max_attempts=max_attempts,
            sleep=no_wait,
            rng=random.Random(3),
        )
        try:
            return await gateway.upsert("ns", RECORDS, timeout=timeout)
        finally:
            await gateway.close()

    return asyncio.run(call())


def test_an_upsert_over_grpc_lands_in_one_attempt(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    result = upsert(grpc_host, pinecone_emulator.api_key, max_attempts=3)

    assert (result.attempts, result.uncertain) == (1, False)
    assert pinecone_emulator.control.count(operation="upsert", status=200) == 1


def test_with_no_grpc_host_the_gateway_dials_the_index_host(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    # PINECONE_GRPC_HOST unset: gRPC goes to PINECONE_INDEX_HOST, which serves REST and gRPC, as Pinecone's does
    index_host = pinecone_emulator.index_host("grpc")

    async def call() -> CallResult:
        gateway = PineconeGateway(
            host=index_host, transport="grpc", api_key=pinecone_emulator.api_key, attempt_timeout=300
        )
        try:
            return await gateway.upsert("ns", RECORDS, timeout=600)
        finally:
            await gateway.close()

    result = asyncio.run(call())

    assert result.attempts == 1
    assert grpc_host == index_host  # the control endpoint names the same host
    assert pinecone_emulator.control.counters()["by_transport"] == {"grpc": 1}


def test_an_unavailable_storm_is_tried_max_attempts_times_then_transient_and_uncertain(
    pinecone_emulator: EmulatorHandle, grpc_host: str
) -> None:
    pinecone_emulator.control.add_fault("upsert", status=503)  # served as UNAVAILABLE

    with pytest.raises(PineconeRequestError) as failed:
        upsert(grpc_host, pinecone_emulator.api_key, max_attempts=3)

    assert failed.value.kind is FailureKind.TRANSIENT
    assert failed.value.retryable
    assert failed.value.uncertain  # a 5xx: the write may still land
    assert pinecone_emulator.control.count(operation="upsert") == 3  # the SDK added none of its own


def test_unavailable_then_success_lands_and_is_marked_uncertain(
    pinecone_emulator: EmulatorHandle, grpc_host: str
) -> None:
    pinecone_emulator.control.script("upsert", {"status": 503}, "ok")

    result = upsert(grpc_host, pinecone_emulator.api_key, max_attempts=3)

    assert (result.attempts, result.uncertain) == (2, True)


def test_resource_exhausted_is_retried_and_certain(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    pinecone_emulator.control.script("upsert", {"status": 429}, "ok")

    result = upsert(grpc_host, pinecone_emulator.api_key, max_attempts=3)

    assert (result.attempts, result.uncertain) == (2, False)  # throttled before the write


def test_invalid_argument_is_rejected_not_retried(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    pinecone_emulator.control.add_fault("upsert", status=400, message="scripted rejection")

    with pytest.raises(PineconeRequestError) as failed:
        upsert(grpc_host, pinecone_emulator.api_key, max_attempts=3)

    assert failed.value.kind is FailureKind.REJECTED
    assert pinecone_emulator.control.count(operation="upsert") == 1


def test_unauthenticated_is_an_auth_failure(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    with pytest.raises(PineconeRequestError) as failed:
        upsert(grpc_host, "not-a-key", max_attempts=3)

    assert failed.value.kind is FailureKind.AUTH
    assert "not-a-key" not in str(failed.value)


def test_the_attempt_deadline_is_the_time_the_call_has_left(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    # GIVEN an index that answers only after 20 s, and a call with 2 s left (attempt timeout 10 s)
    pinecone_emulator.control.add_fault("upsert", latency_ms=20_000)

    # THEN the attempt's gRPC deadline is cut to what is left: the call fails as not answered in time
    # (had the attempt run to its 10 s timeout or the answer, it would have succeeded or taken 20 s)
    with pytest.raises(PineconeRequestError) as failed:
        upsert(grpc_host, pinecone_emulator.api_key, max_attempts=1, timeout=2, attempt_timeout=10)

    assert failed.value.kind is FailureKind.TRANSIENT
    assert failed.value.uncertain
