"""gRPC at the index's host: the SDK's gRPC client dials the host ``describe_index`` reports, as against Pinecone.

Each index's host is a port of its own that answers its data plane over REST (HTTP/1.1) and gRPC
(HTTP/2 in cleartext); no separate gRPC address is asked for anywhere in this module. The only
setting a client needs is the one any local gRPC server needs: ``grpc_scheme="http"`` (no TLS).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from pinecone import NotFoundError, Pinecone, ServerlessSpec
from pinecone._internal.config import RetryConfig
from pinecone.grpc import GrpcIndex, PineconeGRPC

from pinecone_emulator.port_sharing import HTTP2_PREFACE, speaks_http2
from pinecone_emulator.pytest_plugin import EmulatorHandle

SPEC = ServerlessSpec(cloud="aws", region="us-east-1")


@pytest.fixture
def pc_grpc(pinecone_emulator: EmulatorHandle) -> Iterator[Pinecone]:
    """A client as a user of a local gRPC data plane makes it: the control host, and plaintext gRPC."""
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url, grpc_scheme="http")
    yield client
    client.close()


def test_the_sdks_grpc_client_upserts_fetches_and_queries_at_the_described_host(
    pc_grpc: Pinecone, pinecone_emulator: EmulatorHandle
) -> None:
    pc_grpc.create_index("docs", dimension=3, metric="cosine", spec=SPEC)
    host = pc_grpc.describe_index("docs").host

    with pc_grpc.index(host=host, grpc=True) as index:
        upserted = index.upsert(
            vectors=[("a", [1.0, 0.0, 0.0], {"genre": "drama"}), ("b", [0.0, 1.0, 0.0]), ("c", [0.0, 0.0, 1.0])],
            namespace="films",
        )
        fetched = index.fetch(ids=["a"], namespace="films")
        matches = index.query(vector=[1.0, 0.2, 0.0], top_k=2, namespace="films", include_metadata=True).matches

    assert upserted.upserted_count == 3
    assert fetched.vectors["a"].values == [1.0, 0.0, 0.0]
    assert fetched.vectors["a"].metadata == {"genre": "drama"}
    assert [match.id for match in matches] == ["a", "b"]
    assert matches[0].metadata == {"genre": "drama"}
    assert pinecone_emulator.control.counters()["by_transport"] == {"grpc": 3}  # all three went over gRPC


def test_the_same_host_serves_rest_too(pc_grpc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc_grpc.create_index("docs", dimension=2, metric="cosine", spec=SPEC)
    host = pc_grpc.describe_index("docs").host

    with pc_grpc.index(host=host, grpc=True) as over_grpc:
        over_grpc.upsert(vectors=[("a", [1.0, 0.0])], namespace="n")
    with pc_grpc.index(host=host) as over_rest:
        fetched = over_rest.fetch(ids=["a"], namespace="n")

    assert fetched.vectors["a"].values == [1.0, 0.0]
    assert pinecone_emulator.control.counters()["by_transport"] == {"grpc": 1, "rest": 1}


def test_an_index_named_to_the_legacy_grpc_client_is_reached_through_describe(
    pinecone_emulator: EmulatorHandle,
) -> None:
    pc = PineconeGRPC(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url, grpc_scheme="http")
    pc.create_index("docs", dimension=2, metric="dotproduct", spec=SPEC)

    with pc.Index(name="docs") as index:
        index.upsert(vectors=[("a", [1.0, 2.0])])
        stats = index.describe_index_stats()
    pc.close()

    assert stats.total_vector_count == 1
    assert stats.dimension == 2


def test_each_index_host_reaches_its_own_index(pc_grpc: Pinecone) -> None:
    for name in ("first", "second"):
        pc_grpc.create_index(name, dimension=2, metric="cosine", spec=SPEC)

    with pc_grpc.index(name="first", grpc=True) as first, pc_grpc.index(name="second", grpc=True) as second:
        first.upsert(vectors=[("a", [1.0, 0.0]), ("b", [0.0, 1.0])])
        second.upsert(vectors=[("z", [1.0, 1.0])])
        counts = (first.describe_index_stats().total_vector_count, second.describe_index_stats().total_vector_count)
        ids_in_second = [match.id for match in second.query(vector=[1.0, 0.0], top_k=10).matches]

    assert counts == (2, 1)
    assert ids_in_second == ["z"]


def test_grpc_to_the_host_of_a_deleted_index_is_not_found(pc_grpc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc_grpc.create_index("gone", dimension=2, metric="cosine", spec=SPEC)
    host = pc_grpc.describe_index("gone").host
    pc_grpc.delete_index("gone")

    index = GrpcIndex(
        host=host, api_key=pinecone_emulator.api_key, grpc_scheme="http", retry_config=RetryConfig(max_retries=0)
    )
    with index, pytest.raises(NotFoundError) as missing:
        index.upsert(vectors=[("a", [1.0, 0.0])])

    assert "Index gone not found" in str(missing.value)


def test_an_index_host_answers_only_its_data_plane(pc_grpc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc_grpc.create_index("docs", dimension=2, metric="cosine", spec=SPEC)
    host = pc_grpc.describe_index("docs").host
    headers = {"Api-Key": pinecone_emulator.api_key}

    stats = httpx.post(f"{host}/describe_index_stats", json={}, headers=headers)
    control_plane = httpx.get(f"{host}/indexes", headers=headers)
    under_the_emulators_port = httpx.post(
        f"{pinecone_emulator.url}/data/docs/describe_index_stats", json={}, headers=headers
    )

    assert (stats.status_code, stats.json()["dimension"]) == (200, 2)
    assert control_plane.status_code == 404  # the control plane is the emulator's URL, as Pinecone's is its own
    assert under_the_emulators_port.json() == stats.json()  # /data/<index> on the emulator's port: REST as before


@pytest.mark.parametrize(
    ("opening", "http2"),
    [
        (HTTP2_PREFACE + b"\x00\x00\x12\x04", True),  # the preface and the start of the client's SETTINGS
        (b"POST /vectors/upsert HTTP/1.1\r\n", False),
        (b"PUT /x HTTP/1.1\r\n", False),  # starts as the preface does, for one byte
        (b"GET / HTTP/1.1\r\n\r\n", False),
        (b"", False),  # closed before it said anything
    ],
)
def test_the_first_bytes_tell_grpc_from_rest_and_stay_for_the_server(opening: bytes, http2: bool) -> None:
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        client_end.sendall(opening)
        client_end.shutdown(socket.SHUT_WR)

        decided = speaks_http2(server_end)
        unread = b"".join(iter(lambda: server_end.recv(4096), b""))

    assert decided is http2
    assert unread == opening
