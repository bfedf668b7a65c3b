"""Faults where the write lands although the client is told it failed: apply then 5xx, apply then drop,
and apply after a delay (a write held server-side that lands after its client gave up on it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from pinecone import Index

from pinecone_emulator.pytest_plugin import EmulatorHandle
from tests.conftest import wait_until
from tests.integration.emulator.conftest import IndexFactory


@pytest.fixture
def index(make_index: IndexFactory) -> Index:
    return make_index(name="applied", dimension=2)


@pytest.fixture
def raw(pinecone_emulator: EmulatorHandle, index: Index) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=pinecone_emulator.index_host("applied"), headers={"Api-Key": pinecone_emulator.api_key}, timeout=60
    ) as client:
        yield client


def upsert(raw: httpx.Client, record_id: str, x: float = 1.0) -> httpx.Response:
    return raw.post("/vectors/upsert", json={"vectors": [{"id": record_id, "values": [x, 1.0]}], "namespace": "ns"})


def stored(index: Index, record_id: str) -> list[float] | None:
    found = index.fetch(ids=[record_id], namespace="ns").vectors.get(record_id)
    return None if found is None else list(found.values)


def test_apply_then_503_lands_the_write_and_answers_an_error(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, index: Index
) -> None:
    control = pinecone_emulator.control
    control.script("upsert", {"status": 503, "retry_after": "0", "apply": True})

    answer = upsert(raw, "r1")

    assert answer.status_code == 503
    assert answer.json()["code"] == 14  # rpcStatus UNAVAILABLE, as the data plane answers
    assert stored(index, "r1") == [1.0, 1.0]  # the client was told it failed; it landed
    assert control.counters()["applied_under_faults"] == 1
    assert control.count("upsert", status=503) == 1


def test_apply_then_drop_lands_the_write_and_closes_the_connection(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, index: Index
) -> None:
    pinecone_emulator.control.script("delete", {"drop": True, "apply": True})
    upsert(raw, "gone")

    with pytest.raises(httpx.RemoteProtocolError):
        raw.post("/vectors/delete", json={"ids": ["gone"], "namespace": "ns"})

    assert stored(index, "gone") is None
    assert pinecone_emulator.control.counters()["applied_under_faults"] == 1


def test_an_invalid_request_under_an_apply_fault_gets_its_own_error(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client
) -> None:
    pinecone_emulator.control.script("upsert", {"status": 503, "apply": True})

    answer = raw.post("/vectors/upsert", json={"vectors": [{"id": "x", "values": [1.0, 2.0, 3.0]}]})

    assert answer.status_code == 400  # nothing to apply, so no pretence that something was
    assert pinecone_emulator.control.counters()["applied_under_faults"] == 0


def test_a_delayed_apply_lands_after_the_answer_and_after_a_newer_write(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, index: Index
) -> None:
    control = pinecone_emulator.control
    # GIVEN an upsert held server-side for a minute, its client told the connection dropped
    control.script("upsert", {"drop": True, "apply_after_ms": 60_000})
    with pytest.raises(httpx.RemoteProtocolError):
        upsert(raw, "r", x=1.0)  # the old value

    # WHEN a newer value is written meanwhile
    assert control.pending_applies() == 1
    assert stored(index, "r") is None
    assert upsert(raw, "r", x=2.0).status_code == 200
    assert stored(index, "r") == [2.0, 1.0]

    # THEN when the held write is carried out (flushed here, instead of waiting the minute), the old
    # value overwrites the new: exactly the late write the version guard's leases must outlast
    assert control.flush_applies() == 1
    assert control.pending_applies() == 0
    assert stored(index, "r") == [1.0, 1.0]
    assert control.counters()["applied_under_faults"] == 1


def test_a_short_delay_lands_by_itself(pinecone_emulator: EmulatorHandle, raw: httpx.Client, index: Index) -> None:
    control = pinecone_emulator.control
    control.script("upsert", {"status": 500, "apply_after_ms": 200})

    assert upsert(raw, "soon").status_code == 500
    control.wait_for_applies(ceiling=120)

    assert stored(index, "soon") == [1.0, 1.0]


def test_a_reset_drops_held_writes_so_none_lands_in_the_next_test(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client
) -> None:
    control = pinecone_emulator.control
    control.script("upsert", {"status": 503, "apply_after_ms": 60_000})
    upsert(raw, "never")
    assert control.pending_applies() == 1

    control.reset()

    assert control.pending_applies() == 0
    assert control.flush_applies() == 0


def test_a_request_held_by_latency_across_a_reset_is_dropped_not_counted_and_not_carried_out(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, make_index: IndexFactory
) -> None:
    # GIVEN an upsert held inside the emulator by a 10-minute latency fault (a test that has ended left it)
    control = pinecone_emulator.control
    control.add_fault("upsert", latency_ms=600_000)
    answers: list[BaseException | httpx.Response] = []

    def send() -> None:
        try:
            answers.append(upsert(raw, "stale"))
        except httpx.HTTPError as error:
            answers.append(error)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    wait_until(lambda: control.counters()["in_flight"] == 1, "the upsert is inside the emulator")

    # WHEN the next test resets and makes an index of the same name
    control.reset()
    fresh = make_index(name="applied", dimension=2)

    # THEN the held request was dropped by the reset (its client saw the connection close), never
    # counted, and never carried out in the new index (before generations, it landed 10 minutes later)
    sender.join(timeout=120)
    assert not sender.is_alive()
    assert isinstance(answers[0], httpx.RemoteProtocolError)
    assert control.counters()["in_flight"] == 0
    assert control.count("upsert") == 0
    assert stored(fresh, "stale") is None
    assert control.journal("applied", "ns") == []


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"apply": True}, "need a status or drop"),
        ({"apply_after_ms": 10}, "need a status or drop"),
        ({"status": 503, "apply": "yes"}, "apply must be true or false"),
        ({"status": 503, "apply_after_ms": -1}, "apply_after_ms must be a non-negative number"),
    ],
)
def test_invalid_apply_faults_are_refused(
    pinecone_emulator: EmulatorHandle, rule: dict[str, object], problem: str
) -> None:
    with pytest.raises(Exception, match=problem):
        pinecone_emulator.control.add_fault("upsert", **rule)
