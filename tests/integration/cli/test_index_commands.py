"""``vector-relay index`` against the emulator: create (and adopt), wait through Initializing, describe,
configure, delete; each refusal with its reason and exit code. The key comes from PINECONE_API_KEY or from
the deployment's secret (moto)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay_cli.main import cli


@pytest.fixture
def env(pinecone_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_emulator.api_key)
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pinecone_emulator.url)
    return pinecone_emulator


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def as_json(output: str) -> Any:
    return json.loads(output[output.index("{") :])


def test_create_waits_for_ready_then_describe_and_configure(env: EmulatorHandle) -> None:
    env.control.set_index_ready_after(0.5)  # Initializing first, as in Pinecone

    code, out = run("index", "create", "docs", "--dimension", "8", "--tag", "team=search", "--json")

    assert code == 0
    created = as_json(out)
    assert (created["state"], created["ready"], created["dimension"], created["metric"]) == ("Ready", True, 8, "cosine")
    assert created["host"] == env.index_host("docs")
    assert (created["deletion_protection"], created["tags"]) == (True, {"team": "search"})

    code, out = run("index", "configure", "docs", "--no-deletion-protection", "--untag", "team", "--tag", "env=prod")
    assert code == 0
    assert "deletion protection  off" in out
    code, out = run("index", "describe", "docs")
    assert code == 0
    assert out.splitlines()[0] == "docs: Ready (dimension 8, metric cosine, aws us-east-1)"
    assert "{'env': 'prod'}" in out


def test_create_adopts_the_same_shape_and_refuses_another(env: EmulatorHandle) -> None:
    assert run("index", "create", "docs", "--dimension", "8")[0] == 0

    code, out = run("index", "create", "docs", "--dimension", "8")
    assert (code, out.splitlines()[0]) == (0, "adopted the existing index docs (same shape)")
    code, out = run("index", "create", "docs", "--dimension", "16")
    assert code == 1
    assert "already exists with dimension 8, metric cosine, aws us-east-1; asked for dimension 16" in out


def test_deletion_protection_refuses_before_asking_and_names_the_configure_flag(env: EmulatorHandle) -> None:
    run("index", "create", "docs", "--dimension", "8")  # protected by default

    code, out = run("index", "delete", "docs")  # no --yes, no answer: refused before the prompt
    assert code == 1
    assert out == (
        "Error: index docs has deletion protection enabled, so it was not deleted: turn it off first with "
        "`vector-relay index configure docs --no-deletion-protection`, then delete again\n"
    )
    assert run("index", "describe", "docs")[0] == 0

    run("index", "configure", "docs", "--no-deletion-protection")
    assert run("index", "delete", "docs", stdin="n\n")[0] == 1  # aborted at the prompt
    assert run("index", "delete", "docs", "--yes") == (0, "deleted index docs\n")


def test_an_unknown_index_is_exit_2_for_wait_and_delete_and_a_bad_name_is_bad_usage(env: EmulatorHandle) -> None:
    code, out = run("index", "wait", "nope", "--timeout", "5")
    assert (code, out) == (2, "Error: no index named nope in this project\n")  # not "disappeared", exit 1

    code, out = run("index", "delete", "nope", "--yes")  # a misspelt name is not "already gone", exit 0
    assert (code, out) == (2, "Error: no index named nope in this project: nothing was deleted\n")

    code, out = run("index", "create", "Docs_1", "--dimension", "8")
    assert code == 2  # bad usage, not a refusal (exit 1)
    assert "Name 'Docs_1' must be 1-45 lower-case letters, digits or hyphens" in out
    assert run("index", "describe", "docs-1")[0] == 2


def test_wait_reports_a_failed_index_and_describe_an_unknown_one(env: EmulatorHandle) -> None:
    run("index", "create", "docs", "--dimension", "8")
    env.control.set_index_state("docs", "InitializationFailed")

    code, out = run("index", "wait", "docs", "--timeout", "5")
    assert (code, out.strip()) == (1, "Error: index docs is InitializationFailed; Pinecone will not make it ready")
    code, out = run("index", "describe", "nope")
    assert code == 2
    assert "no index named nope in this project" in out


def test_the_key_comes_from_the_deployment_s_secret_and_its_absence_is_explained(
    aws: str, pinecone_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    monkeypatch.setenv("PINECONE_CONTROL_HOST", pinecone_emulator.url)
    code, out = run("index", "describe", "docs")
    assert code == 2
    assert out.startswith("Error: no Pinecone API key and no relay named: set PINECONE_API_KEY, or name the relay")
    assert "paste the export lines `make up` prints" in out

    secret = json.dumps({"api_key": pinecone_emulator.api_key})
    arn = boto3.client("secretsmanager").create_secret(Name="key", SecretString=secret)["ARN"]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"PineconeApiKeySecretArn": arn}))
    code, out = run("--outputs", str(outputs), "index", "create", "docs", "--dimension", "4", "--json")
    assert (code, as_json(out)["name"]) == (0, "docs")
    assert pinecone_emulator.api_key not in out

    monkeypatch.setenv("PINECONE_API_KEY", "pcsk_not_a_key")
    code, out = run("index", "describe", "docs")
    assert code == 2
    assert "Pinecone refused the API key" in out
    assert "pcsk_not_a_key" not in out


def test_create_without_dense_or_sparse_said_is_refused_and_creates_nothing(env: EmulatorHandle) -> None:
    code, out = run("index", "create", "docs")

    assert code == 2
    assert "say which kind of index: --dimension N for dense vectors" in " ".join(out.split())
    assert run("index", "describe", "docs")[0] == 2  # no index named docs
    code, out = run("index", "create", "docs", "--sparse", "--dimension", "8")
    assert code == 2
    assert "--dimension and --sparse exclude each other" in " ".join(out.split())

    code, out = run("index", "create", "docs", "--sparse", "--json")
    assert code == 0, out
    assert (as_json(out)["dimension"], as_json(out)["metric"]) == (None, "dotproduct")
