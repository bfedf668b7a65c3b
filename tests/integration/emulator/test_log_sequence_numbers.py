"""Write receipts and read-your-writes: log sequence numbers as Pinecone's serverless data plane issues them.

"When you make a write request to a serverless index namespace, Pinecone assigns a monotonically
increasing log sequence number (LSN) to the write operation. The LSN reflects upserts as well as
updates and deletes to that namespace. Writes to one namespace do not increase the LSN for other
namespaces." A write's response carries it in ``x-pinecone-request-lsn``, a query's response carries
``x-pinecone-max-indexed-lsn``, and a query reflects a write when the second is >= the first
(docs.pinecone.io/guides/index-data/check-data-freshness). Pinned here through raw HTTP, raw gRPC
(initial metadata, the emulator's choice) and SDK 10.2.0 (``response_info.lsn_committed`` /
``lsn_reconciled`` / ``is_reconciled``).

No verdict here depends on the wall clock: the indexing lag is judged by a clock the test advances
(``Emulator.indexing_clock``), or cut short with ``flush_indexing()``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pinecone import Index, QueryResponse, ResponseInfo, UpdateResponse, UpsertResponse
from pinecone._internal.config import RetryConfig
from pinecone.grpc import GrpcIndex

from pinecone_emulator import Emulator, EmulatorConfig, handle
from pinecone_emulator.grpc_server import messages
from pinecone_emulator.persistence import attach_persistence
from pinecone_emulator.pytest_plugin import EmulatorHandle
from pinecone_emulator.wire import Request
from tests.integration.emulator.conftest import IndexFactory

INDEX = "lsn"
NS = "tenant-a"
LAG_MS = 250  # 0.25 s: a binary fraction, so the clock's steps below add up to it exactly
TIMEOUT = 60.0  # a ceiling for one request on a loaded machine, not a verdict


class SteppedClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1024.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(pinecone_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    """The clock the next index created reads to tell whether a write's indexing lag has passed."""
    stepped = SteppedClock()
    monkeypatch.setattr(pinecone_emulator.server.emulator, "indexing_clock", stepped)
    return stepped


@pytest.fixture
def index(make_index: IndexFactory, clock: SteppedClock) -> Index:
    return make_index(name=INDEX, dimension=2)


@pytest.fixture
def raw(pinecone_emulator: EmulatorHandle, index: Index) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=pinecone_emulator.index_host(INDEX), headers={"Api-Key": pinecone_emulator.api_key}, timeout=TIMEOUT
    ) as client:
        yield client


def request_lsn(response: httpx.Response) -> int:
    assert response.status_code in (200, 202), response.text
    return int(response.headers["x-pinecone-request-lsn"])


def indexed_lsn(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.headers["x-pinecone-max-indexed-lsn"])


def upsert(client: httpx.Client, record_id: str, values: list[float], namespace: str | None = NS, **extra: Any) -> int:
    body: dict[str, Any] = {"vectors": [{"id": record_id, "values": values, **extra}]}
    if namespace is not None:
        body["namespace"] = namespace
    return request_lsn(client.post("/vectors/upsert", json=body))


def query(client: httpx.Client, namespace: str = NS, vector: tuple[float, float] = (1.0, 0.0)) -> httpx.Response:
    return client.post("/query", json={"topK": 10, "vector": list(vector), "namespace": namespace})


def found(response: httpx.Response) -> list[str]:
    return sorted(match["id"] for match in response.json()["matches"])


def info(response: UpsertResponse | UpdateResponse | QueryResponse) -> ResponseInfo:
    """The SDK's ``response_info``, which its REST client sets on these results (its gRPC client does not)."""
    assert response.response_info is not None
    return response.response_info


def strictly_increasing(values: list[int]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(values))


# ------------------------------------------------------------------------------------------ receipts over HTTP
def test_every_kind_of_write_takes_the_next_lsn_of_its_namespace(raw: httpx.Client) -> None:
    receipts = [
        upsert(raw, "a", [1.0, 0.0], metadata={"genre": "x"}),
        upsert(raw, "b", [0.0, 1.0], metadata={"genre": "y"}),
        request_lsn(raw.post("/vectors/update", json={"id": "a", "setMetadata": {"genre": "z"}, "namespace": NS})),
        request_lsn(
            raw.post(
                "/vectors/update", json={"filter": {"genre": {"$eq": "y"}}, "setMetadata": {"n": 1}, "namespace": NS}
            )
        ),
        request_lsn(raw.post("/vectors/delete", json={"ids": ["a"], "namespace": NS})),
        request_lsn(raw.post("/vectors/delete", json={"filter": {"genre": {"$eq": "y"}}, "namespace": NS})),
        upsert(raw, "c", [1.0, 1.0]),
        request_lsn(raw.post("/vectors/delete", json={"deleteAll": True, "namespace": NS})),
        upsert(raw, "d", [1.0, 1.0]),
        request_lsn(raw.delete(f"/namespaces/{NS}")),
        upsert(raw, "e", [1.0, 0.5]),  # the namespace written again carries on from its old counter
    ]
    after = query(raw)

    assert receipts[0] >= 1
    assert strictly_increasing(receipts), receipts
    assert indexed_lsn(after) == receipts[-1]
    assert found(after) == ["e"]


