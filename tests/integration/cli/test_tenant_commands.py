"""``vector-relay tenant``: onboarding writes the registry (moto's SSM) and creates the namespace with the
schema's indexing (the emulator); a type change on a namespace with records is refused unless forced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from pinecone import Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay_cli.main import cli

PARAMETER = "relay-tenant-registry"
SCHEMA = {
    "fields": {
        "year": {"type": "number", "required": True},
        "tags": {"type": "string_list", "filterable": False},
    },
    "extra": "forbid",
}


@pytest.fixture
def deployment(
    aws: str, pinecone_emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Any]:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("relay", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value='{"globex": "tenant-globex"}', Type="String")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {"TenantRegistryParameterName": PARAMETER, "PineconeIndexHost": pinecone_emulator.index_host("relay")}
        )
    )
    monkeypatch.setenv("PINECONE_API_KEY", pinecone_emulator.api_key)
    index = client.Index(host=pinecone_emulator.index_host("relay"))
    return outputs, index


def run(outputs: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "tenant", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def registry() -> dict[str, Any]:
    return json.loads(boto3.client("ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"])


def test_onboarding_creates_the_namespace_indexing_only_filterable_fields_and_writes_the_entry(
    deployment: tuple[Path, Any], tmp_path: Path
) -> None:
    outputs, index = deployment
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))

    code, out = run(outputs, "add", "acme", "--namespace", "tenant-acme", "--schema", str(schema_file))

    assert code == 0, out
    assert out.splitlines() == [
        "created namespace tenant-acme, indexing only year",
        "registry entry for acme written",
        "the ingest workers take acme's messages at once (they read the registry again before refusing one); "
        "queries may still be refused for up to TENANT_REGISTRY_TTL_SECONDS (60 s by default)",
    ]
    assert registry() == {"acme": {"namespace": "tenant-acme", "schema": SCHEMA}, "globex": "tenant-globex"}
    described = index.describe_namespace(name="tenant-acme")
    assert dict(described.schema.fields).keys() == {"year"}
    code, out = run(outputs, "list")
    assert "acme                 tenant-acme  (schema: tags, year)" in out


def test_a_type_change_on_a_namespace_with_records_is_refused_unless_forced(
    deployment: tuple[Path, Any], tmp_path: Path
) -> None:
    outputs, index = deployment
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    run(outputs, "add", "acme", "--namespace", "tenant-acme", "--schema", str(schema_file))
    index.upsert(vectors=[("a", [1.0, 0.0], {"year": 2021})], namespace="tenant-acme")
    changed = {**SCHEMA, "fields": {**SCHEMA["fields"], "year": {"type": "string"}}}
    schema_file.write_text(json.dumps(changed))

    code, out = run(outputs, "add", "acme", "--namespace", "tenant-acme", "--schema", str(schema_file))
    assert code == 1
    assert "holds 1 records and the new schema changes the type of year (number -> string)" in out
    assert registry()["acme"]["schema"] == SCHEMA  # unchanged

    code, out = run(outputs, "add", "acme", "--namespace", "tenant-acme", "--schema", str(schema_file), "--force")
    assert code == 0
    assert "namespace tenant-acme exists (1 records)" in out
    assert registry()["acme"]["schema"] == changed


def test_a_bad_schema_and_a_dry_run_change_nothing(deployment: tuple[Path, Any], tmp_path: Path) -> None:
    outputs, index = deployment
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fields": {"year": {"type": "integer"}}}))

    code, out = run(outputs, "add", "acme", "--namespace", "tenant-acme", "--schema", str(bad))
    assert code == 2
    assert "type must be one of string, number, boolean, string_list, got 'integer'" in out
    code, out = run(outputs, "add", "acme", "--namespace", "tenant-acme", "--dry-run")
    assert code == 0
    assert '"acme": {' in out
    assert registry() == {"globex": "tenant-globex"}
    assert "tenant-acme" not in {ns.name for ns in index.list_namespaces()}
