"""``python -m pinecone_emulator``: flags, start-up faults, and ``--data-dir`` surviving a restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pinecone import Admin, Pinecone, ServerlessSpec, UnauthorizedError

from pinecone_emulator import Emulator, EmulatorConfig, handle
from pinecone_emulator.persistence import attach_persistence
from pinecone_emulator.wire import Request

SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run the emulator as its README says, on a free port; yields its URL and stops it with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pinecone_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, process.stderr.read() if process.stderr else line
        yield line.strip().rsplit(" ", 1)[-1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


def test_process_honours_keys_and_start_up_faults() -> None:
    fault = json.dumps({"operation": "list_indexes", "sequence": [{"status": 503, "retry_after": 0}]})
    with emulator_process("--api-key", "k-one", "--api-key", "k-two", "--fault", fault) as url:
        first = httpx.get(f"{url}/indexes", headers={"Api-Key": "k-two"})
        second = httpx.get(f"{url}/indexes", headers={"Api-Key": "k-two"})
        default_key = httpx.get(f"{url}/indexes", headers={"Api-Key": "pclocal"})

    assert first.status_code == 503
    assert first.json() == {
        "error": {"code": "UNAVAILABLE", "message": "Service unavailable. Please retry shortly."},
        "status": 503,
    }
    assert second.json() == {"indexes": []}
    assert default_key.status_code == 401  # --api-key replaces the default key


def test_invalid_fault_flag_exits_with_a_usage_error() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pinecone_emulator", "--port", "0", "--fault", '{"operation": "query"}'],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 2
    assert "invalid --fault" in completed.stderr


def test_data_dir_keeps_indexes_records_and_keys_across_a_restart(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "state")
    with emulator_process("--data-dir", data_dir) as url:
        pc = Pinecone(api_key="pclocal", host=url)
        host = pc.create_index("kept", dimension=3, metric="dotproduct", spec=SPEC, deletion_protection="enabled").host
        index = pc.Index(name="kept")
        index.upsert(vectors=[("a", [1.0, 2.0, 3.0], {"genre": "drama"})], namespace="films")
        index.upsert(vectors=[("b", [0.5, 0.5, 0.5])])
        admin = Admin(
            client_id="emulator-client", client_secret="emulator-secret", host=url, oauth_url=f"{url}/oauth/token"
        )
        created = admin.api_keys.create(project_id="emulator-project", name="survivor")
        revoked = admin.api_keys.create(project_id="emulator-project", name="revoked")
        admin.api_keys.delete(api_key_id=revoked.key.id)
        index.close()

    with emulator_process("--data-dir", data_dir) as url:
        pc = Pinecone(api_key=created.value, host=url)
        index = pc.Index(host=host)  # the host from before the restart, with no describe: its port is open again
        model = pc.describe_index("kept")
        fetched = index.fetch(ids=["a"], namespace="films")
        stats = index.describe_index_stats()
        with pytest.raises(UnauthorizedError):
            Pinecone(api_key=revoked.value, host=url).list_indexes()
        index.close()

    assert model.host == host
    assert model.deletion_protection == "enabled"
    assert fetched.vectors["a"].values == [1.0, 2.0, 3.0]
    assert fetched.vectors["a"].metadata == {"genre": "drama"}
    assert {name: ns.vector_count for name, ns in stats.namespaces.items()} == {"__default__": 1, "films": 1}


def test_deleted_index_stays_deleted_after_a_reload(tmp_path: Path) -> None:
    config = EmulatorConfig(port=0, data_dir=tmp_path)
    first = Emulator(config)
    persistence = attach_persistence(first)
    assert persistence is not None
    first.indexes.clear()
    headers = {"Api-Key": "pclocal"}
    schema = {"fields": {"_values": {"type": "dense_vector", "dimension": 2, "metric": "cosine"}}}
    for name in ("stay", "go"):
        body = json.dumps({"name": name, "schema": schema}).encode()
        assert handle(first, Request("POST", "/indexes", "", headers, body)).status == 201
    assert handle(first, Request("DELETE", "/indexes/go", "", headers)).status == 202
    persistence.close()

    second = Emulator(config)
    reloaded = attach_persistence(second)
    assert reloaded is not None
    reloaded.close()

    assert sorted(second.indexes) == ["stay"]
    assert not (tmp_path / "namespaces" / "go").exists()
