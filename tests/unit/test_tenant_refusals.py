"""A message is refused for its tenant only against a registry read after it was sent, and re-reads are bounded.

The worker caches the tenant registry for TENANT_REGISTRY_TTL_SECONDS; right after ``vector-relay tenant
add`` (and a redrive) that cache does not know the tenant yet. The second look reads the registry again
before refusing, at most once per invocation and at most every REREAD_INTERVAL_SECONDS per container.
"""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from vector_relay.errors import PoisonMessageError, Problem
from vector_relay.sqs.tenant_refusals import SecondLook
from vector_relay.tenancy import TenantRegistry, TenantRegistrySource

INTERVAL = 5.0
REFUSED = PoisonMessageError([Problem("unknown_tenant", "tenant", "tenant 'hooli' is not in the tenant registry")])


class Clocks:
    """Monotonic and wall time moving together (epoch 1,000,000 s at monotonic 0)."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_000_000 + self.now


class Registry:
    """The SSM parameter: its value, and how often it was read."""

    def __init__(self, value: dict[str, str]) -> None:
        self.value = value
        self.reads = 0

    def read(self, name: str) -> str:
        self.reads += 1
        return json.dumps(self.value)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def parameter() -> Registry:
    return Registry({"acme": "tenant-acme"})


@pytest.fixture
def source(clocks: Clocks, parameter: Registry) -> TenantRegistrySource:
    source = TenantRegistrySource(
        inline=None,
        parameter_name="registry",
        read_parameter=parameter.read,
        ttl_seconds=60,
        clock=clocks.monotonic,
        wall_clock=clocks.wall,
        reread_interval_seconds=INTERVAL,
    )
    source.current()  # the container's first read, at monotonic 0
    return source


def sent_at(clocks: Clocks, monotonic: float) -> SQSRecord:
    """A message SQS stamped as sent at that moment."""
    sent_ms = int((1_000_000 + monotonic) * 1000)
    return SQSRecord(
        {
            "messageId": f"m-{monotonic}",
            "body": "{}",
            "attributes": {"SentTimestamp": str(sent_ms), "ApproximateReceiveCount": "1"},
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
        }
    )


def judge_hooli(record: SQSRecord, registry: TenantRegistry) -> None:
    if "hooli" not in registry:
        raise REFUSED


def test_a_refusal_stands_against_a_recent_registry_read_after_the_message_was_sent(
    clocks: Clocks, parameter: Registry, source: TenantRegistrySource
) -> None:
    message = sent_at(clocks, -10.0)  # sent before the registry was read
    clocks.now = 2.0

    verdict = SecondLook(source).confirm(message, REFUSED, judge_hooli)

    assert verdict is REFUSED
    assert parameter.reads == 1  # no second read


def test_a_tenant_added_after_the_last_read_is_taken_and_the_message_retried_at_once(
    clocks: Clocks, parameter: Registry, source: TenantRegistrySource
) -> None:
    clocks.now = 2.0
    parameter.value["hooli"] = "tenant-hooli"  # vector-relay tenant add
    message = sent_at(clocks, 3.0)  # the redrive, after the add
    clocks.now = 3.5

    verdict = SecondLook(source).confirm(message, REFUSED, judge_hooli)

    assert verdict == 0.0  # retried now; the next invocation starts with the fresh registry
    assert parameter.reads == 2
    assert "hooli" in source.current()


def test_the_registry_is_read_again_at_most_once_per_invocation(
    clocks: Clocks, parameter: Registry, source: TenantRegistrySource
) -> None:
    clocks.now = 30.0
    look = SecondLook(source)  # one per batch
    first, second = sent_at(clocks, 29.0), sent_at(clocks, 29.5)

    assert look.confirm(first, REFUSED, judge_hooli) is REFUSED  # read again: still unknown
    assert look.confirm(second, REFUSED, judge_hooli) is REFUSED  # judged with that same read
    assert parameter.reads == 2


def test_within_the_interval_a_message_the_registry_may_not_know_waits_for_the_next_read(
    clocks: Clocks, parameter: Registry, source: TenantRegistrySource
) -> None:
    clocks.now = 30.0
    assert SecondLook(source).confirm(sent_at(clocks, 29.0), REFUSED, judge_hooli) is REFUSED  # read at 30
    parameter.value["hooli"] = "tenant-hooli"
    clocks.now = 32.0

    wait = SecondLook(source).confirm(sent_at(clocks, 31.5), REFUSED, judge_hooli)  # the next invocation

    assert wait == pytest.approx(3.0)  # not refused: judged again once a read is allowed
    assert parameter.reads == 2
    clocks.now = 35.0
    assert SecondLook(source).confirm(sent_at(clocks, 31.5), REFUSED, judge_hooli) == 0.0
    assert parameter.reads == 3


def test_a_message_sent_before_a_tenant_was_added_is_taken_once_the_registry_is_older_than_the_interval(
    clocks: Clocks, parameter: Registry, source: TenantRegistrySource
) -> None:
    message = sent_at(clocks, -5.0)  # sent, then the registry read (at 0), then the tenant added
    parameter.value["hooli"] = "tenant-hooli"
    clocks.now = INTERVAL + 1

    assert SecondLook(source).confirm(message, REFUSED, judge_hooli) == 0.0
    assert parameter.reads == 2


def test_an_inline_registry_is_never_read_again() -> None:
    source = TenantRegistrySource(inline='{"acme": "a"}', parameter_name=None, read_parameter=str, ttl_seconds=60)
    assert not source.rereadable
    assert source.read_at() == float("inf")
    assert set(source.reread()) == {"acme"}
