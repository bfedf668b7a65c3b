"""``vector-relay load``: 10,000 records from JSONL land exactly (fetched back from the emulator), in close to
the fewest SQS requests, and a load killed mid-way resumes from its checkpoint without losing or doubling.

A load the relay would dead-letter (another dimension, an unknown or misspelt tenant, a tenant bound to
queues of its own, metadata its schema refuses) is refused before anything is sent; a checkpoint is
never taken for another tenant's load, another file or another deployment."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from pinecone import Pinecone, ServerlessSpec

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_DIMENSION, SAMPLE_TENANTS
from tests.integration.conftest import INDEX_NAME, Pipeline, SqsDriver
from vector_relay.dependencies import reset_worker_dependencies
from vector_relay.settings import get_settings
from vector_relay_cli.load_command import CRASH_AFTER_BATCHES
from vector_relay_cli.main import cli

RECORDS = 10_000
DIMENSION = 8
PARAMETER = "relay-tenant-registry"


@pytest.fixture
def small_index(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An 8-dimensional index, so 10,000 records go through the whole pipeline in seconds."""
    client = Pinecone(api_key=pipeline.emulator.api_key, host=pipeline.emulator.url)
    client.create_index(
        "load", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
    )
    host = pipeline.emulator.index_host("load")
    monkeypatch.setenv("PINECONE_INDEX_HOST", host)
    monkeypatch.setenv("PINECONE_INDEX_DIMENSION", str(DIMENSION))
    monkeypatch.setenv("PINECONE_INDEX_NAME", "load")
    get_settings.cache_clear()
    reset_worker_dependencies()
    return client.Index(host=host)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = random.Random(7)
    path = tmp_path / "corpus.jsonl"
    with path.open("w") as out:
        for i in range(RECORDS):
            values = [round(rng.uniform(-1, 1), 5) for _ in range(DIMENSION)]
            out.write(json.dumps({"id": f"doc-{i}", "version": 3, "values": values, "metadata": {"n": i}}) + "\n")
    return path


def write_outputs(pipeline: Pipeline, path: Path, index_name: str, registry: dict[str, Any] | None = None) -> Path:
    """The deployment's outputs (the load's queue, registry, index and key), and its tenant registry in SSM."""
    ssm = boto3.client("ssm")
    value = json.dumps(registry or SAMPLE_TENANTS)
    ssm.put_parameter(Name=PARAMETER, Value=value, Type="String", Overwrite=True)
    path.write_text(
        json.dumps(
            {
                "IngestQueueUrl": pipeline.queue_url,
                "IngestQueueArn": pipeline.queue_arn,
                "TenantRegistryParameterName": PARAMETER,
                "PineconeIndexName": index_name,
                "PineconeApiKeySecretArn": pipeline.secret_arn,
            }
        )
    )
    return path


@pytest.fixture
def outputs(pipeline: Pipeline, small_index: Any, tmp_path: Path) -> Path:
    """A deployment whose index is the 8-dimensional one."""
    return write_outputs(pipeline, tmp_path / "outputs.json", "load")


def drain(pipeline: Pipeline) -> None:
    SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler).run_until_empty(max_invocations=500)


def landed(index: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    ids = [f"doc-{i}" for i in range(RECORDS)]
    for start in range(0, len(ids), 200):
        found |= index.fetch(ids=ids[start : start + 200], namespace="tenant-acme").vectors
    return found


def test_ten_thousand_records_land_exactly_in_close_to_the_fewest_requests(
    pipeline: Pipeline, small_index: Any, corpus: Path, outputs: Path
) -> None:
    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "load", str(corpus), "--tenant", "acme", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["records"], report["failed"], report["invalid_lines"]) == (RECORDS, 0, [])
    body_bytes = sum(len(json.dumps(json.loads(line), separators=(",", ":"))) for line in corpus.open())
    minimum = max(math.ceil(body_bytes / 1_048_576), math.ceil(RECORDS / 1000 / 10))
    assert report["requests"] <= math.ceil(minimum * 1.1), (report["requests"], minimum)

    drain(pipeline)
    found = landed(small_index)
    assert len(found) == RECORDS
    assert found["doc-1234"].metadata == {"n": 1234, "_relay_version": "3"}


def test_a_killed_load_resumes_from_its_checkpoint(
    pipeline: Pipeline, small_index: Any, corpus: Path, outputs: Path
) -> None:
    script = Path(sys.executable).parent / "vector-relay"
    command = [str(script), "--outputs", str(outputs), "load", str(corpus), "--tenant", "acme", "--json"]

    killed = subprocess.run(command, env={**os.environ, CRASH_AFTER_BATCHES: "1"}, capture_output=True, text=True)
    assert killed.returncode == 75, killed.stderr
    checkpoint = json.loads(corpus.with_name(corpus.name + ".acme.checkpoint").read_text())
    assert 0 < checkpoint["last_line"] < RECORDS

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["resumed_after_line"] == checkpoint["last_line"]
    assert report["records"] == RECORDS - checkpoint["last_line"]  # nothing sent twice

    drain(pipeline)
    assert len(landed(small_index)) == RECORDS


