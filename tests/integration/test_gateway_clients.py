"""A warm worker keeps one Pinecone HTTP client open, however many times the API key changes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from functions.ingest import app as ingest_app
from functions.query import app as query_app
from tests.conftest import FakeLambdaContext, load_event
from tests.integration.conftest import Pipeline
from vector_relay.dependencies import reset_worker_dependencies


@pytest.fixture
def open_http_clients(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts the async HTTP clients (connection pools) made during the test and not closed.

    Each client is held here, so one dropped without `aclose()` stays counted instead of being
    collected out of sight (its sockets would then close only when the garbage collector runs).
    """
    made: list[httpx.AsyncClient] = []
    init = httpx.AsyncClient.__init__

    def record(self: httpx.AsyncClient, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(httpx.AsyncClient, "__init__", record)
    return lambda: sum(not client.is_closed for client in made)


def test_the_client_of_each_replaced_key_is_closed_across_three_key_changes(
    pipeline: Pipeline, lambda_context: FakeLambdaContext, open_http_clients: Callable[[], int]
) -> None:
    emulator = pipeline.emulator
    admin = pipeline.admin()

    def replace_key(name: str, revoke: str | None) -> str:
        """A new key in the secret, the one the workers hold revoked: their next request is refused, re-reads."""
        key = admin.api_keys.create(project_id=emulator.project_id, name=name)
        pipeline.put_key(key.value, key.key.id)
        if revoke is not None:
            admin.api_keys.delete(api_key_id=revoke)
        return str(key.key.id)

    held = replace_key("first", None)
    before = open_http_clients()  # none yet: each worker makes its client on its first request
    assert ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context) == {"batchItemFailures": []}
    assert open_http_clients() == before + 1  # the worker's client, kept open while the container is warm
    assert query_app.lambda_handler(load_event("query"), lambda_context) == {"batchItemFailures": []}
    assert open_http_clients() == before + 2  # one per function (each is its own container in Lambda)

    for change in range(3):
        held = replace_key(f"key-{change}", revoke=held)
        refused = emulator.control.count(status=401)
        assert ingest_app.lambda_handler(load_event("ingest-upsert"), lambda_context) == {"batchItemFailures": []}
        assert query_app.lambda_handler(load_event("query"), lambda_context) == {"batchItemFailures": []}
        assert emulator.control.count(status=401) > refused  # the workers really met the revoked key
        assert open_http_clients() == before + 2  # without closing replaced clients: 4, 6, 8

    reset_worker_dependencies()
    assert open_http_clients() == before
