"""`make invoke` for every sample event, `make status`, and env.local.json, against one local stack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from relay_local.cli import main
from relay_local.env_vars import sam_env_vars
from relay_local.inspection import drain_messages, namespace_counts, queue_depth
from relay_local.invoke import invoke_event
from relay_local.sample_deployment import SAMPLE_REPLY_QUEUE_URL
from relay_local.stack import LocalStack, StackOptions
from relay_local.status import collect_status
from tests.conftest import EVENTS, ROOT, reset_moto
from vector_relay_cli.main import cli as vector_relay

EVENT_FILES = sorted(EVENTS.glob("*.json"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, moto_server_url: str) -> Iterator[LocalStack]:
    """A `make up`-like stack without pollers (invoke and status need no consumer), with its state file."""
    reset_moto(moto_server_url)  # in-process moto: nothing an earlier test left may collide with the stack's names
    state_dir = tmp_path_factory.mktemp("local-stack")
    with LocalStack(StackOptions(state_dir=state_dir, pollers=False), progress=lambda line: None) as running:
        yield running


def function_for(event_file: Path) -> str:
    kind = event_file.stem.split("-", 1)[0]
    return {
        "ingest": "ingest",
        "query": "query",
        "receipts": "receipts",
        "reconcile": "reconcile",
        "rotation": "rotate_key",
    }[kind]


def bodies(event: dict[str, Any]) -> list[dict[str, Any]]:
    parsed = []
    for record in event.get("Records", []):
        try:
            parsed.append(json.loads(record["body"]))
        except ValueError:
            parsed.append({})
    return parsed


@pytest.mark.parametrize("event_file", EVENT_FILES, ids=[f.stem for f in EVENT_FILES])
def test_every_sample_event_gets_the_functions_real_answer(stack: LocalStack, event_file: Path) -> None:
    info = stack.info
    assert info is not None
    event = json.loads(event_file.read_text())
    sqs = stack.sqs()
    reply_queue = sqs.get_queue_url(QueueName=SAMPLE_REPLY_QUEUE_URL.rsplit("/", 1)[1])["QueueUrl"]

    result = invoke_event(info, function_for(event_file), event, log=open("/dev/null", "w"))  # noqa: SIM115

    if event_file.stem.startswith("rotation"):
        # The samples name a secret ARN ("...vector-relay-pinecone-api-key-AbCdEf") no local stack can have:
        # moto gives every secret its own random suffix. The rotation function refuses, with Secrets Manager's error.
        assert result.outcome == "error"
        assert result.payload["errorType"] == "ResourceNotFoundException"
        return
    if event_file.stem.startswith("reconcile"):
        # a whole pass over the guard's table; what the ingest samples wrote matches (or is still leased)
        assert result.outcome == "ok"
        assert (result.payload["complete"], result.payload["ReconcileMismatches"]) == (True, 0)
        return
    assert (result.outcome, result.payload) == ("ok", {"batchItemFailures": []})
    if event_file.stem.startswith("query"):
        # every query with the sample reply_to (allow-listed by the local stack) got a reply there
        expected = sum(b.get("reply_to") == SAMPLE_REPLY_QUEUE_URL for b in bodies(event))
        replies = [json.loads(m["Body"]) for m in drain_messages(sqs, reply_queue)]
        assert len(replies) == expected
        assert sorted(str(r.get("correlation_id")) for r in replies) == sorted(
            str(b.get("correlation_id")) for b in bodies(event) if b.get("reply_to") == SAMPLE_REPLY_QUEUE_URL
        )
    if event_file.stem == "ingest-upsert":
        assert namespace_counts(info.pinecone_url, info.index_name).get("tenant-acme", 0) >= 1


def test_make_invoke_uses_the_running_stack_and_prints_the_response(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = stack.options.state_dir

    exit_code = main(["invoke", "ingest", str(EVENTS / "ingest-upsert.json"), "--state-dir", str(state_dir)])

    captured = capsys.readouterr()
    assert exit_code == 0
    assert json.loads(captured.out) == {"batchItemFailures": []}
    assert "against the running local stack" in captured.err
    assert "REPORT RequestId:" in captured.err


def test_make_invoke_names_the_functions_for_a_wrong_fn_and_the_samples_for_a_missing_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = str(tmp_path / "no-stack")  # refused before any stack is looked for or started

    wrong_function = main(["invoke", "wrong", str(EVENTS / "ingest-upsert.json"), "--state-dir", state_dir])
    wrong = capsys.readouterr()
    missing_event = main(["invoke", "ingest", "no/such/file.json", "--state-dir", state_dir])
    missing = capsys.readouterr()
    (tmp_path / "broken.json").write_text("{not json")
    broken_event = main(["invoke", "ingest", str(tmp_path / "broken.json"), "--state-dir", state_dir])
    broken = capsys.readouterr()

    assert (wrong_function, wrong.out) == (2, "")
    assert wrong.err.splitlines() == [
        "make invoke: FN=wrong: no function 'wrong' in the template; known: ingest (IngestFunction), "
        "query (QueryFunction), rotate_key (RotateKeyFunction), reconcile (ReconcileFunction), "
        "receipts (ReceiptsFunction)"
    ]
    assert (missing_event, missing.out, len(missing.err.splitlines())) == (2, "", 1)
    assert missing.err.startswith(
        "make invoke: EVENT=no/such/file.json: cannot read it (No such file or directory); the sample events in "
        "events/: ingest-delete-by-filter.json, "
    )
    assert "ingest-upsert.json" in missing.err
    assert (broken_event, broken.out, len(broken.err.splitlines())) == (2, "", 1)
    assert broken.err.startswith(f"make invoke: EVENT={tmp_path / 'broken.json'} is not JSON: ")
    assert not (tmp_path / "no-stack").exists()


def test_status_shows_queue_depths_dead_letters_with_reasons_and_index_stats(stack: LocalStack) -> None:
    info = stack.info
    assert info is not None
    sqs = stack.sqs()
    drain_messages(sqs, info.dead_letter_queues["IngestQueue"])
    sqs.send_message(QueueUrl=info.queues["IngestQueue"], MessageBody="waiting")
    poison = json.loads((EVENTS / "ingest-mixed-with-poison.json").read_text())
    invoke_event(info, "ingest", {"Records": poison["Records"][:3]}, log=open("/dev/null", "w"))  # noqa: SIM115

    status = collect_status(info)

    assert status["queues"]["IngestQueue"]["visible"] == 1
    codes = sorted(m["error_code"] for m in status["dead_letters"]["IngestQueue"])
    assert codes == ["invalid_json", "schema_violation"]
    assert all(m["reason"].startswith(f"[{m['error_code']}]") for m in status["dead_letters"]["IngestQueue"])
    assert status["indexes"][info.index_name]["tenant-acme"] >= 1
    assert status["emulator_requests"]["upsert"]["200"] >= 1
    # peeking left the dead letters where they were
    assert (
        queue_depth(sqs, info.dead_letter_queues["IngestQueue"])["visible"]
        + queue_depth(sqs, info.dead_letter_queues["IngestQueue"])["in_flight"]
        == 2
    )


def test_env_local_json_is_what_the_local_stack_gives_each_function(stack: LocalStack) -> None:
    committed = json.loads((ROOT / "env.local.json").read_text())
    assert committed == sam_env_vars(), "regenerate: .venv/bin/python -m relay_local env-vars > env.local.json"
    info = stack.info
    assert info is not None
    by_logical_id = {
        "IngestFunction": "ingest",
        "QueryFunction": "query",
        "ReceiptsFunction": "receipts",
        "ReconcileFunction": "reconcile",
        "RotateKeyFunction": "rotate_key",
    }
    assert set(committed) == set(by_logical_id)
    for logical_id, short_name in by_logical_id.items():
        running = info.functions[short_name]["environment"]
        assert set(committed[logical_id]) <= set(running)
        for name, value in committed[logical_id].items():
            if name in {"AWS_ENDPOINT_URL", "PINECONE_CONTROL_HOST", "PINECONE_OAUTH_URL", "PINECONE_INDEX_HOST"} or (
                "QUEUE" in name
            ):
                continue  # the same services on the fixed ports of `make up`
            if name.endswith("SECRET_ARN"):
                assert running[name].rsplit(":", 1)[1].startswith(value)  # a name instead of moto's suffixed ARN
            else:
                assert running[name] == value, name


def test_vector_relay_finds_the_local_stack_by_its_outputs_file(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = stack.info
    assert info is not None
    environment = info.upstream_environment()
    assert environment["VECTOR_RELAY_OUTPUTS"] == str(stack.options.state_dir / "outputs.json")
    outputs = json.loads(Path(environment["VECTOR_RELAY_OUTPUTS"]).read_text())
    assert outputs["PineconeIndexHost"] == info.index_host
    assert outputs["WriteVersionTableName"] == info.resources["WriteVersionTable"]
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(vector_relay, ["reconcile", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mismatches_total"] == 0


def test_the_outputs_name_the_workers_alias_and_the_grpc_endpoint(stack: LocalStack) -> None:
    info = stack.info
    assert info is not None
    assert info.outputs["IngestFunctionArn"].endswith(":live")  # SAM's AutoPublishAlias, as tenant.yaml needs
    assert info.outputs["QueryFunctionArn"].endswith(":live")
    assert info.grpc_host.startswith("http://127.0.0.1:")
