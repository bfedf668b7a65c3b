"""`make up` as an operator meets it, run as the Makefile runs it (its own process): a second one finds the
first and says how to reach or stop it, a port some other program holds is named (no hang), `make down`
stops it by its recorded process id, and a restart keeps the tenants, the version guard's table and the
results bucket beside the index."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from relay_local.inspection import namespace_counts
from relay_local.state_file import StackInfo, running_stack
from tests.conftest import ROOT, SAMPLE_DIMENSION, wait_until
from vector_relay_cli.main import cli as vector_relay

START_CEILING = 180.0  # seconds: a verdict, not a race (a busy 2-core machine starts a stack in ~10 s)


class Ups:
    """`make up` processes started by a test, each stopped at the end whatever happened."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(self, state_dir: Path, *args: str) -> subprocess.Popen[str]:
        log = (self.tmp_path / f"up-{len(self.started)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "relay_local", "up", "--state-dir", str(state_dir), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.started.append((process, state_dir))
        return process

    def running(self, process: subprocess.Popen[str], state_dir: Path) -> StackInfo:
        wait_until(
            lambda: running_stack(state_dir) is not None or process.poll() is not None,
            "make up answers",
            ceiling=START_CEILING,
            poll=0.5,
        )
        assert process.poll() is None, self.output(process)
        info = running_stack(state_dir)
        assert info is not None
        return info

    def output(self, process: subprocess.Popen[str]) -> str:
        index = [p for p, _ in self.started].index(process)
        return (self.tmp_path / f"up-{index}.log").read_text()

    def stop_all(self) -> None:
        for process, state_dir in self.started:
            if process.poll() is None:
                down(state_dir)
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def ups(tmp_path: Path) -> Iterator[Ups]:
    started = Ups(tmp_path)
    yield started
    started.stop_all()


def down(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay_local", "down", "--state-dir", str(state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def up_once(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A `make up` expected to give up at once (a ceiling, not a wait: the old one hung here for good)."""
    return subprocess.run(
        [sys.executable, "-m", "relay_local", "up", "--state-dir", str(state_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_a_second_make_up_says_where_the_first_is_and_make_down_stops_it(ups: Ups, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = ups.start(state_dir, "--aws-port", "0", "--pinecone-port", "0")
    info = ups.running(first, state_dir)

    second = up_once(state_dir, "--aws-port", "0", "--pinecone-port", "0")

    assert second.returncode == 1, second.stdout
    said = " ".join(second.stderr.split())
    assert f"a local stack is already running in this checkout (make up, pid {first.pid}" in said
    assert f"Reach it: AWS {info.aws_endpoint}, Pinecone {info.pinecone_url}" in said
    assert f"source {state_dir / 'env'}" in said
    assert "Stop it with `make down`" in said
    assert first.poll() is None  # the first one is untouched
    # the export lines it printed (and left in <state dir>/env) put vector-relay on PATH, against this stack
    assert f"export VECTOR_RELAY_OUTPUTS={state_dir / 'outputs.json'}" in ups.output(first)
    found = subprocess.run(
        ["bash", "-c", f"source {state_dir / 'env'} && command -v vector-relay && echo $AWS_ENDPOINT_URL"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.stdout.split() == [str(Path(sys.executable).parent / "vector-relay"), info.aws_endpoint]

    stopped = down(state_dir)

    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert first.wait(timeout=60) == 0
    assert "stopped" in ups.output(first).splitlines()
    assert not [p.name for p in state_dir.iterdir() if p.name in {"up.json", "stack.json", "outputs.json", "env"}]
    assert down(state_dir).stdout.startswith("no `make up` is running in this checkout")


def test_a_port_another_program_holds_is_named_and_make_up_exits(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen(1)
        port = other_program.getsockname()[1]

        refused = up_once(tmp_path / "state", "--aws-port", str(port), "--pinecone-port", "0")

    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert f"port {port} (moto's) is in use by another program, not by a local stack of this checkout" in said
    assert "make up AWS_PORT=<port>" in said
    assert not (tmp_path / "state" / "up.json").exists()


def cli(info: StackInfo, *args: str) -> tuple[int, str]:
    """`vector-relay` with the environment the printed export lines set."""
    result = CliRunner().invoke(vector_relay, list(args), env=info.upstream_environment())
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def aws(info: StackInfo, service: str) -> Any:
    return boto3.client(service, endpoint_url=info.aws_endpoint, region_name=info.region)  # type: ignore[call-overload]


def test_a_restart_keeps_the_tenants_the_table_and_the_bucket(ups: Ups, tmp_path: Path) -> None:
    state_dir, data_dir = tmp_path / "state", tmp_path / "data"
    ports = ("--aws-port", "0", "--pinecone-port", "0", "--data-dir", str(data_dir))
    # GIVEN a stack where a tenant was added, a record written through the relay and a reply object stored
    first = ups.start(state_dir, *ports)
    info = ups.running(first, state_dir)
    code, out = cli(info, "tenant", "add", "hooli", "--namespace", "tenant-hooli")
    assert (code, out.splitlines()[:2]) == (
        0,
        ["created namespace tenant-hooli, indexing every metadata field", "registry entry for hooli written"],
    )
    upsert = {
        "schema_version": 1,
        "op": "upsert",
        "tenant": "hooli",
        "records": [{"id": "h1", "version": 7, "values": [0.25] * SAMPLE_DIMENSION}],
    }
    aws(info, "sqs").send_message(QueueUrl=info.queues["IngestQueue"], MessageBody=json.dumps(upsert))
    wait_until(
        lambda: namespace_counts(info.pinecone_url, info.index_name).get("tenant-hooli") == 1,
        "the record lands",
        ceiling=START_CEILING,
        poll=0.5,
    )
    bucket = info.resources["QueryResultsBucket"]
    aws(info, "s3").put_object(Bucket=bucket, Key="replies/big.json", Body=b'{"matches": []}')
    first.send_signal(signal.SIGINT)  # Ctrl-C
    assert first.wait(timeout=120) == 0

    # WHEN make up starts again with the same DATA_DIR
    second = ups.start(state_dir, *ports)
    info = ups.running(second, state_dir)

    # THEN the tenant, the guard's record of the write and the object are there, beside the index's record
    code, out = cli(info, "tenant", "list", "--json")
    assert json.loads(out)["hooli"] == {"namespace": "tenant-hooli"}
    table = info.resources["WriteVersionTable"]
    items = aws(info, "dynamodb").scan(TableName=table)["Items"]
    assert {"tenant-hooli"} <= {item["namespace"]["S"] for item in items}
    body = aws(info, "s3").get_object(Bucket=bucket, Key="replies/big.json")["Body"].read()
    assert body == b'{"matches": []}'
    code, out = cli(info, "reconcile", "--json")
    report = json.loads(out)
    assert (code, report["checked"] + report["in_flight"], report["not_in_table"]) == (0, 1, {})
    said = ups.output(second)
    assert "kept from the last run" in said
    assert "the tenant registry (acme, globex, hooli)" in said
    assert "queues and dead-letter queues start empty" in said
