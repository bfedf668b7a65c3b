"""The REST data plane's client is the one ``AsyncIndex`` builds (retries off), its queries are refused as
``AsyncIndex`` refuses them, and a worker never imports ``AsyncIndex``.

``data_plane_client`` builds the SDK's data-plane client without ``AsyncIndex`` (issue 33, cold
start). If the SDK changed how ``AsyncIndex`` configures it (host, key, timeout, headers, user
agent) or checks a query, these tests fail rather than let the workers talk to Pinecone
differently (tests/integration/test_pinecone_queries.py compares the answers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys

import pytest
from pinecone import AsyncIndex
from pinecone._internal.config import RetryConfig
from pinecone.errors.exceptions import PineconeValueError, ValidationError

from vector_relay.pinecone.data_plane import SOURCE_TAG, _RestPlane, data_plane_client

API_KEY = "test-key"  # not a secret: no Pinecone behind it


@pytest.mark.parametrize(
    "host",
    ["https://idx-abc123.svc.aped-1234.pinecone.io", "idx-abc123.svc.aped-1234.pinecone.io", "http://127.0.0.1:5081"],
)
def test_the_client_is_configured_as_the_one_async_index_builds_but_without_sdk_retries(host: str) -> None:
    index = AsyncIndex(host=host, api_key=API_KEY, timeout=7.5, source_tag=SOURCE_TAG)
    client = data_plane_client(host=host, api_key=API_KEY, timeout=7.5)

    assert client._headers == index._http._headers  # key, API version, user agent with the source tag
    assert client._config.retry_config == RetryConfig(max_retries=0)
    assert dataclasses.replace(client._config, retry_config=index._http._config.retry_config) == index._http._config
    assert client._client is None  # its httpx client (pool, TLS context) is made on the first request, as the SDK's


def test_a_missing_key_or_a_bad_host_is_refused_as_async_index_refuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    for host, api_key in [("https://idx.pinecone.io", ""), ("nodots", API_KEY)]:
        with pytest.raises(ValidationError) as sdk:
            AsyncIndex(host=host, api_key=api_key)
        with pytest.raises(ValidationError) as ours:
            data_plane_client(host=host, api_key=api_key, timeout=1)
        assert str(ours.value) == str(sdk.value)


@pytest.mark.parametrize(
    "request_",
    [
        {"top_k": 0, "vector": [1.0]},
        {"top_k": 10_001, "vector": [1.0]},
        {"top_k": 1, "vector": [1.0], "id": "a"},
        {"top_k": 1, "id": "a", "sparse_vector": {"indices": [1], "values": [1.0]}},
        {"top_k": 1},
        {"top_k": 1, "id": ""},
    ],
)
def test_a_query_is_refused_before_sending_as_async_index_refuses_it(request_: dict[str, object]) -> None:
    host = "https://idx-abc123.svc.pinecone.io"  # nothing listens there: both must refuse without a request
    query = {"vector": None, "id": None, "filter": None, "sparse_vector": None} | request_
    options = {"namespace": "ns", "include_values": False, "include_metadata": False}

    async def refusals() -> tuple[BaseException, BaseException]:
        index = AsyncIndex(host=host, api_key=API_KEY)
        plane = _RestPlane(host, API_KEY, 1.0)
        try:
            with pytest.raises(PineconeValueError) as sdk:  # refused before any request is sent
                await index.query(timeout=1.0, **options, **query)  # type: ignore[arg-type]
            with pytest.raises(PineconeValueError) as ours:
                await plane.query(1.0, **options, **query)  # type: ignore[arg-type]
        finally:
            await index.close()
            await plane.close()
        return sdk.value, ours.value

    sdk, ours = asyncio.run(refusals())
    assert (type(ours), str(ours)) == (type(sdk), str(sdk))


def test_a_gateway_does_not_import_async_index() -> None:
    """A worker builds and uses only the data-plane client: ``AsyncIndex`` and its SDK modules stay out."""
    script = (
        "import sys\n"
        "from vector_relay.pinecone.data_plane import PineconeGateway\n"
        f"PineconeGateway(host='https://idx.svc.pinecone.io', api_key={API_KEY!r}, attempt_timeout=1)\n"
        "print('pinecone.async_client.async_index' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "False"
