"""Whose key a `vector-relay-rotation-<version>` key is, as the sweep of retired keys decides it (no AWS)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from vector_relay.keys.retired_keys import _owner_of
from vector_relay.keys.rotation_secret import RotationDependencies

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stack-a-pinecone-api-key-AbCdEf"
VERSION = "0194d495-db1c-53fb-a559-64192a623cae"


class OneVersion:
    """A Secrets Manager client that knows one version of one secret, or answers every read with an error."""

    def __init__(self, text: str = "", error: str = "") -> None:
        self.text, self.error = text, error

    def get_secret_value(self, *, SecretId: str, VersionId: str) -> dict[str, Any]:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "refused"}}, "GetSecretValue")
        if SecretId != ARN or VersionId != VERSION:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "GetSecretValue")
        return {"ARN": ARN, "VersionId": VERSION, "SecretString": self.text}


def owner(secrets: OneVersion, version: str = VERSION, key_id: str = "key-1") -> tuple[str, str]:
    return _owner_of(cast(RotationDependencies, SimpleNamespace(secrets=secrets)), ARN, version, key_id)


def stored(key_id: str) -> str:
    return json.dumps({"api_key": "pcsk_do_not_print", "key_id": key_id, "project_id": "p1"})


def test_a_key_stored_by_the_version_it_is_named_after_is_this_secret_s() -> None:
    assert owner(OneVersion(stored("key-1"))) == ("this", "")


def test_a_key_named_after_a_version_this_secret_does_not_have_is_another_secret_s() -> None:
    assert owner(OneVersion(stored("key-1")), version="5f0c1d2e-0000-4000-8000-000000000000") == ("another", "")


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "ValidationException", "InvalidParameterException"])
def test_a_version_id_secrets_manager_rejects_is_not_this_secret_s(code: str) -> None:
    assert owner(OneVersion(error=code)) == ("another", "")


@pytest.mark.parametrize("code", ["AccessDeniedException", "ThrottlingException", "InternalServiceError"])
def test_a_read_that_fails_otherwise_leaves_the_owner_unknown(code: str) -> None:
    whose, why = owner(OneVersion(error=code))
    assert whose == "unknown"
    assert code in why


def test_a_key_its_version_does_not_store_is_unknown() -> None:
    whose, why = owner(OneVersion(stored("key-2")))
    assert whose == "unknown"
    assert "stores another key" in why
    assert "pcsk_do_not_print" not in why


def test_a_version_whose_value_is_malformed_is_unknown_and_the_reason_holds_no_value() -> None:
    whose, why = owner(OneVersion("not json pcsk_do_not_print"))
    assert whose == "unknown"
    assert "pcsk_do_not_print" not in why
