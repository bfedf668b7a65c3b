"""Faults on demand: scripted and random errors, Retry-After, dropped connections, latency, rate limits,
indexing lag, counters and reset. Injected 429/5xx carry ``Retry-After: 0`` so the SDK's retries stay fast."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pinecone import Index, RateLimitError, ServiceError

from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.integration.emulator.conftest import IndexFactory


@pytest.fixture
def index(make_index: IndexFactory) -> Index:
    created = make_index(name="faulty", dimension=2)
    created.upsert(vectors=[("a", [1.0, 0.0]), ("b", [0.0, 1.0])])
    return created


@pytest.fixture
def raw(pinecone_emulator: EmulatorHandle, index: Index) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=pinecone_emulator.index_host("faulty"), headers={"Api-Key": pinecone_emulator.api_key}
    ) as client:
        yield client


def query_body() -> dict[str, object]:
    return {"topK": 1, "vector": [1.0, 0.0]}


def test_scripted_429_with_retry_after_is_retried_by_the_sdk(pinecone_emulator: EmulatorHandle, index: Index) -> None:
    control = pinecone_emulator.control
    control.script("query", {"status": 429, "retry_after": 0}, {"status": 429, "retry_after": 0})
    control.clear_counters()

    result = index.query(vector=[1.0, 0.0], top_k=1)

    assert [m.id for m in result.matches] == ["a"]
    assert control.count(operation="query", status=429) == 2
    assert control.count(operation="query", status=200) == 1


def test_429_carries_retry_after_and_the_sdk_gives_up_after_four_attempts(
    pinecone_emulator: EmulatorHandle, index: Index, raw: httpx.Client
) -> None:
    control = pinecone_emulator.control
    control.add_fault("query", status=429, retry_after=0, times=5)
    control.clear_counters()

    with pytest.raises(RateLimitError) as raised:
        index.query(vector=[1.0, 0.0], top_k=1)
    direct = raw.post("/query", json=query_body())

    assert raised.value.retry_after == 0.0
    assert control.count(operation="query", status=429) == 5  # 4 SDK attempts + the raw request
    assert direct.headers["retry-after"] == "0"
    assert direct.json()["code"] == 8  # RESOURCE_EXHAUSTED in the rpcStatus body
    assert raw.post("/query", json=query_body()).status_code == 200  # the rule is used up


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_faults_are_retried_then_surface_as_service_errors(
    pinecone_emulator: EmulatorHandle, index: Index, status: int
) -> None:
    control = pinecone_emulator.control
    rule = control.add_fault("fetch", status=status, retry_after=0)

    with pytest.raises(ServiceError) as raised:
        index.fetch(ids=["a"])
    control.remove_fault(rule)

    assert raised.value.status_code == status
    assert control.count(operation="fetch", status=status) == 4
    assert "a" in index.fetch(ids=["a"]).vectors


def test_dropped_connection_is_retried_by_the_sdk(pinecone_emulator: EmulatorHandle, index: Index) -> None:
    control = pinecone_emulator.control
    control.script("upsert", "drop")
    control.clear_counters()

    response = index.upsert(vectors=[("c", [1.0, 1.0])])

    assert response.upserted_count == 1
    assert control.count(operation="upsert", status=0) == 1  # status 0 = connection dropped, no response
    assert control.count(operation="upsert", status=200) == 1


def test_dropped_connection_reaches_a_raw_client_as_a_protocol_error(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client
) -> None:
    pinecone_emulator.control.script("query", "drop")

    with pytest.raises(httpx.RemoteProtocolError):
        raw.post("/query", json=query_body())


def test_added_latency_trips_a_client_timeout(pinecone_emulator: EmulatorHandle, raw: httpx.Client) -> None:
    pinecone_emulator.control.script("query", {"latency_ms": 2000})  # the answer cannot come sooner

    with pytest.raises(httpx.ReadTimeout):
        raw.post("/query", json=query_body(), timeout=0.05)
    assert raw.post("/query", json=query_body(), timeout=60).status_code == 200


def test_fault_rules_can_target_one_index(pinecone_emulator: EmulatorHandle, make_index: IndexFactory) -> None:
    sick, healthy = make_index(name="sick", dimension=2), make_index(name="healthy", dimension=2)
    pinecone_emulator.control.add_fault("describe_index_stats", index="sick", status=503, retry_after=0)

    with pytest.raises(ServiceError):
        sick.describe_index_stats()
    assert healthy.describe_index_stats().total_vector_count == 0


def test_error_rate_zero_never_fires_and_one_always_does(pinecone_emulator: EmulatorHandle, raw: httpx.Client) -> None:
    control = pinecone_emulator.control
    control.add_fault("query", status=500, rate=0.0)
    never = [raw.post("/query", json=query_body()).status_code for _ in range(20)]
    control.clear_faults()
    control.add_fault("query", status=500, rate=1.0, times=3)
    always = [raw.post("/query", json=query_body()).status_code for _ in range(5)]

    assert never == [200] * 20
    assert always == [500, 500, 500, 200, 200]


def test_partial_error_rate_fires_sometimes(pinecone_emulator: EmulatorHandle, raw: httpx.Client) -> None:
    pinecone_emulator.control.set_faults(rules=[{"operation": "query", "status": 503, "rate": 0.5}], seed=7)

    statuses = [raw.post("/query", json=query_body()).status_code for _ in range(60)]

    assert 10 < statuses.count(503) < 50
    assert statuses.count(503) + statuses.count(200) == 60


def test_per_namespace_rate_limit_is_off_by_default_and_429s_when_set(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client
) -> None:
    body = {"vectors": [{"id": "x", "values": [1.0, 1.0]}], "namespace": "busy"}
    unlimited = [raw.post("/vectors/upsert", json=body).status_code for _ in range(30)]
    pinecone_emulator.control.set_rate_limit(3, retry_after=0, window_seconds=3600)  # 4 requests in one window

    limited = [raw.post("/vectors/upsert", json=body) for _ in range(4)]
    other_namespace = raw.post("/vectors/upsert", json={**body, "namespace": "quiet"})

    assert unlimited == [200] * 30
    assert [r.status_code for r in limited] == [200, 200, 200, 429]
    assert limited[3].headers["retry-after"] == "0"
    assert "requests per second limit (3 per 3600 s)" in limited[3].json()["message"]
    assert other_namespace.status_code == 200


def test_indexing_lag_hides_writes_until_the_lsn_is_reached(pinecone_emulator: EmulatorHandle, index: Index) -> None:
    """On the emulator's own clock (test_log_sequence_numbers.py judges the lag with a clock it steps)."""
    control = pinecone_emulator.control
    control.set_indexing_lag(3_600_000)  # an hour: it cannot pass during the test, however busy the machine

    written = index.upsert(vectors=[("late", [0.6, 0.8])])
    committed = written.response_info.lsn_committed
    first = index.query(vector=[0.6, 0.8], top_k=1)
    control.set_indexing_lag(100)  # the lag in force decides: the write is readable 0.1 s after it was committed
    deadline = time.monotonic() + 120  # a ceiling, not a verdict
    latest = index.query(vector=[0.6, 0.8], top_k=1)
    while not latest.response_info.is_reconciled(committed) and time.monotonic() < deadline:
        time.sleep(0.05)
        latest = index.query(vector=[0.6, 0.8], top_k=1)

    assert committed is not None
    assert first.response_info.lsn_reconciled < committed
    assert first.matches[0].id != "late"
    assert latest.response_info.is_reconciled(committed)
    assert latest.matches[0].id == "late"