def test_reads_and_dry_runs_take_no_lsn_and_only_queries_report_the_indexed_one(raw: httpx.Client) -> None:
    written = upsert(raw, "a", [1.0, 0.0], metadata={"genre": "x"})
    dry_run = raw.post(
        "/vectors/update",
        json={"filter": {"genre": {"$eq": "x"}}, "setMetadata": {"n": 1}, "dryRun": True, "namespace": NS},
    )
    reads = [
        raw.get("/vectors/fetch", params={"ids": "a", "namespace": NS}),
        raw.get("/vectors/list", params={"namespace": NS}),
        raw.post("/vectors/fetch_by_metadata", json={"filter": {"genre": {"$eq": "x"}}, "namespace": NS}),
        raw.post("/describe_index_stats", json={}),
        raw.get(f"/namespaces/{NS}"),
        raw.get("/namespaces"),
    ]
    after = query(raw)

    assert dry_run.json() == {"matchedRecords": 1}
    assert "x-pinecone-request-lsn" not in dry_run.headers
    assert [read.status_code for read in reads] == [200] * len(reads)
    assert not any("x-pinecone-request-lsn" in read.headers for read in reads)
    assert not any("x-pinecone-max-indexed-lsn" in read.headers for read in reads)  # Pinecone documents it on queries
    assert indexed_lsn(after) == written
    assert "x-pinecone-request-lsn" not in after.headers


def test_namespaces_number_their_writes_independently(raw: httpx.Client) -> None:
    first_b = upsert(raw, "b1", [0.0, 1.0], namespace="b")
    b_before = indexed_lsn(query(raw, namespace="b"))
    a_receipts = [upsert(raw, f"a{i}", [1.0, 0.0], namespace="a") for i in range(3)]
    b_after = indexed_lsn(query(raw, namespace="b"))
    second_b = upsert(raw, "b2", [0.0, 1.0], namespace="b")

    assert b_before == b_after == first_b  # a's writes did not move b
    assert second_b > first_b
    assert strictly_increasing(a_receipts)
    assert indexed_lsn(query(raw, namespace="a")) == a_receipts[-1]
    assert indexed_lsn(query(raw, namespace="never-written")) == 0


def test_the_default_namespace_is_one_sequence_however_it_is_named(raw: httpx.Client) -> None:
    receipts = [
        upsert(raw, "omitted", [1.0, 0.0], namespace=None),
        upsert(raw, "empty", [1.0, 0.0], namespace=""),
        upsert(raw, "named", [1.0, 0.0], namespace="__default__"),
    ]

    assert strictly_increasing(receipts)
    assert indexed_lsn(query(raw, namespace="")) == receipts[-1]
    assert indexed_lsn(query(raw, namespace="__default__")) == receipts[-1]


def test_concurrent_writes_get_distinct_lsns(pinecone_emulator: EmulatorHandle, raw: httpx.Client) -> None:
    workers, rounds = 6, 10

    def write(worker: int) -> list[int]:
        """Each round: upsert its record, update it, delete it: three writes to the shared namespace."""
        with httpx.Client(
            base_url=pinecone_emulator.index_host(INDEX),
            headers={"Api-Key": pinecone_emulator.api_key},
            timeout=TIMEOUT,
        ) as client:
            receipts = []
            for round_ in range(rounds):
                record = f"w{worker}-{round_}"
                receipts.append(upsert(client, record, [1.0, float(worker)]))
                update = {"id": record, "setMetadata": {"round": round_}, "namespace": NS}
                receipts.append(request_lsn(client.post("/vectors/update", json=update)))
                receipts.append(request_lsn(client.post("/vectors/delete", json={"ids": [record], "namespace": NS})))
            return receipts

    with ThreadPoolExecutor(max_workers=workers) as pool:
        per_worker = list(pool.map(write, range(workers)))
    every = [lsn for receipts in per_worker for lsn in receipts]

    assert len(every) == workers * rounds * 3
    assert len(set(every)) == len(every)  # no receipt issued twice
    assert all(strictly_increasing(receipts) for receipts in per_worker)  # each client's writes in its own order
    assert indexed_lsn(query(raw)) == max(every)


