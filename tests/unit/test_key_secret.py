"""The secrets' JSON, read one way by the workers, rotation and the operator tools; never a value in an error."""

from __future__ import annotations

import json

import pytest

from vector_relay.errors import ConfigurationError
from vector_relay.keys.key_secret import KeySecret, MalformedSecretError, parse_admin_account, parse_key_secret


def test_a_worker_needs_only_the_key_and_reads_the_rest_as_empty() -> None:
    secret = parse_key_secret(json.dumps({"api_key": "pcsk_do_not_print"}), "secret s version v1")
    assert secret == KeySecret(api_key="pcsk_do_not_print")
    assert "pcsk_do_not_print" not in repr(secret)


@pytest.mark.parametrize("text", [None, "", "pcsk_do_not_print", '"pcsk_do_not_print"', '{"api_key": ""}'])
def test_a_secret_without_a_key_is_a_configuration_error_without_its_value(text: str | None) -> None:
    with pytest.raises(ConfigurationError, match="secret s version v1") as raised:
        parse_key_secret(text, "secret s version v1")
    assert isinstance(raised.value, MalformedSecretError)
    assert "pcsk_do_not_print" not in str(raised.value)


@pytest.mark.parametrize(
    "text",
    ["not json do_not_print", '["do_not_print"]', '{"client_id": "c"}', '{"client_id": "", "client_secret": "x"}'],
)
def test_a_malformed_admin_secret_names_its_fields_not_its_value(text: str) -> None:
    with pytest.raises(MalformedSecretError) as raised:
        parse_admin_account(text, "admin secret arn:a")
    assert str(raised.value) == 'admin secret arn:a must be JSON with "client_id" and "client_secret"'


def test_the_admin_account_never_shows_its_secret() -> None:
    account = parse_admin_account(json.dumps({"client_id": "c", "client_secret": "do_not_print"}), "admin secret a")
    assert (account.client_id, account.client_secret) == ("c", "do_not_print")
    assert "do_not_print" not in repr(account)
