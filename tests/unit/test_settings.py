"""Configuration flows one way: template -> environment -> Settings -> README, and all three agree."""

from __future__ import annotations

import re

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from vector_relay.errors import ConfigurationError
from vector_relay.settings import ReceiptsFunctionSettings, Settings, get_settings, receipts_function_settings

REQUIRED = {
    "PINECONE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf",
    "PINECONE_INDEX_HOST": "https://idx.svc.pinecone.io",
}


def env_var_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_settings_read_the_environment_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert settings.pinecone_index_host == REQUIRED["PINECONE_INDEX_HOST"]
    assert settings.pinecone_max_concurrency == 8
    assert settings.reply_queue_allow_list == frozenset()
    assert get_settings() is settings  # built once


def test_lists_numbers_and_empty_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPLY_QUEUE_ALLOW_LIST", " https://q/1 , https://q/2,, ")
    monkeypatch.setenv("PINECONE_INDEX_DIMENSION", "")
    monkeypatch.setenv("PINECONE_INDEX_METRIC", "dotproduct")
    monkeypatch.setenv("PINECONE_MAX_CONCURRENCY", "16")
    settings = get_settings()
    assert settings.reply_queue_allow_list == frozenset({"https://q/1", "https://q/2"})
    assert settings.pinecone_index_dimension is None
    assert settings.pinecone_index_metric == "dotproduct"
    assert settings.pinecone_max_concurrency == 16


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({}, "pinecone_secret_arn"),
        ({**REQUIRED, "PINECONE_MAX_CONCURRENCY": "0"}, "pinecone_max_concurrency"),
        ({**REQUIRED, "PINECONE_INDEX_METRIC": "manhattan"}, "pinecone_index_metric"),
        ({**REQUIRED, "TENANT_REGISTRY": "{}", "TENANT_REGISTRY_PARAMETER": "p"}, "not both"),
    ],
)
def test_bad_configuration_fails_at_first_use_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], fragment: str
) -> None:
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    if "PINECONE_SECRET_ARN" not in extra:
        monkeypatch.delenv("PINECONE_SECRET_ARN", raising=False)
    with pytest.raises(ConfigurationError, match=fragment):
        get_settings()


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("PINECONE_INDEX_HOST", "http://idx.svc.pinecone.io"),
        ("PINECONE_INDEX_HOST", "idx.svc.pinecone.io"),
        ("PINECONE_INDEX_HOST", "http://10.0.0.8:5080"),
        ("PINECONE_CONTROL_HOST", "http://api.pinecone.io"),
        ("PINECONE_OAUTH_URL", "ftp://login.pinecone.io/oauth/token"),
        ("PINECONE_INDEX_HOST", "https://"),
    ],
)
def test_a_pinecone_url_beyond_this_machine_must_be_https(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(name, url)
    with pytest.raises(ConfigurationError, match="must be an https:// URL") as refused:
        get_settings()
    assert name.lower() in str(refused.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5080/data/idx", "http://localhost:5080", "http://[::1]:5080"])
def test_plain_http_is_allowed_on_loopback_for_the_local_stack(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for key, value in REQUIRED.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PINECONE_INDEX_HOST", url)
    assert get_settings().pinecone_index_host == url


def test_require_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="DEAD_LETTER_QUEUE_URL is not set"):
        get_settings().require("dead_letter_queue_url")


def test_readme_configuration_table_lists_every_variable_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE))
    assert documented == env_var_names()


def test_template_sets_only_variables_the_settings_know() -> None:
    template = load_template(ROOT / "template.yaml")
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    unknown = {name for name in names if not name.startswith("POWERTOOLS_")} - env_var_names()
    assert unknown == set()
    assert {"PINECONE_SECRET_ARN", "PINECONE_INDEX_HOST"} <= names


def test_the_receipts_function_reads_the_registry_as_the_workers_do_and_nothing_of_pinecone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, field in ReceiptsFunctionSettings.model_fields.items():
        worker = Settings.model_fields[name]  # the same variable, type, default and bounds
        assert (field.annotation, field.default, field.metadata) == (worker.annotation, worker.default, worker.metadata)
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENANT_REGISTRY_PARAMETER", "relay-tenant-registry")
    assert receipts_function_settings().tenant_registry_parameter == "relay-tenant-registry"
    monkeypatch.setenv("TENANT_REGISTRY_TTL_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="tenant_registry_ttl_seconds"):
        receipts_function_settings()