# ---------------------------------------------------------------------------------------------- the lag
def test_writes_under_the_lag_become_readable_each_after_its_own_lag_in_commit_order(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, clock: SteppedClock
) -> None:
    visible = upsert(raw, "old", [0.0, 1.0])
    pinecone_emulator.control.set_indexing_lag(LAG_MS)

    first = upsert(raw, "x", [1.0, 0.0])  # t = 0
    clock.advance(0.125)
    second = request_lsn(raw.post("/vectors/delete", json={"ids": ["old"], "namespace": NS}))  # t = 0.125
    third = upsert(raw, "y", [1.0, 1.0])  # t = 0.125
    at_once = query(raw)
    clock.advance(0.125)  # t = 0.25: the first write's lag has passed, not the others'
    partly = query(raw)
    clock.advance(0.125)  # t = 0.375: every lag has passed
    caught_up = query(raw)

    assert visible < first < second < third
    assert indexed_lsn(at_once) == visible
    assert found(at_once) == ["old"]
    assert indexed_lsn(partly) == first
    assert found(partly) == ["old", "x"]
    assert indexed_lsn(caught_up) == third
    assert found(caught_up) == ["x", "y"]


def test_through_the_sdk_a_query_under_the_lag_is_not_reconciled_with_the_write_until_its_lag_has_passed(
    pinecone_emulator: EmulatorHandle, index: Index, clock: SteppedClock
) -> None:
    index.upsert(vectors=[("early", [0.0, 1.0])], namespace=NS)
    pinecone_emulator.control.set_indexing_lag(LAG_MS)

    target = info(index.upsert(vectors=[("late", [0.6, 0.8])], namespace=NS)).lsn_committed
    at_once = index.query(vector=[0.6, 0.8], top_k=2, namespace=NS)
    fetched_at_once = index.fetch(ids=["late"], namespace=NS)
    clock.advance(0.125)
    halfway = index.query(vector=[0.6, 0.8], top_k=2, namespace=NS)
    clock.advance(0.125)
    after = index.query(vector=[0.6, 0.8], top_k=2, namespace=NS)
    fetched_after = index.fetch(ids=["late"], namespace=NS)

    assert target is not None
    for early in (at_once, halfway):
        reconciled = info(early).lsn_reconciled
        assert reconciled is not None
        assert reconciled < target
        assert not info(early).is_reconciled(target)
        assert [match.id for match in early.matches] == ["early"]
    assert info(after).is_reconciled(target)
    assert info(after).lsn_reconciled == target
    assert [match.id for match in after.matches] == ["late", "early"]
    assert set(fetched_at_once.vectors) == set()  # the emulator's choice: every read sees the same indexed state
    assert set(fetched_after.vectors) == {"late"}


def test_flush_indexing_makes_every_waiting_write_readable_now(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client
) -> None:
    control = pinecone_emulator.control
    control.set_indexing_lag(LAG_MS)  # the test's clock never moves: without the flush nothing would be readable
    a = upsert(raw, "a1", [1.0, 0.0], namespace="a")
    b = [upsert(raw, f"b{i}", [0.0, 1.0], namespace="b") for i in range(2)]
    before = {"a": indexed_lsn(query(raw, namespace="a")), "b": indexed_lsn(query(raw, namespace="b"))}
    waiting = next(entry for entry in control.state()["indexes"] if entry["name"] == INDEX)

    applied = control.flush_indexing()
    after_a, after_b = query(raw, namespace="a"), query(raw, namespace="b")
    flushed = next(entry for entry in control.state()["indexes"] if entry["name"] == INDEX)

    assert before == {"a": 0, "b": 0}
    assert waiting["pending_writes"] == 3
    assert waiting["lsns"] == {"a": a, "b": b[-1]}
    assert waiting["indexed_lsns"] == {}
    assert applied == 3
    assert (indexed_lsn(after_a), found(after_a)) == (a, ["a1"])
    assert (indexed_lsn(after_b), found(after_b)) == (b[-1], ["b0", "b1"])
    assert flushed["pending_writes"] == 0
    assert flushed["indexed_lsns"] == {"a": a, "b": b[-1]}


