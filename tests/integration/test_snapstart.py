"""SnapStart: the hooks run around a simulated snapshot, and nothing stale from it is used after a restore.

A restore is simulated the way the runtime does it (before-snapshot hooks, then after-restore
hooks) between two invocations of a warm worker. Across it the key is rotated and the old one
revoked without the worker being told, so a worker that kept its snapshot's key, connections or
clients would either be refused (a 401) or reuse a pooled connection.
"""

from __future__ import annotations

from functions.ingest import app as ingest_app
from functions.query import app as query_app  # noqa: F401 - importing registers the query worker's hooks too
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline
from vector_relay import aws_clients as clients
from vector_relay import dependencies as worker
from vector_relay import snapstart


def test_a_restored_worker_rebuilds_its_connections_and_reads_the_key_again(
    pipeline: Pipeline, lambda_context: FakeLambdaContext
) -> None:
    emulator = pipeline.emulator
    admin = pipeline.admin()
    first = admin.api_keys.create(project_id=emulator.project_id, name="first")
    pipeline.put_key(first.value, first.key.id)

    # GIVEN a worker that served a batch (its clients, gateway and key cached)
    assert ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context) == {"batchItemFailures": []}
    before = worker.worker_dependencies(ingest_app.metrics)
    sqs_before = clients.sqs_client()

    # WHEN a snapshot is taken and restored, while the key is rotated and the old one revoked
    second = admin.api_keys.create(project_id=emulator.project_id, name="second")
    pipeline.put_key(second.value, second.key.id)
    admin.api_keys.delete(api_key_id=first.key.id)
    snapstart.simulate_restore()

    # THEN the next invocation uses new dependencies, new clients and the new key, refused nowhere
    emulator.control.clear_counters()
    assert ingest_app.lambda_handler(load_event("ingest-delete"), lambda_context) == {"batchItemFailures": []}
    after = worker.worker_dependencies(ingest_app.metrics)
    assert after is not before
    assert after.gateways is not before.gateways  # a new Pinecone client, with a new connection pool
    assert clients.sqs_client() is not sqs_before
    assert emulator.control.count(status=401) == 0
    assert pipeline.fetch("acme", ["doc-42#1"]) == {}
    assert pipeline.drain() == []


def test_the_worker_hooks_are_registered_with_the_runtime_module_once() -> None:
    import snapshot_restore_py  # installed by awslambdaric here; provided by Lambda's runtime there

    befores = [entry[0] for entry in snapshot_restore_py.get_before_snapshot()]
    afters = [entry[0] for entry in snapshot_restore_py.get_after_restore()]
    assert befores.count(snapstart.prime) == 1  # the ingest and the query worker share one registration
    assert afters.count(snapstart.refresh) == 1
