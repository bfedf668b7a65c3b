"""A 404 on a delete: Pinecone's "Namespace not found" means nothing to delete; any other 404 is about the index.

The gateway against the emulator over real HTTP (and gRPC): the answer for a namespace that does not
exist is success, the answer for an index that is not there (deleted, or a host that names no
index) is its own failure class, ``INDEX_NOT_FOUND``, never success and never poison.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from pinecone import Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle
from vector_relay.errors import FailureKind
from vector_relay.pinecone.data_plane import CallResult, PineconeGateway
from vector_relay.pinecone.errors import PineconeRequestError

Delete = Callable[[PineconeGateway], Awaitable[CallResult]]
DELETES: dict[str, Delete] = {
    "by id": lambda gateway: gateway.delete_ids("tenant-x", ["a", "b"], timeout=10),
    "by filter": lambda gateway: gateway.delete_by_filter("tenant-x", {"doc": {"$eq": "d"}}, timeout=10),
    "all": lambda gateway: gateway.delete_all("tenant-x", timeout=10),
}


@pytest.fixture
def pc(pinecone_emulator: EmulatorHandle) -> Iterator[Pinecone]:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    client.create_index("idx", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    yield client
    client.close()


def gateway(emulator: EmulatorHandle, transport: str, host: str | None = None) -> PineconeGateway:
    """The workers' gateway on index ``idx`` (built before anything happens to the index, as in a warm worker)."""
    return PineconeGateway(
        host=host or emulator.index_host("idx"),
        api_key=emulator.api_key,
        attempt_timeout=300,  # no attempt times out however busy the machine: attempts are retry decisions
        transport="grpc" if transport == "grpc" else "rest",
        grpc_host=emulator.control.grpc_host("idx") if transport == "grpc" else None,
    )


def outcome(client: PineconeGateway, delete: Delete) -> object:
    """What the delete came to: its CallResult, or the PineconeRequestError it raised."""

    async def run() -> object:
        try:
            return await delete(client)
        except PineconeRequestError as error:
            return error
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("kind", list(DELETES))
def test_a_delete_in_a_namespace_that_does_not_exist_succeeds(
    pinecone_emulator: EmulatorHandle, pc: Pinecone, transport: str, kind: str
) -> None:
    result = outcome(gateway(pinecone_emulator, transport), DELETES[kind])

    assert isinstance(result, CallResult)
    assert result.attempts == 1
    assert pinecone_emulator.control.count("delete", status=404) == 1  # Pinecone did answer 404
    assert result.lsn == 0  # nothing was written: a read-your-writes query has nothing to wait for


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("kind", list(DELETES))
def test_a_delete_on_a_deleted_index_is_index_not_found(
    pinecone_emulator: EmulatorHandle, pc: Pinecone, transport: str, kind: str
) -> None:
    client = gateway(pinecone_emulator, transport)  # over gRPC the index's listener outlives it, as a DNS name would
    pc.delete_index("idx")

    result = outcome(client, DELETES[kind])

    assert isinstance(result, PineconeRequestError)
    assert (result.kind, result.status, result.retryable) == (FailureKind.INDEX_NOT_FOUND, 404, False)
    assert "Index idx not found" in str(result)
    assert pinecone_emulator.api_key not in str(result)


@pytest.mark.parametrize("path", ["/data/no-such-index", "/not-an-index-host"])
def test_a_delete_through_a_host_that_names_no_index_is_index_not_found(
    pinecone_emulator: EmulatorHandle, pc: Pinecone, path: str
) -> None:
    result = outcome(gateway(pinecone_emulator, "rest", host=pinecone_emulator.url + path), DELETES["by id"])

    assert isinstance(result, PineconeRequestError)
    assert (result.kind, result.status) == (FailureKind.INDEX_NOT_FOUND, 404)
    assert "no such index at this host" in str(result)