def test_a_namespace_delete_under_the_lag_is_a_write_that_lands_after_it(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, clock: SteppedClock
) -> None:
    kept = upsert(raw, "a", [1.0, 0.0])
    pinecone_emulator.control.set_indexing_lag(LAG_MS)

    deleted = raw.delete(f"/namespaces/{NS}")
    while_waiting = query(raw)
    delete_again = raw.delete(f"/namespaces/{NS}")
    create_while_waiting = raw.post("/namespaces", json={"name": NS})
    clock.advance(LAG_MS / 1000)
    after = query(raw)
    described = raw.get(f"/namespaces/{NS}")
    created = raw.post("/namespaces", json={"name": NS})

    assert deleted.status_code == 202
    assert request_lsn(deleted) > kept
    assert (indexed_lsn(while_waiting), found(while_waiting)) == (kept, ["a"])
    assert delete_again.status_code == 404  # its deletion is committed
    assert create_while_waiting.status_code == 409  # until the deletion has landed
    assert (indexed_lsn(after), found(after)) == (request_lsn(deleted), [])
    assert described.status_code == 404
    assert created.status_code == 201
    assert "x-pinecone-request-lsn" not in created.headers  # creating a namespace is not a numbered write


def test_an_upsert_after_a_namespace_delete_lands_after_it_under_the_lag(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, clock: SteppedClock
) -> None:
    upsert(raw, "old", [1.0, 0.0])
    pinecone_emulator.control.set_indexing_lag(LAG_MS)

    deleted = request_lsn(raw.delete(f"/namespaces/{NS}"))
    rewritten = upsert(raw, "new", [0.0, 1.0])
    while_waiting = query(raw)
    clock.advance(LAG_MS / 1000)
    after = query(raw)

    assert rewritten > deleted
    assert found(while_waiting) == ["old"]
    assert (indexed_lsn(after), found(after)) == (rewritten, ["new"])


# ------------------------------------------------------------------------------------------------ the SDK
def test_the_sdk_reads_write_receipts_and_the_indexed_lsn_from_response_info(index: Index) -> None:
    upserted = info(index.upsert(vectors=[("a", [1.0, 0.0]), ("b", [0.0, 1.0])], namespace=NS))
    updated = info(index.update(id="a", set_metadata={"genre": "drama"}, namespace=NS))
    index.delete(ids=["b"], namespace=NS)  # returns None in the SDK: a delete's receipt is on the wire only
    queried = index.query(vector=[1.0, 0.0], top_k=2, namespace=NS)
    batched = index.upsert(
        vectors=[(f"v{i}", [1.0, float(i)]) for i in range(5)], namespace=NS, batch_size=2, show_progress=False
    )
    after_batches = info(index.query(vector=[1.0, 0.0], top_k=1, namespace=NS))

    assert upserted.lsn_committed is not None
    assert upserted.raw_headers["x-pinecone-request-lsn"] == str(upserted.lsn_committed)
    assert upserted.lsn_reconciled is None  # a write's response carries no indexed LSN here
    assert updated.lsn_committed is not None
    assert updated.lsn_committed > upserted.lsn_committed
    assert info(queried).lsn_committed is None  # a read commits nothing
    reconciled = info(queried).lsn_reconciled
    assert reconciled is not None
    assert reconciled > updated.lsn_committed  # the delete took the next one
    assert info(queried).is_reconciled(updated.lsn_committed)
    assert [match.id for match in queried.matches] == ["a"]
    # three requests of 2, 2 and 1 vectors: the SDK keeps the highest receipt (as x-pinecone-lsn-committed)
    batch_receipt = info(batched).lsn_committed
    assert batch_receipt is not None
    assert batch_receipt == after_batches.lsn_reconciled
    assert after_batches.is_reconciled(batch_receipt)


# ----------------------------------------------------------------------------------------------------- gRPC
@pytest.fixture
def grpc_host(pinecone_emulator: EmulatorHandle, index: Index) -> str:
    return pinecone_emulator.control.grpc_host(INDEX)


