"""The ingest function end to end: SQS events as Lambda builds them, moto's SQS, the Pinecone emulator over HTTP.

Which failures are which: a message the contract or Pinecone refuses is **poison** (DLQ on first
receive, with a reason); throttling, 5xx, dropped connections and deadline cut-offs are
**transient** (left on the queue for SQS to redeliver; dead-lettered with ``retries_exhausted``
only on the last delivery before the redrive limit).
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from pinecone import Pinecone

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_DIMENSION, FakeLambdaContext, load_event
from tests.integration.conftest import INDEX_NAME, Pipeline, SqsDriver, parametrize_transports
from tests.unit.test_events import documented_poison
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.settings import get_settings


def vector(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(-1, 1), 6) for _ in range(SAMPLE_DIMENSION)]


def upsert_body(tenant: str, ids: list[str], version: int = 1, **metadata: Any) -> str:
    records = [
        {
            "id": i,
            "version": version,
            # a seed that is the same in every process (str hashes are salted per process: with hash() two
            # ids could share a vector in one run in ten thousand, and a query by id then found a tie)
            "values": vector(zlib.crc32(f"{i}\0{version}".encode())),
            "metadata": {"v": version, **metadata},
        }
        for i in ids
    ]
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": records})


def index_state(pipeline: Pipeline, tenant: str, ids: list[str]) -> dict[str, tuple[list[float], dict[str, Any]]]:
    return {i: (list(v.values), dict(v.metadata or {})) for i, v in pipeline.fetch(tenant, ids).items()}


def deliver_until_done(event: dict[str, Any], context: FakeLambdaContext, deliveries: int = 10) -> None:
    """Invoke with ``event``, then with its failed records again, as SQS redelivers them, until none fails
    (on a busy machine a guard claim or a request may time out: a transient failure, retried)."""
    for _ in range(deliveries):
        try:
            failed = {item["itemIdentifier"] for item in ingest_app.lambda_handler(event, context)["batchItemFailures"]}
        except BatchProcessingError:  # every record failed
            failed = {record["messageId"] for record in event["Records"]}
        if not failed:
            return
        event = {"Records": [record for record in event["Records"] if record["messageId"] in failed]}
    raise AssertionError(f"still failing after {deliveries} deliveries: {sorted(failed)}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_transports(metafunc)  # every test here runs over REST and over gRPC


def test_sample_upserts_land_exactly_as_sent(pipeline: Pipeline, lambda_context: FakeLambdaContext) -> None:
    event = load_event("ingest-upsert")

    response = ingest_app.lambda_handler(event, lambda_context)

    assert response == {"batchItemFailures": []}
    sent = [json.loads(r["body"]) for r in event["Records"]]
    for message in sent:
        ids = [r["id"] for r in message["records"]]
        landed = pipeline.fetch(message["tenant"], ids)
        for record in message["records"]:
            assert list(landed[record["id"]].values) == pytest.approx(record["values"], rel=1e-6)
            # exactly as sent, plus the version the relay records in every upserted record
            assert dict(landed[record["id"]].metadata) == {
                **record["metadata"],
                "_relay_version": str(record["version"]),
            }
    assert pipeline.namespace_count("acme") == 2
    assert pipeline.namespace_count("globex") == 1


def test_every_sample_event_runs_through_the_handler(pipeline: Pipeline, lambda_context: FakeLambdaContext) -> None:
    # upsert, then delete one id, then delete by filter, then purge the other tenant
    for name, expect in [
        ("ingest-upsert", {"acme": 2, "globex": 1}),
        ("ingest-delete", {"acme": 1, "globex": 1}),
        ("ingest-delete-by-filter", {"acme": 0, "globex": 1}),
        ("ingest-purge-tenant", {"acme": 0, "globex": 0}),
    ]:
        assert ingest_app.lambda_handler(load_event(name), lambda_context) == {"batchItemFailures": []}, name
        assert {t: pipeline.namespace_count(t) for t in expect} == expect, name
    assert pipeline.drain() == []


def test_a_higher_version_wins_within_a_batch_and_a_later_delete_removes(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(
        [
            upsert_body("acme", ["a", "b"], version=5, note="v5"),
            upsert_body("acme", ["a"], version=3, note="v3"),
            json.dumps({"schema_version": 1, "op": "delete", "tenant": "acme", "records": [{"id": "b", "version": 6}]}),
        ]
    )
    driver.run_until_empty()
    state = index_state(pipeline, "acme", ["a", "b"])
    assert set(state) == {"a"}
    assert state["a"][1] == {"v": 5, "note": "v5", "_relay_version": "5"}


def test_the_same_batch_delivered_twice_leaves_the_same_state(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    event = load_event("ingest-mixed-with-poison")
    ids = ["doc-42#0", "doc-42#1"]
    deliver_until_done(event, lambda_context)
    first = index_state(pipeline, "acme", ids)
    assert set(first) == set(ids)
    pipeline.drain()

    deliver_until_done(event, lambda_context)

    assert index_state(pipeline, "acme", ids) == first
    assert len(pipeline.drain()) == len(documented_poison()["ingest-mixed-with-poison"])  # reported again


def test_throttling_and_outages_end_with_every_valid_record_applied(pipeline: Pipeline) -> None:
    # GIVEN Pinecone answering 20% of upserts with 429 or 503 (the SDK retries some, SQS redelivers the rest)
    pipeline.emulator.control.add_fault("upsert", status=429, retry_after="0", rate=0.1)
    pipeline.emulator.control.add_fault("upsert", status=503, retry_after="0", rate=0.1)
    tenants = ["acme", "globex"]
    bodies = [upsert_body(tenants[m % 2], [f"m{m}-r{r}" for r in range(5)]) for m in range(40)]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish(bodies)

    # WHEN the queue is consumed until it is empty
    driver.run_until_empty(max_invocations=60)

    # THEN every record is in the index, and nothing valid went to the DLQ
    assert pipeline.namespace_count("acme") + pipeline.namespace_count("globex") == 200
    assert pipeline.drain() == []
    assert (
        pipeline.emulator.control.count("upsert", status=429) + pipeline.emulator.control.count("upsert", status=503)
        > 0
    )


def test_a_long_retry_after_cannot_push_the_handler_past_its_deadline(pipeline: Pipeline, transport: str) -> None:
    # GIVEN every upsert answered with 429 and Retry-After: 120 (the SDK would wait up to 60 s, four times)
    pipeline.emulator.control.add_fault("upsert", status=429, retry_after="120")
    event = load_event("ingest-upsert")
    context = FakeLambdaContext(remaining_ms=10_000)

    # WHEN invoked with 10 s left
    with pytest.raises(BatchProcessingError):  # every message failed: Lambda hands the batch back to SQS
        ingest_app.lambda_handler(event, context)

    # THEN no request waited for a Retry-After that ends past the deadline (were it waited, the test
    # would hit its 120 s timeout): over REST Pinecone's 429 ends the request; gRPC carries no
    # Retry-After, so there the gateway's own short back-off retries, up to its attempts. Every
    # namespace was tried and every attempt refused; nothing dead-lettered or lost. (At most, not
    # exactly: on a busy machine an attempt can outlive its timeout and be tried again.)
    control = pipeline.emulator.control
    namespaces = {json.loads(record["body"])["tenant"] for record in event["Records"]}  # one request each
    assert control.count("upsert") == control.count("upsert", status=429)
    assert len(namespaces) <= control.count("upsert") <= get_settings().pinecone_max_attempts * len(namespaces)
    assert pipeline.drain() == []
    assert pipeline.namespace_count("acme") == 0


def test_a_rejected_request_is_split_and_the_rest_lands(pipeline: Pipeline) -> None:
    # GIVEN two messages for one namespace, coalesced into one request that Pinecone rejects once (400)
    pipeline.emulator.control.script("upsert", {"status": 400, "message": "scripted rejection"})
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ["a1", "a2"]), upsert_body("acme", ["b1"])])

    response = driver.deliver_once()

    # THEN the request was split per message and both halves landed; nothing is poison (unsplit, both
    # messages would be in the DLQ as pinecone_rejected). The rejection was answered once; how many
    # attempts the halves took is the machine's timing (an attempt may outlive its timeout).
    assert response == {"batchItemFailures": []}
    assert pipeline.emulator.control.count("upsert", status=400) == 1
    assert pipeline.emulator.control.count("upsert", status=200) >= 2
    assert pipeline.namespace_count("acme") == 3
    assert pipeline.drain() == []


def test_a_message_pinecone_rejects_alone_is_dead_lettered_as_pinecone_rejected(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    pipeline.emulator.control.script("upsert", {"status": 400, "message": "scripted rejection"})
    event = load_event("ingest-upsert")
    event["Records"] = event["Records"][1:]  # one message: the rejection is its own

    assert ingest_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    [dead] = pipeline.drain()
    attributes = DeadLetterAttributes.from_message_attributes(dead["MessageAttributes"])
    assert attributes.error_code == "pinecone_rejected"
    assert "scripted rejection" in attributes.error_detail
    assert dead["Body"] == event["Records"][0]["body"]


def test_the_last_delivery_of_a_failing_message_goes_to_the_dlq_with_retries_exhausted(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, transport: str
) -> None:
    pipeline.emulator.control.add_fault("upsert", status=503, retry_after="0")
    event = load_event("ingest-upsert")
    for record in event["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "5"

    assert ingest_app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}

    dead = pipeline.drain()
    assert len(dead) == 2
    for message in dead:
        attributes = DeadLetterAttributes.from_message_attributes(message["MessageAttributes"])
        assert attributes.error_code == "retries_exhausted"
        # the failure is named: REST's 503, gRPC's UNAVAILABLE ("Service unavailable")
        assert ("503" if transport == "rest" else "unavailable") in attributes.error_detail.lower()
        assert attributes.receive_count == 5


DELETE_EVENTS = ["ingest-delete", "ingest-delete-by-filter", "ingest-purge-tenant"]  # by id, by filter, all


def delete_by_filter_body(filter_: dict[str, Any], **fields: Any) -> str:
    return json.dumps({"schema_version": 1, "op": "delete_by_filter", "tenant": "acme", "filter": filter_} | fields)


def test_a_delete_by_filter_that_could_empty_the_namespace_needs_the_tenant_s_confirm(pipeline: Pipeline) -> None:
    # GIVEN a tenant with records
    ids = [f"keep-{i}" for i in range(5)]
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    driver.publish([upsert_body("acme", ids, doc_id="doc-1")])
    driver.run_until_empty()
    both = [{"doc_id": {"$exists": True}}, {"doc_id": {"$exists": False}}]
    refused = {
        "relay-version": delete_by_filter_body({"_relay_version": {"$exists": True}}),  # the attack: every record
        "relay-version-deep": delete_by_filter_body({"$or": [{"doc_id": "x"}, {"_relay_version": {"$eq": "1"}}]}),
        "match-all": delete_by_filter_body({"$or": both}),
        "match-all-nested": delete_by_filter_body({"$and": [{"$or": [{"$or": both}]}]}),
        "other-tenant": delete_by_filter_body({"$or": both}, confirm="globex"),
        "selective-other-tenant": delete_by_filter_body({"doc_id": "doc-9"}, confirm="globex"),
    }

    # WHEN deletes by filter that reach every record, or name the relay's own field, come without the tenant's confirm
    driver.publish(list(refused.values()))
    assert driver.deliver_once() == {"batchItemFailures": []}

    # THEN nothing was deleted, and each is poison on first receive, with its code
    assert set(pipeline.fetch("acme", ids)) == set(ids)
    letters = {m["Body"]: m["MessageAttributes"]["error_code"]["StringValue"] for m in pipeline.drain()}
    assert {name: letters.get(body) for name, body in refused.items()} == {
        "relay-version": "filter_field_reserved",
        "relay-version-deep": "filter_field_reserved",
        "match-all": "delete_not_confirmed",
        "match-all-nested": "delete_not_confirmed",
        "other-tenant": "delete_not_confirmed",
        "selective-other-tenant": "delete_not_confirmed",
    }

    # AND a selective filter needs no confirm, and a match-all one confirmed like a purge empties the namespace
    driver.publish([delete_by_filter_body({"doc_id": "doc-9"})])
    driver.run_until_empty()
    assert set(pipeline.fetch("acme", ids)) == set(ids)
    driver.publish([delete_by_filter_body({"$or": both}, confirm="acme")])
    driver.run_until_empty()
    assert pipeline.fetch("acme", ids) == {}
    assert pipeline.drain() == []


def test_deletes_in_namespaces_never_written_succeed(pipeline: Pipeline, lambda_context: FakeLambdaContext) -> None:
    # GIVEN a new index: no tenant's namespace exists, so Pinecone answers each delete "Namespace not found"
    for name in DELETE_EVENTS:
        # WHEN each kind of delete arrives
        response = ingest_app.lambda_handler(load_event(name), lambda_context)

        # THEN it is done: there was nothing to delete
        assert response == {"batchItemFailures": []}, name
    # every delete attempt answered 404, at least one per event (a busy machine may retry a timed-out one)
    assert pipeline.emulator.control.count("delete") == pipeline.emulator.control.count("delete", status=404)
    assert pipeline.emulator.control.count("delete", status=404) >= len(DELETE_EVENTS)
    assert pipeline.drain() == []


def test_deletes_on_an_index_that_is_gone_are_retried_and_counted_for_the_alarm(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the index the workers' host names was deleted (a wrong PINECONE_INDEX_HOST answers the same)
    with Pinecone(api_key=pipeline.emulator.api_key, host=pipeline.emulator.url) as client:
        client.delete_index(INDEX_NAME)
    capsys.readouterr()

    for name in DELETE_EVENTS:
        # WHEN each kind of delete arrives
        with pytest.raises(BatchProcessingError):  # every message of the batch failed: all go back to SQS
            ingest_app.lambda_handler(load_event(name), lambda_context)

    # THEN none was taken for done (the 404 is about the index, not a namespace), none is poison,
    # and each invocation counted the metric PineconeIndexNotFoundAlarm watches
    # every delete attempt answered 404, at least one per event (a busy machine may retry a timed-out one)
    assert pipeline.emulator.control.count("delete") == pipeline.emulator.control.count("delete", status=404)
    assert pipeline.emulator.control.count("delete", status=404) >= len(DELETE_EVENTS)
    assert pipeline.drain() == []
    assert emitted(capsys.readouterr().out, "PineconeIndexNotFound") == [1.0] * len(DELETE_EVENTS)


def emitted(stdout: str, metric: str) -> list[float]:
    """The values of ``metric`` in the CloudWatch embedded-metric lines a function printed, in order."""
    values: list[float] = []
    for line in stdout.splitlines():
        if '"_aws"' in line and f'"{metric}"' in line:
            value = json.loads(line)[metric]
            values.extend(value if isinstance(value, list) else [value])
    return values