def test_counters_report_operation_status_and_key(pinecone_emulator: EmulatorHandle, raw: httpx.Client) -> None:
    control = pinecone_emulator.control
    control.clear_counters()
    raw.post("/query", json=query_body())
    raw.post("/query", json={"topK": 0, "vector": [1.0, 0.0]})
    httpx.post(f"{pinecone_emulator.index_host('faulty')}/query", json=query_body(), headers={"Api-Key": "nope"})

    report = control.counters()

    assert report["total"] == 3
    assert report["by_operation"]["query"] == {"200": 1, "400": 1, "401": 1}
    assert report["by_api_key"]["initial-key-0"] == 2
    assert any(key.startswith("unknown:") for key in report["by_api_key"])


def test_reset_forgets_indexes_faults_counters_and_created_keys(
    pinecone_emulator: EmulatorHandle, index: Index
) -> None:
    control = pinecone_emulator.control
    control.add_fault("query", status=500)
    control.set_indexing_lag(1000)

    control.reset()

    assert control.state()["indexes"] == []
    assert control.faults() == {
        "rules": [],
        "rate_limit": {
            "requests_per_second": 0,
            "operations": ["upsert", "query", "delete", "update"],
            "retry_after": "1",
            "window_seconds": 1.0,
        },
        "indexing_lag_ms": 0.0,
        "index_ready_after_ms": 0.0,
    }
    assert control.counters()["total"] == 0
    assert [k["id"] for k in control.state()["api_keys"]] == ["initial-key-0"]


def test_invalid_fault_rules_are_rejected(pinecone_emulator: EmulatorHandle) -> None:
    url = f"{pinecone_emulator.url}/_emulator/faults/rules"

    for rule in (
        {"operation": "query", "status": 200},
        {"operation": "query"},
        {"operation": "query", "rate": 2, "status": 500},
    ):
        response = httpx.post(url, json=rule)
        assert response.status_code == 400, rule
