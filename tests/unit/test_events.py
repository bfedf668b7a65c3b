"""The sample events are shaped as Lambda builds them; valid ones parse, poison ones fail with their documented code."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from typing import Any

import pytest

from tests.conftest import (
    EVENTS,
    ROOT,
    SAMPLE_DIMENSION,
    SAMPLE_REPLY_QUEUE,
    SAMPLE_TENANTS,
    load_event,
)
from vector_relay.contract.fields import IndexShape, ValidationContext
from vector_relay.contract.parsing import ERROR_CODES, parse_query_message, parse_write_message
from vector_relay.contract.receipts import Receipt, receipt_id
from vector_relay.errors import PoisonMessageError
from vector_relay.keys.rotation import RotationEvent

CONTEXT = ValidationContext(
    tenants=SAMPLE_TENANTS,
    index=IndexShape(dimension=SAMPLE_DIMENSION, metric="cosine"),
    reply_queues={SAMPLE_REPLY_QUEUE},
)
SQS_EVENTS = sorted(
    path.stem for path in EVENTS.glob("*.json") if not path.stem.startswith(("rotation-", "reconcile-"))
)
ROTATION_EVENTS = sorted(path.stem for path in EVENTS.glob("rotation-*.json"))
RECEIPT_EVENTS = [name for name in SQS_EVENTS if name.startswith("receipts-")]  # the receipt retry queue's
MESSAGE_EVENTS = [name for name in SQS_EVENTS if name not in RECEIPT_EVENTS]  # the ingest and query queues'


def documented_poison() -> dict[str, dict[int, str]]:
    """``{event file: {record index: error_code}}`` from the tables in events/README.md."""
    readme = (EVENTS / "README.md").read_text()
    tables: dict[str, dict[int, str]] = {}
    for name, table in re.findall(r"`([a-z-]+)\.json` \(record[^\n]*\n\n((?:\|[^\n]*\n)+)", readme):
        tables[name] = {int(i): code for i, code in re.findall(r"^\| (\d+) \| `([a-z_]+)` \|", table, re.MULTILINE)}
    return tables


def parser_for(event: dict[str, Any]) -> Any:
    queue = event["Records"][0]["eventSourceARN"].rsplit(":", 1)[1]
    return parse_query_message if queue.endswith("query") else parse_write_message


def sam_generated_record() -> dict[str, Any]:
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    output = subprocess.run(
        [str(sam), "local", "generate-event", "sqs", "receive-message"],
        check=True,
        capture_output=True,
        text=True,
        env={"SAM_CLI_TELEMETRY": "0", "PATH": "/usr/bin:/bin"},
    ).stdout
    return json.loads(output)["Records"][0]


def test_every_sample_sqs_record_has_the_shape_lambda_builds() -> None:
    reference = sam_generated_record()
    for name in SQS_EVENTS:
        for record in load_event(name)["Records"]:
            assert set(record) == set(reference), name
            assert set(record["attributes"]) == set(reference["attributes"]), name
            assert record["eventSource"] == "aws:sqs"
            assert record["md5OfBody"] == hashlib.md5(record["body"].encode(), usedforsecurity=False).hexdigest()
            assert record["awsRegion"] == record["eventSourceARN"].split(":")[3]


def test_message_ids_are_unique_within_each_batch() -> None:
    for name in SQS_EVENTS:
        ids = [record["messageId"] for record in load_event(name)["Records"]]
        assert len(ids) == len(set(ids)), name


def test_poison_tables_cover_the_mixed_samples() -> None:
    tables = documented_poison()
    assert set(tables) == {"ingest-mixed-with-poison", "query-mixed-with-poison"}
    assert all(code in ERROR_CODES for table in tables.values() for code in table.values())
    # every code a message can be dead-lettered with on arrival has a sample
    # set by the worker: from Pinecone's answer, the delivery count, the source queue, the tenant's schema,
    # the time the write was first sent, or the size of the reply
    worker_codes = {
        "pinecone_rejected",
        "retries_exhausted",
        "write_expired",
        "tenant_not_bound",
        "metadata_schema_violation",
        "filter_field_not_declared",
        "filter_type_mismatch",
        "result_too_large",
    }
    assert set(ERROR_CODES) - worker_codes == {code for table in tables.values() for code in table.values()}


@pytest.mark.parametrize("name", MESSAGE_EVENTS)
def test_valid_samples_parse_and_poison_samples_fail_with_their_code(name: str) -> None:
    event = load_event(name)
    parse = parser_for(event)
    poison = documented_poison().get(name, {})
    for index, record in enumerate(event["Records"]):
        if index in poison:
            with pytest.raises(PoisonMessageError) as caught:
                parse(record["body"], CONTEXT)
            assert caught.value.error_code == poison[index], f"{name} record {index}"
        else:
            parse(record["body"], CONTEXT)


def test_the_receipt_retry_samples_are_receipts_of_the_ingest_samples() -> None:
    assert RECEIPT_EVENTS == ["receipts-retry"]
    ingest_ids = {
        record["messageId"]
        for name in MESSAGE_EVENTS
        if name.startswith("ingest-")
        for record in load_event(name)["Records"]
    }
    receipts = [Receipt.model_validate_json(record["body"]) for record in load_event("receipts-retry")["Records"]]
    assert {receipt.fate for receipt in receipts} == {"applied", "dead_lettered"}
    for receipt in receipts:
        assert receipt.message_id in ingest_ids
        assert receipt.tenant in SAMPLE_TENANTS
        assert receipt.receipt_id == receipt_id(
            receipt.message_id, receipt.fate, receipt.op, receipt.records, receipt.stale, receipt.error_code
        )
        assert receipt.body() == json.dumps(json.loads(receipt.body()), separators=(",", ":"))  # as the relay sends it


@pytest.mark.parametrize("name", ROTATION_EVENTS)
def test_rotation_step_samples_parse(name: str) -> None:
    event = RotationEvent.model_validate(load_event(name))
    assert name.removeprefix("rotation-").replace("-", "") == event.step.lower()
    assert event.secret_id.startswith("arn:aws:secretsmanager:")


def test_there_is_one_sample_per_rotation_step() -> None:
    assert len(ROTATION_EVENTS) == 4
