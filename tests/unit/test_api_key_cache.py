"""The workers' key cache: TTL re-checks by version, the rotation marker, one re-read for many requests, AuthFailure."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import boto3
import pytest
from moto import mock_aws

from vector_relay.errors import ConfigurationError, FailureKind
from vector_relay.keys.api_key_cache import (
    FAILED_CHECK_RETRY_SECONDS,
    PROMOTION_RECHECK_SECONDS,
    ApiKey,
    ApiKeyCache,
    GatewaySource,
    call_with_key_refresh,
    read_api_key,
)
from vector_relay.pinecone.errors import PineconeRequestError

SECRET_VALUES = ("pcsk_first_value_never_logged", "pcsk_second_value_never_logged")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Secret:
    """A secret whose AWSCURRENT version the test moves; counts reads."""

    def __init__(self) -> None:
        self.version = 1
        self.reads = 0
        self.fail = False

    def read(self) -> ApiKey:
        self.reads += 1
        if self.fail:
            raise RuntimeError("Secrets Manager is unreachable")
        return ApiKey(value=f"value-{self.version}", version_id=f"v{self.version}", key_id=f"key-{self.version}")


class FakeGateway:
    """Answers with the key it was built for; refuses the keys in ``refused``."""

    def __init__(self, key: ApiKey, refused: set[str]) -> None:
        self.key = key
        self.refused = refused
        self.closed = False
        self.release: asyncio.Event | None = None  # when set by a test, calls wait for it
        self.waiting = asyncio.Event()  # a call is waiting for ``release``

    async def call(self) -> str:
        assert not self.closed, "a request was sent on a closed client"
        await asyncio.sleep(0)
        if self.release is not None:
            self.waiting.set()
            await self.release.wait()
            assert not self.closed, "the client was closed under a request in flight"
        if self.key.value in self.refused:
            raise PineconeRequestError(FailureKind.AUTH, "Pinecone 401: Unauthorized", status=401)
        return self.key.key_id

    async def close(self) -> None:
        self.closed = True


def source(
    keys: ApiKeyCache,
    refused: set[str] | None = None,
    failures: list[ApiKey] | None = None,
    clients: list[FakeGateway] | None = None,
) -> tuple[GatewaySource, list[ApiKey]]:
    built: list[ApiKey] = []
    refused_keys = refused if refused is not None else set()

    def build(key: ApiKey) -> Any:
        built.append(key)
        client = FakeGateway(key, refused_keys)
        if clients is not None:
            clients.append(client)
        return client

    on_failure = failures.append if failures is not None else None
    return GatewaySource(keys, build, on_auth_failure=on_failure), built


async def call(gateways: GatewaySource) -> Any:
    return await call_with_key_refresh(gateways, lambda gateway: gateway.call())  # type: ignore[attr-defined]


def test_the_key_is_kept_for_the_ttl_then_rechecked_and_kept_when_the_version_is_the_same() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=300, clock=clock)
    gateways, built = source(keys)

    async def scenario() -> None:
        first = await call(gateways)
        clock.now += 299
        await call(gateways)
        assert secret.reads == 1  # within the TTL: no read at all
        clock.now += 2
        assert (await call(gateways)).value == first.value
        assert secret.reads == 2  # TTL over: one check, same version
        assert len(built) == 1  # ...and the client was not rebuilt

    asyncio.run(scenario())


def test_a_new_awscurrent_version_found_after_the_ttl_rebuilds_the_client() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=60, clock=clock)
    gateways, built = source(keys)

    async def scenario() -> list[str]:
        answers = [(await call(gateways)).value]
        secret.version = 2
        clock.now += 30
        answers.append((await call(gateways)).value)  # still inside the TTL: the old key (valid, alternating)
        clock.now += 31
        answers.append((await call(gateways)).value)
        return answers

    assert asyncio.run(scenario()) == ["key-1", "key-1", "key-2"]
    assert [key.version_id for key in built] == ["v1", "v2"]


def test_the_client_of_a_replaced_key_is_closed_across_three_key_changes() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=60, clock=clock)
    clients: list[FakeGateway] = []
    gateways, _ = source(keys, clients=clients)

    async def scenario() -> list[int]:
        open_after_each = []
        for version in (1, 2, 3, 4):
            secret.version = version
            clock.now += 61
            assert (await call(gateways)).value == f"key-{version}"
            open_after_each.append(sum(not client.closed for client in clients))
        return open_after_each

    assert asyncio.run(scenario()) == [1, 1, 1, 1]  # without closing: 1, 2, 3, 4 open pools
    assert [client.closed for client in clients] == [True, True, True, False]
    assert gateways.open_gateways == 1


def test_a_request_in_flight_on_the_old_key_finishes_before_its_client_is_closed() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=60, clock=clock)
    clients: list[FakeGateway] = []
    gateways, _ = source(keys, clients=clients)

    async def scenario() -> list[Any]:
        await call(gateways)
        old = clients[0]
        old.release = asyncio.Event()
        slow = asyncio.create_task(call(gateways))
        await old.waiting.wait()  # the request is out on key 1, waiting for its answer
        secret.version = 2
        clock.now += 61
        fast = await call(gateways)  # on key 2, while the key 1 request is still out
        assert not old.closed  # still in use
        assert gateways.open_gateways == 2
        old.release.set()
        results = [await slow, fast]
        assert old.closed  # closed with its last request
        assert gateways.open_gateways == 1
        return results

    assert [(r.value, r.refreshes) for r in asyncio.run(scenario())] == [("key-1", 0), ("key-2", 0)]


def test_closing_the_source_closes_every_client() -> None:
    secret = Secret()
    clients: list[FakeGateway] = []
    gateways, _ = source(ApiKeyCache(secret.read, ttl_seconds=300), clients=clients)

    async def scenario() -> None:
        await call(gateways)
        await gateways.close()

    asyncio.run(scenario())
    assert [client.closed for client in clients] == [True]
    assert gateways.open_gateways == 0


def test_many_requests_at_the_end_of_the_ttl_read_the_secret_once() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=10, clock=clock)
    gateways, built = source(keys)

    async def scenario() -> list[Any]:
        await call(gateways)
        secret.version = 2
        clock.now += 11
        return await asyncio.gather(*(call(gateways) for _ in range(50)))

    results = asyncio.run(scenario())
    assert {r.value for r in results} == {"key-2"}
    assert secret.reads == 2
    assert len(built) == 2


def test_a_refused_key_is_reread_once_for_all_the_requests_that_saw_the_refusal() -> None:
    secret = Secret()
    keys = ApiKeyCache(secret.read, ttl_seconds=300)
    gateways, _ = source(keys, refused={"value-1"})

    async def scenario() -> list[Any]:
        await gateways.current()  # warm: holds key 1
        secret.version = 2  # rotated (or replaced out of band) and key 1 revoked
        return await asyncio.gather(*(call(gateways) for _ in range(20)))

    results = asyncio.run(scenario())
    assert {(r.value, r.refreshes) for r in results} == {("key-2", 1)}
    assert secret.reads == 2


def test_a_fresh_key_that_is_also_refused_is_an_auth_failure_counted_once_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret()
    keys = ApiKeyCache(secret.read, ttl_seconds=300)
    failures: list[ApiKey] = []
    gateways, _ = source(keys, refused={"value-1"}, failures=failures)

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(call(gateways) for _ in range(3)), return_exceptions=True)

    with caplog.at_level(logging.INFO):
        results = asyncio.run(scenario())
    assert all(isinstance(r, PineconeRequestError) and r.kind is FailureKind.AUTH for r in results)
    assert secret.reads == 2  # the first read and one re-read, not one per request
    assert [key.key_id for key in failures] == ["key-1"] * 3
    logged = [str(record.__dict__) for record in caplog.records]
    assert not any("value-1" in line for line in logged)
    assert any("'key_id': 'key-1'" in line for line in logged)  # the key id is what the logs name


def test_a_marker_ahead_of_awscurrent_brings_the_next_check_forward() -> None:
    secret, clock = Secret(), Clock()
    marker = {"value": "v1"}
    keys = ApiKeyCache(secret.read, ttl_seconds=300, read_marker=lambda: marker["value"], clock=clock)
    assert keys.current().version_id == "v1"
    marker["value"] = "v2"  # finishSecret wrote the marker and is about to move AWSCURRENT
    clock.now += 301
    assert keys.current().version_id == "v1"
    secret.version = 2
    clock.now += PROMOTION_RECHECK_SECONDS
    assert keys.fresh() is None  # due again after seconds, not a whole TTL
    assert keys.current().version_id == "v2"
    clock.now += PROMOTION_RECHECK_SECONDS
    assert keys.fresh() is not None  # back to the TTL once the marker and the secret agree


def test_a_failed_check_keeps_the_cached_key_and_retries_soon() -> None:
    secret, clock = Secret(), Clock()
    keys = ApiKeyCache(secret.read, ttl_seconds=300, clock=clock)
    first = keys.current()
    secret.fail = True
    clock.now += 301
    assert keys.current() is first
    assert keys.fresh() is first
    clock.now += FAILED_CHECK_RETRY_SECONDS
    secret.fail = False
    secret.version = 2
    assert keys.current().version_id == "v2"


def test_without_a_ttl_the_key_is_kept_until_refused() -> None:
    secret = Secret()
    keys = ApiKeyCache(secret.read)
    first = keys.current()
    secret.version = 2
    assert keys.current() is first
    assert keys.refresh(first).version_id == "v2"
    assert keys.refresh(first).version_id == "v2"  # already re-read since `first` was handed out
    assert secret.reads == 2


def test_the_key_value_is_never_in_repr_str_or_a_format_error() -> None:
    key = ApiKey(value=SECRET_VALUES[0], version_id="v1", key_id="k1")
    assert SECRET_VALUES[0] not in repr(key)
    assert SECRET_VALUES[0] not in str(key)
    with mock_aws():
        sm = boto3.client("secretsmanager")
        arn = sm.create_secret(Name="k", SecretString=json.dumps({"key": SECRET_VALUES[0]}))["ARN"]
        with pytest.raises(ConfigurationError) as raised:
            read_api_key(sm, arn)
    assert SECRET_VALUES[0] not in str(raised.value)


def test_read_api_key_reads_awscurrent_not_the_default_version() -> None:
    with mock_aws():
        sm = boto3.client("secretsmanager")
        arn = sm.create_secret(Name="k", SecretString=json.dumps({"api_key": "a", "key_id": "k-a"}))["ARN"]
        sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"api_key": "b"}), VersionStages=["AWSPENDING"])
        key = read_api_key(sm, arn)
    assert (key.value, key.key_id) == ("a", "k-a")
