"""The blind claims' request made as JSON by the guard is the request the botocore path builds, value for value.

Where the guard's client takes JSON (the JSON client, :class:`~vector_relay.ingest.dynamodb_json.JsonDynamoDB`),
``VersionGuard._send_blind`` writes the ``TransactWriteItems`` body from a template instead of building a
dictionary per put; the botocore path still builds the dictionaries. Both must carry the same request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from vector_relay.ingest.guard_records import GuardedWrite, Lease
from vector_relay.ingest.version_guard import VersionGuard

TABLE = "versions-table"
NOW_MS = 1_765_000_000_123


class _BotocoreShaped:
    """A client with botocore's methods only: the guard builds the request's dictionary."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def transact_write_items(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {}


class _TakesJson(_BotocoreShaped):
    """A client that also takes a request's JSON (as the JSON client does): the guard writes the bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes | dict[str, Any]] = []

    def send(self, operation: str, request: dict[str, Any] | bytes) -> Callable[[], dict[str, Any]]:
        assert operation == "TransactWriteItems"
        self.bodies.append(request)
        return dict


def _sent(client: _BotocoreShaped, writes: list[GuardedWrite], lease: Lease) -> Any:
    guard = VersionGuard(client, TABLE, ttl_seconds=86_400)  # type: ignore[arg-type]
    sent = guard._send_blind(writes[0].namespace, writes, lease, NOW_MS)
    sent.answer()
    assert sent.now_ms == NOW_MS
    assert sent.writes == min(len(writes), 100)
    assert guard.requests == 1
    return client


ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(
    namespace=ids,
    records=st.lists(
        st.tuples(ids, st.integers(min_value=0, max_value=2**63), st.sampled_from(["upsert", "delete"])),
        min_size=1,
        max_size=120,
        unique_by=lambda record: record[0],
    ),
    token=st.text("0123456789abcdef", min_size=32, max_size=32),
    until_ms=st.integers(min_value=0, max_value=2**53),
)
def test_the_json_written_for_blind_claims_is_the_request_botocore_would_be_given(
    namespace: str, records: list[tuple[str, int, str]], token: str, until_ms: int
) -> None:
    writes = [GuardedWrite(namespace, record_id, version, operation) for record_id, version, operation in records]
    lease = Lease(token, until_ms)
    botocore = _sent(_BotocoreShaped(), writes, lease)
    json_client = _sent(_TakesJson(), writes, lease)
    (body,) = json_client.bodies
    assert isinstance(body, bytes)  # made by the guard, not by orjson from dictionaries
    assert json_client.requests == []
    (request,) = botocore.requests
    assert orjson.loads(body) == request
    assert len(request["TransactItems"]) == min(len(writes), 100)


def test_the_json_written_is_byte_for_byte_what_orjson_makes_of_the_request() -> None:
    """Not only the same values: the same bytes (so the signed payload is what DynamoDB's own encoding would give)."""
    writes = [GuardedWrite("tenant-a", f"doc-{n}#chunk-{n}", n, "delete" if n % 3 else "upsert") for n in range(7)]
    lease = Lease("0123456789abcdef0123456789abcdef", NOW_MS + 300_000)
    (request,) = _sent(_BotocoreShaped(), writes, lease).requests
    (body,) = _sent(_TakesJson(), writes, lease).bodies
    assert body == orjson.dumps(request)
