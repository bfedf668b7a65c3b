"""Large replies are stored under a prefix of their tenant's own: no name the registry may hold puts one tenant's
objects under another's prefix, so one read grant on a prefix is one tenant's (docs/security.md, large replies)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.query.replies import large_reply_key, results_prefix

ENCODED = {
    "acme": "acme",
    "a/b": "a%2Fb",
    "a%2Fb": "a%252Fb",  # an encoded-looking name is encoded again: no two names meet
    "a/": "a%2F",
    "..": "%2E%2E",
    "x*": "x%2A",  # no IAM wildcard in a prefix
    "a b": "a%20b",
    "é": "%C3%A9",
}


@pytest.mark.parametrize(("tenant", "encoded"), ENCODED.items())
def test_a_large_reply_is_stored_under_tenants_and_the_percent_encoded_name(tenant: str, encoded: str) -> None:
    key = large_reply_key(tenant, "059f36b4-87a3-44ab-83d2-661975830a7d")
    assert re.fullmatch(rf"tenants/{re.escape(encoded)}/\d{{4}}/\d{{2}}/\d{{2}}/059f36b4-[0-9a-f-]+\.json", key)


def test_no_tenant_s_objects_fall_under_another_tenant_s_prefix() -> None:
    for one, other in itertools.permutations(ENCODED, 2):
        assert not large_reply_key(other, "m").startswith(results_prefix(one)), (one, other)


@given(st.text(min_size=1, max_size=128), st.text(min_size=1, max_size=128))
def test_distinct_names_never_share_or_nest_prefixes(one: str, other: str) -> None:
    if one != other:
        assert not results_prefix(other).startswith(results_prefix(one))
    encoded = results_prefix(one).removeprefix("tenants/").removesuffix("/")
    assert re.fullmatch(r"[A-Za-z0-9_%-]+", encoded)  # no "/", no "*" or "?"


def test_a_name_templates_tenant_yaml_takes_is_its_own_encoding() -> None:
    pattern = load_template(ROOT / "templates" / "tenant.yaml")["Parameters"]["Tenant"]["AllowedPattern"]
    for tenant in ("acme", "A_b-9", "t" * 24):
        assert re.fullmatch(pattern, tenant)
        assert results_prefix(tenant) == f"tenants/{tenant}/"  # so the template's QueryResultsPrefix output is right
