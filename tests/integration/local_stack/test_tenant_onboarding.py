"""Onboarding a tenant whose writes were refused, as an operator does it against the running stack: the
write dead-lettered as unknown_tenant, `vector-relay tenant add`, `vector-relay dlq redrive` at once. The
workers cache the tenant registry for a minute; the redriven write must land all the same."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from relay_local.inspection import namespace_counts, queue_depth
from relay_local.stack import LocalStack, StackOptions
from relay_local.state_file import StackInfo
from tests.conftest import SAMPLE_DIMENSION, reset_moto, wait_until
from vector_relay_cli.main import cli as vector_relay


def cli(info: StackInfo, *args: str) -> tuple[int, str]:
    """`vector-relay` with the environment `make up`'s export lines set."""
    result = CliRunner().invoke(vector_relay, list(args), env=info.upstream_environment())
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_a_redrive_right_after_tenant_add_lands(tmp_path: Path, moto_server_url: str) -> None:
    reset_moto(moto_server_url)  # in-process moto: nothing an earlier test left may collide with the stack's names
    options = StackOptions(state_dir=tmp_path, parameters={"IngestBatchingWindowSeconds": "1"})
    with LocalStack(options, progress=lambda line: None) as stack:
        info = stack.info
        assert info is not None
        sqs = stack.sqs()
        dead_letters = info.dead_letter_queues["IngestQueue"]

        def in_dead_letters() -> int:
            return sum(queue_depth(sqs, dead_letters).values())

        def landed() -> int:
            return namespace_counts(info.pinecone_url, info.index_name).get("tenant-hooli", 0)

        # GIVEN a write for a tenant not registered yet, refused by the running worker
        upsert = {
            "schema_version": 1,
            "op": "upsert",
            "tenant": "hooli",
            "records": [{"id": "h1", "version": 1, "values": [0.5] * SAMPLE_DIMENSION}],
        }
        sqs.send_message(QueueUrl=info.queues["IngestQueue"], MessageBody=json.dumps(upsert))
        wait_until(lambda: in_dead_letters() == 1, "the write is dead-lettered as unknown_tenant", ceiling=120)

        # WHEN the operator adds the tenant and redrives at once (well within the workers' registry cache)
        code, out = cli(info, "tenant", "add", "hooli", "--namespace", "tenant-hooli")
        assert code == 0, out
        code, out = cli(info, "dlq", "redrive", "--json")
        assert (code, json.loads(out)["moved"]) == (0, 1), out

        # THEN the write lands, and nothing goes back to the dead-letter queue
        wait_until(lambda: landed() == 1 or in_dead_letters() > 0, "the redriven write is judged", ceiling=120)
        assert (landed(), in_dead_letters()) == (1, 0)