def test_message_ids_names_every_message_sent_once_across_a_crash_and_its_resume(
    pipeline: Pipeline, small_index: Any, corpus: Path, outputs: Path, tmp_path: Path
) -> None:
    ids = tmp_path / "message-ids.txt"
    command = [str(Path(sys.executable).parent / "vector-relay"), "--outputs", str(outputs), "load", str(corpus)]
    command += ["--tenant", "acme", "--message-ids", str(ids)]

    killed = subprocess.run(command, env={**os.environ, CRASH_AFTER_BATCHES: "1"}, capture_output=True, text=True)
    assert killed.returncode == 75, killed.stderr
    first = ids.read_text().splitlines()
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    sent = [message["MessageId"] for message in pipeline.drain(pipeline.queue_url)]
    written = ids.read_text().splitlines()
    assert 0 < len(first) < len(written)  # the resume appended to what the killed load wrote
    assert written[: len(first)] == first
    assert sorted(written) == sorted(sent)  # each message the queue holds, once


def test_a_resumed_load_says_after_which_line_it_went_on_and_a_finished_one_that_nothing_is_left(
    pipeline: Pipeline, small_index: Any, corpus: Path, outputs: Path
) -> None:
    script = Path(sys.executable).parent / "vector-relay"
    command = ["--outputs", str(outputs), "load", str(corpus), "--tenant", "acme"]
    killed = subprocess.run(
        [str(script), *command], env={**os.environ, CRASH_AFTER_BATCHES: "1"}, capture_output=True, text=True
    )
    assert killed.returncode == 75, killed.stderr
    last = json.loads(corpus.with_name(corpus.name + ".acme.checkpoint").read_text())["last_line"]

    resumed = CliRunner().invoke(cli, [*command, "--resume"])
    finished = CliRunner().invoke(cli, [*command, "--resume"])

    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith(
        f"published {RECORDS - last:,} records after line {last} (--resume) for tenant acme in "
    )
    assert finished.exit_code == 0, finished.output
    assert finished.stderr == f"this load finished at line {RECORDS}: nothing is left to publish\n"
    assert finished.stdout.startswith(f"published 0 records after line {RECORDS} (--resume) for tenant acme in ")


def test_an_invalid_line_stops_the_load_with_its_number_unless_skipped(outputs: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"id": "ok", "version": 1, "values": [0.1] * DIMENSION})
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "no-values", "version": 1})
        + "\n"
    )

    stopped = CliRunner().invoke(cli, ["--outputs", str(outputs), "load", str(path), "--tenant", "acme"])
    assert stopped.exit_code == 2
    assert "line 2 is not a valid record" in stopped.output

    skipped = CliRunner().invoke(
        cli, ["--outputs", str(outputs), "load", str(path), "--tenant", "acme", "--skip-invalid", "--json"]
    )
    assert skipped.exit_code == 1  # ran, and found invalid lines
    report = json.loads(skipped.output)
    assert report["records"] == 1
    assert [line["line"] for line in report["invalid_lines"]] == [2, 3]


def test_a_parquet_file_loads_like_jsonl(pipeline: Pipeline, small_index: Any, outputs: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": f"p{i}", "version": 2, "values": [0.1 * (i + 1)] * DIMENSION, "metadata": {"n": i}} for i in range(50)
    ]
    rows.append({"id": "bad", "version": 2, "values": None, "metadata": None})  # no vector: invalid
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)

    result = CliRunner().invoke(
        cli, ["--outputs", str(outputs), "load", str(path), "--tenant", "acme", "--skip-invalid", "--json"]
    )

    assert result.exit_code == 1  # the invalid row is reported
    report = json.loads(result.output)
    assert (report["records"], [line["line"] for line in report["invalid_lines"]]) == (50, [51])
    drain(pipeline)
    found = small_index.fetch(ids=[f"p{i}" for i in range(50)], namespace="tenant-acme").vectors
    assert len(found) == 50
    assert found["p7"].metadata == {"n": 7, "_relay_version": "2"}


def sent_to(url: str) -> int:
    """Messages on a queue, visible or not: what a load sent."""
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def jsonl(path: Path, count: int, dimension: int, metadata: dict[str, Any] | None = None) -> Path:
    with path.open("w") as out:
        for i in range(count):
            record = {"id": f"doc-{i}", "version": 1, "values": [0.1 + i / 1000] * dimension}
            out.write(json.dumps(record | ({"metadata": metadata} if metadata else {})) + "\n")
    return path


