"""The REST plane's queries get what ``AsyncIndex.query`` gets, and a querying worker never imports ``AsyncIndex``.

The plane sends a query through the SDK's data-plane client and decodes the answer into the SDK's
``QueryResponse`` itself (issue 33, cold start: ``AsyncIndex``'s module imports every SDK adapter).
Here both ask the emulator the same questions over HTTP and must get equal answers, LSN included.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from pinecone import AsyncIndex, Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay.pinecone.data_plane import _RestPlane

RECORDS = [
    {"id": "a", "values": [1.0, 0.0, 0.0], "metadata": {"lang": "en", "n": 1}},
    {"id": "b", "values": [0.0, 1.0, 0.0], "metadata": {"lang": "de", "n": 2}},
    {"id": "c", "values": [0.6, 0.8, 0.0], "metadata": {"lang": "en", "n": 3}},
]
QUERIES: list[dict[str, Any]] = [
    {"top_k": 2, "vector": [1.0, 0.1, 0.0], "include_values": False, "include_metadata": False},
    {"top_k": 3, "vector": [0.5, 0.5, 0.0], "include_values": True, "include_metadata": True},
    {"top_k": 3, "vector": [0.5, 0.5, 0.0], "filter": {"lang": {"$eq": "en"}}, "include_metadata": True},
    {"top_k": 1, "id": "c", "include_values": True},
    {"top_k": 2, "vector": [1.0, 0.0, 0.0], "namespace": "empty"},  # a namespace that does not exist
]


@pytest.fixture
def host(pinecone_emulator: EmulatorHandle) -> str:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("queries", dimension=3, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    client.close()
    index_host = pinecone_emulator.index_host("queries")

    async def load() -> None:
        async with AsyncIndex(host=index_host, api_key=pinecone_emulator.api_key) as index:
            await index.upsert(vectors=RECORDS, namespace="ns")

    asyncio.run(load())
    return index_host


def test_each_answer_equals_async_index_s(pinecone_emulator: EmulatorHandle, host: str) -> None:
    async def both() -> list[tuple[Any, Any]]:
        index = AsyncIndex(host=host, api_key=pinecone_emulator.api_key)
        plane = _RestPlane(host, pinecone_emulator.api_key, 10.0)
        answers = []
        try:
            for query in QUERIES:
                request = {
                    "namespace": "ns",
                    "vector": None,
                    "id": None,
                    "filter": None,
                    "sparse_vector": None,
                    "include_values": False,
                    "include_metadata": False,
                } | query
                answers.append((await index.query(timeout=10.0, **request), await plane.query(10.0, **request)))
        finally:
            await index.close()
            await plane.close()
        return answers

    for sdk, ours in asyncio.run(both()):
        assert answer(ours) == answer(sdk)  # matches (ids, scores, values, metadata), namespace, usage
        # the headers of each answer (a date, a request id differ), and the LSN the freshness check reads
        assert set(ours.response_info.raw_headers) == set(sdk.response_info.raw_headers)
        assert ours.response_info.lsn_reconciled == sdk.response_info.lsn_reconciled
        assert ours.response_info.lsn_reconciled is not None


def answer(response: Any) -> dict[str, Any]:
    return {name: value for name, value in response.to_dict().items() if name != "response_info"}


def test_a_querying_gateway_does_not_import_async_index(pinecone_emulator: EmulatorHandle, host: str) -> None:
    script = (
        "import asyncio, sys\n"
        "from vector_relay.pinecone.data_plane import PineconeGateway\n"
        "async def main():\n"
        f"    gateway = PineconeGateway(host={host!r}, api_key=sys.argv[1], attempt_timeout=10)\n"
        "    result = await gateway.query('ns', top_k=1, vector=[1.0, 0.0, 0.0], record_id=None, sparse_vector=None,\n"
        "        filter_=None, include_values=False, include_metadata=False, timeout=30)\n"
        "    await gateway.close()\n"
        "    print(result.matches[0]['id'], 'pinecone.async_client.async_index' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, pinecone_emulator.api_key], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["a", "False"]
