"""The reconciler compares the version guard's table with the index (moto's DynamoDB, the emulator over HTTP).

Records are written through the ingest handler, then the index is damaged behind the relay's back,
the way a late write or an outside client would: each kind of mismatch is reported by name, a
record still under a live lease is left alone, and only a resurrected record is repaired.
"""

from __future__ import annotations

import json
import time

import boto3

from functions.ingest import app as ingest_app
from tests.conftest import SAMPLE_TENANTS
from tests.integration.conftest import Pipeline, SqsDriver
from tests.integration.test_ingest import upsert_body, vector
from vector_relay.pinecone_gateway import RecordReader
from vector_relay.reconcile import Mismatch, compare, guard_records

NAMESPACE = SAMPLE_TENANTS["acme"]
TABLE = "relay-write-versions"


def delete_body(ids: list[str], version: int) -> str:
    records = [{"id": i, "version": version} for i in ids]
    return json.dumps({"schema_version": 1, "op": "delete", "tenant": "acme", "records": records})


def test_each_kind_of_mismatch_is_reported_and_only_a_resurrected_record_is_repaired(pipeline: Pipeline) -> None:
    # GIVEN records written through the relay: a, b (v3 over v1), c (deleted at v2), d, e (in order)
    driver = SqsDriver(pipeline.queue_url, pipeline.queue_arn, ingest_app.lambda_handler)
    for body in (
        upsert_body("acme", ["a", "b", "c", "d", "e"], version=1),
        delete_body(["c"], version=2),
        upsert_body("acme", ["b"], version=3),
    ):
        driver.publish([body])
        driver.run_until_empty()
    dynamodb = boto3.client("dynamodb")
    reader = RecordReader(host=pipeline.emulator.index_host("relay-test"), api_key=pipeline.emulator.api_key)
    settled = int(time.time() * 1000) + 3_600_000  # an hour on: every lease of those writes is over
    try:
        clean = compare(guard_records(dynamodb, TABLE), reader, now_ms=settled)
        assert (clean.checked, clean.mismatches) == (5, [])
        live = compare(guard_records(dynamodb, TABLE), reader, now_ms=0)  # every lease still live
        assert (live.checked, live.in_flight) == (0, 5)

        # WHEN the index is damaged behind the relay's back
        index = pipeline.index
        index.delete(ids=["a"], namespace=NAMESPACE)  # missing
        index.upsert(vectors=[("b", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)  # behind
        index.upsert(vectors=[("c", vector(1), {"_relay_version": "1"})], namespace=NAMESPACE)  # resurrected
        index.upsert(vectors=[("d", vector(1), {"_relay_version": "9"})], namespace=NAMESPACE)  # ahead
        index.upsert(vectors=[("e", vector(1), {"note": "outside"})], namespace=NAMESPACE)  # unversioned
        report = compare(guard_records(dynamodb, TABLE), reader, now_ms=settled, repair=True)

        # THEN each is reported by name, and only the resurrected record is deleted again
        assert sorted(report.mismatches, key=lambda m: m.record_id) == [
            Mismatch(NAMESPACE, "a", "missing", 1, "upsert", None),
            Mismatch(NAMESPACE, "b", "behind", 3, "upsert", "1"),
            Mismatch(NAMESPACE, "c", "resurrected", 2, "delete", "1"),
            Mismatch(NAMESPACE, "d", "ahead", 1, "upsert", "9"),
            Mismatch(NAMESPACE, "e", "unversioned", 1, "upsert", None),
        ]
        assert report.repaired == 1
        after = compare(guard_records(dynamodb, TABLE), reader, now_ms=settled)
        assert after.counts() == {"missing": 1, "behind": 1, "ahead": 1, "unversioned": 1}
        assert set(pipeline.fetch("acme", ["c"])) == set()
    finally:
        reader.close()