def test_grpc_calls_carry_the_lsns_as_initial_metadata_from_the_same_counters(
    pinecone_emulator: EmulatorHandle, raw: httpx.Client, grpc_host: str
) -> None:
    pb, services = messages()
    key = (("api-key", pinecone_emulator.api_key),)
    with grpc.insecure_channel(grpc_host.removeprefix("http://")) as channel:
        stub = services.VectorServiceStub(channel)
        over_rest = upsert(raw, "r", [1.0, 0.0])
        upsert_request = pb.UpsertRequest(vectors=[pb.Vector(id="g", values=[0.0, 1.0])], namespace=NS)
        _, upserted = stub.Upsert.with_call(upsert_request, metadata=key, timeout=TIMEOUT)
        _, updated = stub.Update.with_call(
            pb.UpdateRequest(id="g", values=[0.5, 0.5], namespace=NS), metadata=key, timeout=TIMEOUT
        )
        _, queried = stub.Query.with_call(
            pb.QueryRequest(namespace=NS, top_k=2, vector=[0.0, 1.0]), metadata=key, timeout=TIMEOUT
        )
        _, deleted = stub.Delete.with_call(pb.DeleteRequest(ids=["g"], namespace=NS), metadata=key, timeout=TIMEOUT)
        _, dropped = stub.DeleteNamespace.with_call(
            pb.DeleteNamespaceRequest(namespace=NS), metadata=key, timeout=TIMEOUT
        )
        _, fetched = stub.Fetch.with_call(pb.FetchRequest(ids=["r"], namespace=NS), metadata=key, timeout=TIMEOUT)

    receipts = [
        over_rest,
        *(int(dict(call.initial_metadata())["x-pinecone-request-lsn"]) for call in (upserted, updated)),
        *(int(dict(call.initial_metadata())["x-pinecone-request-lsn"]) for call in (deleted, dropped)),
    ]
    assert strictly_increasing(receipts), receipts
    assert int(dict(queried.initial_metadata())["x-pinecone-max-indexed-lsn"]) == receipts[2]
    assert "x-pinecone-request-lsn" not in dict(queried.initial_metadata())
    assert not {"x-pinecone-request-lsn", "x-pinecone-max-indexed-lsn"} & set(dict(fetched.initial_metadata()))


def test_the_sdks_grpc_client_surfaces_no_lsn(pinecone_emulator: EmulatorHandle, grpc_host: str) -> None:
    """SDK 10.2.0's GrpcIndex (a Rust channel) reads no response metadata but a request id: over gRPC a
    client of the SDK has no write receipt, whatever the server sends."""
    index = GrpcIndex(
        host=grpc_host,
        api_key=pinecone_emulator.api_key,
        grpc_scheme="http",
        secure=False,
        retry_config=RetryConfig(max_retries=0),
    )
    try:
        upserted = index.upsert(vectors=[("g", [0.0, 1.0])], namespace=NS)
        queried = index.query(vector=[0.0, 1.0], top_k=1, namespace=NS)
    finally:
        index.close()

    assert upserted.upserted_count == 1
    assert upserted.response_info is None
    assert queried.response_info is None
    assert [match.id for match in queried.matches] == ["g"]


# --------------------------------------------------------------------------------------------- persistence
def test_lsns_carry_on_after_a_restart_with_a_data_dir(tmp_path: Path) -> None:
    config = EmulatorConfig(port=0, data_dir=tmp_path)
    headers = {"Api-Key": "pclocal"}
    schema = {"fields": {"_values": {"type": "dense_vector", "dimension": 2, "metric": "cosine"}}}

    def call(emulator: Emulator, method: str, path: str, body: object | None = None) -> int:
        raw_body = json.dumps(body).encode() if body is not None else b""
        response = handle(emulator, Request(method, f"/data/{INDEX}/{path}", "", headers, raw_body))
        assert response.status in (200, 202), response.body
        return int(response.headers["x-pinecone-request-lsn"])

    def write(emulator: Emulator, namespace: str, record: str) -> int:
        return call(
            emulator,
            "POST",
            "vectors/upsert",
            {"vectors": [{"id": record, "values": [1.0, 0.0]}], "namespace": namespace},
        )

    first = Emulator(config)
    persistence = attach_persistence(first)
    assert persistence is not None
    create = json.dumps({"name": INDEX, "schema": schema}).encode()
    assert handle(first, Request("POST", "/indexes", "", headers, create)).status == 201
    kept = [write(first, "kept", f"k{i}") for i in range(3)]
    gone = [write(first, "gone", "g0"), call(first, "DELETE", "namespaces/gone")]
    persistence.close()

    second = Emulator(config)
    reloaded = attach_persistence(second)
    assert reloaded is not None
    try:
        kept_after = write(second, "kept", "k3")
        gone_after = write(second, "gone", "g1")  # a namespace deleted before the restart, written again
    finally:
        reloaded.close()

    assert kept_after > kept[-1]
    assert gone_after > gone[-1]
