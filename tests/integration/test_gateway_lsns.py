"""The gateway reads Pinecone's log sequence numbers: a write's committed LSN, a query's indexed LSN.

Against the emulator over real HTTP and gRPC through the SDK. Over REST every write (upsert, delete
by ids, by filter, of everything) reports the LSN it committed at, each one above the last, and a
query reports how far the namespace's index has caught up; under an indexing lag that stays below a
write's LSN until the write is readable. Over gRPC the SDK reads neither, so both are None
(unknown), never a number that would pass a freshness check. The clock never decides: the lag is
one hour and the test ends it with the emulator's flush.
"""

from __future__ import annotations

import asyncio

import pytest
from pinecone import Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay.contract.messages import UpsertRecord
from vector_relay.pinecone.data_plane import PineconeGateway, QueryResult
from vector_relay.pinecone.wire import encode_record

NAMESPACE = "tenant-lsn"
LAG_MS = 3_600_000  # nothing becomes readable by waiting: only the flush makes it so


@pytest.fixture
def index(pinecone_emulator: EmulatorHandle) -> str:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("lsn", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    client.close()
    return "lsn"


def gateway(emulator: EmulatorHandle, transport: str) -> PineconeGateway:
    return PineconeGateway(
        host=emulator.index_host("lsn"),
        api_key=emulator.api_key,
        attempt_timeout=300,  # no attempt times out however busy the machine
        transport="grpc" if transport == "grpc" else "rest",
        grpc_host=emulator.control.grpc_host("lsn") if transport == "grpc" else None,
    )


async def query(client: PineconeGateway) -> QueryResult:
    return await client.query(
        NAMESPACE,
        top_k=10,
        vector=[1.0, 0.5],
        record_id=None,
        sparse_vector=None,
        filter_=None,
        include_values=False,
        include_metadata=False,
        timeout=60,
    )


def writes_then_query(emulator: EmulatorHandle, transport: str) -> tuple[list[int | None], QueryResult, QueryResult]:
    """Four writes' LSNs, a query under the lag, and a query after the flush."""
    client = gateway(emulator, transport)
    records = [
        encode_record(
            UpsertRecord.model_construct(
                id=f"r{i}", version=1, values=[1.0, float(i)], sparse_values=None, metadata=None
            ),
            "grpc" if transport == "grpc" else "rest",
        )
        for i in range(3)
    ]

    async def run() -> tuple[list[int | None], QueryResult, QueryResult]:
        try:
            lsns = [
                (await client.upsert(NAMESPACE, records, timeout=60)).lsn,
                (await client.delete_ids(NAMESPACE, ["r0"], timeout=60)).lsn,
                (await client.delete_by_filter(NAMESPACE, {"genre": {"$eq": "none"}}, timeout=60)).lsn,
                (await client.upsert(NAMESPACE, records[:1], timeout=60)).lsn,
            ]
            lagging = await query(client)
            emulator.control.flush_indexing()
            return lsns, lagging, await query(client)
        finally:
            await client.close()

    return asyncio.run(run())


def test_over_rest_each_write_reports_its_lsn_and_a_query_how_far_the_index_has_caught_up(
    pinecone_emulator: EmulatorHandle, index: str
) -> None:
    pinecone_emulator.control.set_indexing_lag(LAG_MS)

    lsns, lagging, caught_up = writes_then_query(pinecone_emulator, "rest")

    assert all(isinstance(lsn, int) for lsn in lsns), lsns
    numbers = [lsn for lsn in lsns if lsn is not None]
    assert numbers == sorted(set(numbers)), "each write's LSN is above the one before"
    assert lagging.indexed_lsn is not None
    assert lagging.indexed_lsn < numbers[-1]
    assert lagging.matches == []  # not readable yet: the reason a producer needs the LSN at all
    assert caught_up.indexed_lsn is not None
    assert caught_up.indexed_lsn >= numbers[-1]
    assert {match["id"] for match in caught_up.matches} == {"r0", "r1", "r2"}


def test_over_grpc_no_lsn_is_read_so_both_are_unknown(pinecone_emulator: EmulatorHandle, index: str) -> None:
    lsns, lagging, caught_up = writes_then_query(pinecone_emulator, "grpc")

    assert lsns == [None, None, None, None]
    assert lagging.indexed_lsn is None
    assert caught_up.indexed_lsn is None
    assert {match["id"] for match in caught_up.matches} == {"r0", "r1", "r2"}