BOUND_QUEUE = "arn:aws:sqs:us-east-1:123456789012:relay-tenant-acme-ingest"
SCHEMA = {"fields": {"year": {"type": "number", "required": True}}}


@pytest.mark.parametrize(
    ("dimension", "tenant", "registry", "fragment"),
    [
        (
            256,
            "acme",
            SAMPLE_TENANTS,
            f"vector dimension 256 does not match the dimension of the index {SAMPLE_DIMENSION}",
        ),
        (SAMPLE_DIMENSION, "acmee", SAMPLE_TENANTS, "tenant 'acmee' is not in the tenant registry"),
        (
            SAMPLE_DIMENSION,
            "acme",
            {"acme": {"namespace": "tenant-acme", "queues": [BOUND_QUEUE]}},
            "tenant 'acme' may not send through",
        ),
        (
            SAMPLE_DIMENSION,
            "acme",
            {"acme": {"namespace": "tenant-acme", "schema": SCHEMA}},
            "required field 'year' (number) is missing",
        ),
    ],
    ids=["another-dimension", "misspelt-tenant", "tenant-bound-to-its-own-queues", "metadata-against-the-schema"],
)
def test_a_load_the_relay_would_dead_letter_is_refused_before_anything_is_sent(
    pipeline: Pipeline, tmp_path: Path, dimension: int, tenant: str, registry: dict[str, Any], fragment: str
) -> None:
    outputs = write_outputs(pipeline, tmp_path / "outputs.json", INDEX_NAME, registry)  # the 384-dimensional index
    corpus = jsonl(tmp_path / "corpus.jsonl", 50, dimension)

    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "load", str(corpus), "--tenant", tenant])

    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split()), result.output
    assert sent_to(pipeline.queue_url) == 0  # refused before the first message
    assert not list(tmp_path.glob("*.checkpoint"))


def test_a_misspelt_tenant_is_answered_with_the_registered_one(pipeline: Pipeline, tmp_path: Path) -> None:
    outputs = write_outputs(pipeline, tmp_path / "outputs.json", INDEX_NAME)
    corpus = jsonl(tmp_path / "corpus.jsonl", 1, SAMPLE_DIMENSION)

    result = CliRunner().invoke(cli, ["--outputs", str(outputs), "load", str(corpus), "--tenant", "acmee"])

    assert result.exit_code == 2
    assert "did you mean 'acme'?" in result.output
    assert "vector-relay tenant add acmee --namespace" in " ".join(result.output.split())


def test_a_checkpoint_is_never_taken_for_another_tenant_or_another_file(pipeline: Pipeline, tmp_path: Path) -> None:
    outputs = write_outputs(pipeline, tmp_path / "outputs.json", INDEX_NAME)
    corpus = jsonl(tmp_path / "corpus.jsonl", 50, SAMPLE_DIMENSION)
    shared = str(tmp_path / "corpus.checkpoint")

    def load(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--outputs", str(outputs), "load", str(corpus), *args, "--json"])
        return result.exit_code, result.output

    def records(out: str) -> int:
        return int(json.loads(out[out.index("{") :])["records"])

    code, out = load("--tenant", "globex", "--checkpoint", shared)
    assert (code, records(out)) == (0, 50)
    finished = Path(shared).read_text()

    # the same file resumed for another tenant: globex's finished checkpoint is not acme's
    code, out = load("--tenant", "acme", "--resume", "--checkpoint", shared)
    assert code == 2, out
    assert "belongs to another load: tenant 'globex' (this load: 'acme')" in " ".join(out.split())
    code, out = load("--tenant", "acme", "--checkpoint", shared)  # nor is it overwritten by a load for acme
    assert code == 2, out
    assert Path(shared).read_text() == finished
    assert sent_to(pipeline.queue_url) == 1  # the globex load's one message, nothing more

    # by default each tenant's load of the file has a checkpoint of its own
    assert records(load("--tenant", "globex")[1]) == 50
    globex = corpus.with_name("corpus.jsonl.globex.checkpoint").read_text()
    code, out = load("--tenant", "acme", "--resume")  # acme's own checkpoint: there is none yet
    assert (code, records(out)) == (0, 50)
    assert corpus.with_name("corpus.jsonl.globex.checkpoint").read_text() == globex

    # the file changed since globex's load: its checkpoint does not fit it any more
    with corpus.open("a") as more:
        more.write(json.dumps({"id": "late", "version": 1, "values": [0.5] * SAMPLE_DIMENSION}) + "\n")
    code, out = load("--tenant", "globex", "--resume")
    assert code == 2
    assert "another file content" in out
