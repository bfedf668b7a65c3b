"""Rotation pieces that need no AWS or Pinecone: the secret format, retirement times, the template's grace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.keys.key_secret import KeySecret
from vector_relay.keys.retired_keys import _left_current_at, _promoted_at
from vector_relay.keys.rotation_secret import KEY_NAME_PREFIX, RotationError, key_name_for, parse_version

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_a_key_left_awscurrent_when_the_next_version_was_promoted() -> None:
    history = [("none", at(0)), ("v1", at(10)), ("v2", at(20)), ("v2", at(21)), ("v3", at(30))]
    assert _left_current_at(history, "v1") == at(20)
    assert _left_current_at(history, "v2") == at(30)  # a repeated marker write (retried finish) is one promotion
    assert _left_current_at(history, "v3") is None  # still current
    assert _left_current_at(history, "v0") is None  # never promoted through the marker
    assert _promoted_at(history, "v2") == at(21)


def test_a_rolled_back_version_left_awscurrent_at_its_last_promotion_s_successor() -> None:
    history = [("v1", at(0)), ("v2", at(10)), ("v1", at(15)), ("v3", at(40))]
    assert _left_current_at(history, "v2") == at(15)  # the rollback
    assert _left_current_at(history, "v1") == at(40)


def test_the_key_name_is_derived_from_the_token_and_fits_pinecone_s_limit() -> None:
    token = "0194d495-db1c-53fb-a559-64192a623cae"
    assert key_name_for(token) == key_name_for(token) == f"{KEY_NAME_PREFIX}{token}"
    assert len(key_name_for(token)) <= 80
    assert len(key_name_for("x" * 200)) == 80


def test_the_secret_round_trips_and_never_shows_the_key() -> None:
    secret = KeySecret(api_key="pcsk_do_not_print", key_id="k1", project_id="p1", roles=("ProjectEditor",))
    assert parse_version(secret.to_json(), "v1") == secret
    assert "pcsk_do_not_print" not in repr(secret)
    assert "pcsk_do_not_print" not in str(secret)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json pcsk_do_not_print", "is not JSON"),
        ('["pcsk_do_not_print"]', "not a JSON object"),
        (json.dumps({"api_key": "pcsk_do_not_print"}), "project_id"),
        (json.dumps({"api_key": "", "project_id": "p"}), "api_key"),
    ],
)
def test_a_malformed_secret_is_refused_without_its_value(text: str, problem: str) -> None:
    with pytest.raises(RotationError, match=problem) as raised:
        parse_version(text, "the AWSPENDING version v9")
    assert "pcsk_do_not_print" not in str(raised.value)


def test_the_template_s_default_grace_outlasts_the_cache_ttl_and_every_worker_timeout() -> None:
    template = load_template(ROOT / "template.yaml")
    parameters = template["Parameters"]
    resources = template["Resources"]
    default_timeout = template["Globals"]["Function"]["Timeout"]
    worker_timeouts = [
        resource["Properties"].get("Timeout", default_timeout)
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        # the reconciler reads the key again when it is refused (RecordReader), so it may outlive a grace
        # and the index function only manages the index (its key is read per request and never cached)
        and name not in {"RotateKeyFunction", "ReconcileFunction", "PineconeIndexFunction"}
    ]
    grace = parameters["KeyRevocationGraceSeconds"]["Default"]
    assert grace >= parameters["ApiKeyCacheTtlSeconds"]["Default"] + max(worker_timeouts)
    # the rotation function's cold-start check reads the longest worker timeout from the template
    assert template["Globals"]["Function"]["Environment"]["Variables"]["WORKER_MAX_TIMEOUT_SECONDS"] == max(
        worker_timeouts
    )
    rotate = resources["RotateKeyFunction"]["Properties"]["Environment"]["Variables"]
    assert rotate["KEY_REVOCATION_GRACE_SECONDS"] == {"Ref": "KeyRevocationGraceSeconds"}
