"""The emulator fixtures (pinecone_emulator.pytest_plugin) plus SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pinecone import Index, Pinecone, ServerlessSpec
from pinecone._internal.config import RetryConfig
from pinecone.grpc import GrpcIndex

from pinecone_emulator.pytest_plugin import *  # noqa: F403 - the plugin's fixtures
from pinecone_emulator.pytest_plugin import EmulatorHandle


@pytest.fixture
def pc(pinecone_emulator: EmulatorHandle) -> Iterator[Pinecone]:
    client = Pinecone(api_key=pinecone_emulator.api_key, host=pinecone_emulator.url)
    yield client
    client.close()


IndexFactory = Callable[..., Index]


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """How make_index's client reaches the data plane: "rest" unless a test module parametrizes it."""
    return str(getattr(request, "param", "rest"))


@pytest.fixture
def make_index(pc: Pinecone, pinecone_emulator: EmulatorHandle, transport: str) -> Iterator[IndexFactory]:
    """Create an index the legacy way (dimension/metric/spec) and open its data plane (REST or gRPC)."""
    opened: list[Index | GrpcIndex] = []

    def make(name: str = "idx", dimension: int | None = 3, metric: str = "cosine", vector_type: str = "dense") -> Index:
        if vector_type == "sparse":
            pc.create_index(
                name, metric="dotproduct", vector_type="sparse", spec=ServerlessSpec(cloud="aws", region="us-east-1")
            )
        else:
            pc.create_index(
                name, dimension=dimension, metric=metric, spec=ServerlessSpec(cloud="aws", region="us-east-1")
            )
        index: Index | GrpcIndex
        if transport == "grpc":
            index = GrpcIndex(
                host=pinecone_emulator.control.grpc_host(name),
                api_key=pinecone_emulator.api_key,
                grpc_scheme="http",
                secure=False,
                retry_config=RetryConfig(max_retries=0),  # as over REST, tests see each answer
            )
        else:
            index = pc.Index(name=name)
        opened.append(index)
        return index  # type: ignore[return-value] - GrpcIndex serves the same data-plane calls

    yield make
    for index in opened:
        index.close()
