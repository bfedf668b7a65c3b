"""The gateway, not the SDK, retries Pinecone requests: every attempt is on the wire and counted.

SDK 10.2.0 retries data-plane requests inside its HTTP transport with no setting to stop it;
``disable_sdk_retries`` reaches into it. These tests fail if the SDK's internals move (the
attempt counts would go back to four) and pin what an attempt that may have landed means.
"""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from pinecone import AsyncIndex, Pinecone, ServerlessSpec
from pinecone._internal.http_client import get_budget_registry

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay.errors import FailureKind
from vector_relay.pinecone.data_plane import CallResult, PineconeGateway, disable_sdk_retries
from vector_relay.pinecone.errors import PineconeRequestError
from vector_relay.pinecone.wire import EncodedRecord

RECORDS = [{"id": "a", "values": [1.0, 0.0]}]
ENCODED = [EncodedRecord("a", 1, None, size=0, encoded=orjson.dumps(record)) for record in RECORDS]


@pytest.fixture
def host(pinecone_emulator: EmulatorHandle) -> str:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("retries", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    client.close()
    return pinecone_emulator.index_host("retries")


class Waits:
    """The back-off waits asked for, without waiting them out."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0)


# Attempts here never time out, however busy the machine: the counts below are the gateway's
# retry decisions, not a race between an attempt's timeout and a slow answer.
ATTEMPT_TIMEOUT = 300.0


def upsert(host: str, api_key: str, *, max_attempts: int, waits: Waits, timeout: float = 600) -> CallResult:
    async def call() -> CallResult:
        gateway = PineconeGateway(
            host=host,
            api_key=api_key,
            attempt_timeout=ATTEMPT_TIMEOUT,
            max_attempts=max_attempts,
            sleep=waits,
            rng=random.Random(7),
        )
        try:
            return await gateway.upsert("ns", ENCODED, timeout=timeout)
        finally:
            await gateway.close()

    return asyncio.run(call())


def test_the_sdk_makes_one_attempt_per_call_once_its_retries_are_off(
    pinecone_emulator: EmulatorHandle, host: str
) -> None:
    control = pinecone_emulator.control
    control.add_fault("upsert", status=503, retry_after=0)

    async def attempts(disable: bool) -> int:
        control.clear_counters()
        get_budget_registry()._reset()  # the SDK stops retrying a host after ~50 failures in a process
        index = AsyncIndex(host=host, api_key=pinecone_emulator.api_key)
        if disable:
            disable_sdk_retries(index)
        with pytest.raises(Exception, match="503"):
            await index.upsert(vectors=RECORDS, namespace="ns")
        await index.close()
        return control.count(operation="upsert")

    assert asyncio.run(attempts(disable=False)) == 4  # the SDK's own retries, which this project turns off
    assert asyncio.run(attempts(disable=True)) == 1


def test_disabling_after_the_first_call_is_refused(pinecone_emulator: EmulatorHandle, host: str) -> None:
    async def call() -> None:
        index = AsyncIndex(host=host, api_key=pinecone_emulator.api_key)
        await index.describe_index_stats()  # the SDK has built its HTTP client with retries on
        try:
            with pytest.raises(RuntimeError, match="cannot turn off"):
                disable_sdk_retries(index)
        finally:
            await index.close()

    asyncio.run(call())


def test_a_5xx_then_success_lands_but_is_marked_uncertain(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.script("upsert", {"status": 503}, {"status": 500}, "ok")
    waits = Waits()

    result = upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=waits)

    assert (result.attempts, result.uncertain) == (3, True)
    assert pinecone_emulator.control.count(operation="upsert") == 3
    assert len(waits.asked) == 2
    assert 0 <= waits.asked[0] <= 0.25  # full jitter: up to 0.25 s, then up to 0.5 s
    assert 0 <= waits.asked[1] <= 0.5


def test_a_dropped_connection_then_success_is_uncertain(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.script("upsert", "drop", "ok")

    result = upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=Waits())

    assert (result.attempts, result.uncertain) == (2, True)


def test_a_429_is_retried_after_retry_after_and_is_certain(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.script("upsert", {"status": 429, "retry_after": "2"}, "ok")
    waits = Waits()

    result = upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=waits)

    assert (result.attempts, result.uncertain) == (2, False)  # a throttled attempt was never applied
    assert waits.asked == [2.0]


def test_attempts_stop_at_max_attempts(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.add_fault("upsert", status=503)

    with pytest.raises(PineconeRequestError) as failed:
        upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=Waits())

    assert failed.value.kind is FailureKind.TRANSIENT
    assert failed.value.uncertain
    assert pinecone_emulator.control.count(operation="upsert") == 3


def test_a_retry_after_past_the_deadline_is_not_waited_for(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.script("upsert", {"status": 429, "retry_after": "3600"}, "ok")
    waits = Waits()

    with pytest.raises(PineconeRequestError) as failed:
        upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=waits, timeout=120)

    assert failed.value.status == 429
    assert waits.asked == []  # SQS redelivers it instead
    assert pinecone_emulator.control.count(operation="upsert") == 1


def test_a_rejected_request_is_not_retried(pinecone_emulator: EmulatorHandle, host: str) -> None:
    pinecone_emulator.control.script("upsert", {"status": 400, "message": "bad record"})

    with pytest.raises(PineconeRequestError) as failed:
        upsert(host, pinecone_emulator.api_key, max_attempts=3, waits=Waits())

    assert failed.value.kind is FailureKind.REJECTED
    assert pinecone_emulator.control.count(operation="upsert") == 1
