"""Tenant -> namespace comes only from the registry, which is validated and refreshed safely."""

from __future__ import annotations

import pytest

from vector_relay.errors import ConfigurationError
from vector_relay.tenancy import TenantRegistry, TenantRegistrySource


def test_registry_maps_tenants_to_their_namespaces() -> None:
    registry = TenantRegistry.from_json('{"acme": "tenant-acme", "globex": "g"}', source="test")
    assert registry.namespace_for("acme") == "tenant-acme"
    assert set(registry) == {"acme", "globex"}
    assert "initech" not in registry


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{oops", "is not JSON"),
        ('["acme"]', "must be a JSON object"),
        ('{"acme": "shared", "globex": "shared"}', "share namespace 'shared'"),
        ('{"acme": ""}', "namespace must be 1-512 ASCII"),
        ('{"acme": "caf\\u00e9"}', "namespace must be 1-512 ASCII"),
        ('{"acme": 7}', "namespace must be 1-512 ASCII"),
        ('{"": "ns"}', "must be a non-empty string"),
        ('{"acme": {"queues": []}}', "namespace must be 1-512 ASCII"),
        ('{"acme": {"namespace": "a", "queue": []}}', "unknown keys .'queue'."),
        ('{"acme": {"namespace": "a", "queues": "arn:aws:sqs:us-east-1:123456789012:q"}}', "must be a list"),
        ('{"acme": {"namespace": "a", "queues": ["https://sqs.us-east-1.amazonaws.com/1/q"]}}', "not an SQS queue ARN"),
        (
            '{"acme": {"namespace": "a", "queues": ["arn:aws:sqs:us-east-1:123456789012:q"]},'
            ' "globex": {"namespace": "g", "queues": ["arn:aws:sqs:us-east-1:123456789012:q"]}}',
            "'acme' and 'globex' are both bound to queue",
        ),
        ('{"acme": {"namespace": "a", "reply_queues": [""]}}', "reply_queues must be a list of non-empty strings"),
        ('{"acme": {"namespace": "a", "receipts": "arn:aws:sqs:us-east-1:123456789012:r"}}', "an SQS queue URL"),
        (
            '{"acme": {"namespace": "a", "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/r"},'
            ' "globex": {"namespace": "g", "receipts": "https://sqs.us-east-1.amazonaws.com/123456789012/r"}}',
            "'acme' and 'globex' share receipt queue",
        ),
    ],
)
def test_invalid_registries_are_configuration_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        TenantRegistry.from_json(text, source="test")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_parameter_registry_is_cached_for_the_ttl_then_reread() -> None:
    reads: list[str] = []
    values = iter(['{"acme": "a"}', '{"acme": "a", "globex": "g"}'])
    clock = Clock()

    def read(name: str) -> str:
        reads.append(name)
        return next(values)

    source = TenantRegistrySource(inline=None, parameter_name="reg", read_parameter=read, ttl_seconds=60, clock=clock)
    assert set(source.current()) == {"acme"}
    clock.now = 59
    assert set(source.current()) == {"acme"}
    clock.now = 60
    assert set(source.current()) == {"acme", "globex"}
    assert reads == ["reg", "reg"]


def test_a_failed_reread_keeps_the_last_good_registry() -> None:
    clock = Clock()
    answers = ['{"acme": "a"}', "{broken"]

    def read(name: str) -> str:
        return answers.pop(0) if answers else '{"acme": "a2"}'

    source = TenantRegistrySource(inline=None, parameter_name="reg", read_parameter=read, ttl_seconds=10, clock=clock)
    assert source.current().namespace_for("acme") == "a"
    clock.now = 10
    assert source.current().namespace_for("acme") == "a"  # broken value ignored
    assert source.current().namespace_for("acme") == "a2"  # tried again on the next call


def test_no_registry_ever_read_is_an_error() -> None:
    def read(name: str) -> str:
        raise OSError("ssm unreachable")

    source = TenantRegistrySource(inline=None, parameter_name="reg", read_parameter=read, ttl_seconds=10)
    with pytest.raises(OSError, match="ssm unreachable"):
        source.current()


@pytest.mark.parametrize(("inline", "parameter"), [(None, None), ('{"a": "b"}', "reg")])
def test_exactly_one_registry_source(inline: str | None, parameter: str | None) -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        TenantRegistrySource(inline=inline, parameter_name=parameter, read_parameter=str, ttl_seconds=1)


ACME_QUEUE = "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-ingest"
SHARED_QUEUE = "arn:aws:sqs:us-east-1:123456789012:relay-ingest"
BOUND = TenantRegistry.from_json(
    '{"acme": {"namespace": "tenant-acme", "queues": ["' + ACME_QUEUE + '"], "reply_queues": ["https://r/acme"]},'
    ' "globex": "tenant-globex"}',
    source="test",
)


def test_the_object_form_gives_the_namespace_and_the_old_form_still_works() -> None:
    assert (BOUND.namespace_for("acme"), BOUND.namespace_for("globex")) == ("tenant-acme", "tenant-globex")
    assert BOUND.bound_tenant(ACME_QUEUE) == "acme"
    assert BOUND.bound_tenant(SHARED_QUEUE) is None


def test_a_bound_queue_speaks_only_for_its_tenant_and_a_bound_tenant_only_through_its_queues() -> None:
    assert BOUND.binding_problem(ACME_QUEUE, "acme") is None
    assert BOUND.binding_problem(SHARED_QUEUE, "globex") is None  # shared-queue mode for unbound tenants

    other = BOUND.binding_problem(ACME_QUEUE, "globex")
    assert other is not None
    assert (other.code, other.message) == (
        "tenant_not_bound",
        "this queue is bound to tenant 'acme'; the message names another",
    )
    bypass = BOUND.binding_problem(SHARED_QUEUE, "acme")
    assert bypass is not None
    assert bypass.message == "the tenant takes messages only from its own queues, not this one"


def test_a_tenant_s_reply_queues_replace_the_global_allow_list() -> None:
    default = frozenset({"https://r/shared"})
    assert BOUND.reply_queues_for("acme", default) == frozenset({"https://r/acme"})
    assert BOUND.reply_queues_for("globex", default) == default
    assert BOUND.all_reply_queues() == frozenset({"https://r/acme"})


@pytest.mark.parametrize(
    ("tenant", "why"),
    [
        ("   ", "must not be blank"),  # CloudWatch drops a blank dimension: its figures would join the service's
        ("-", "is reserved"),  # the per-tenant metrics' name for dead letters of tenants not in the registry
        ("a" * 129, "longer than 128"),  # no message could name it
        ("acme\n", "control characters"),
    ],
)
def test_a_tenant_name_that_cannot_be_a_metric_dimension_is_refused(tenant: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        TenantRegistry.from_mapping({tenant: "tenant-x"}, source="test")


def test_a_namespace_is_looked_up_to_its_tenant() -> None:
    registry = TenantRegistry.from_mapping(
        {"acme": "tenant-acme", "globex": {"namespace": "tenant-globex"}}, source="t"
    )
    assert registry.tenant_of_namespace("tenant-globex") == "globex"
    assert registry.tenant_of_namespace("tenant-initech") is None
