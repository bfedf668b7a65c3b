"""The emulator's gRPC data plane enforces the limits of its REST one, measured on the protobuf message."""

from __future__ import annotations

import random

import pytest
from pinecone import ApiError, Pinecone, ServerlessSpec
from pinecone._internal.config import RetryConfig
from pinecone.grpc import GrpcIndex

from pinecone_emulator.pytest_plugin import EmulatorHandle

DIMENSION = 1536


@pytest.fixture
def index(pc: Pinecone, pinecone_emulator: EmulatorHandle) -> GrpcIndex:
    pc.create_index(
        "grpc-limits", dimension=DIMENSION, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1")
    )
    return GrpcIndex(
        host=pinecone_emulator.control.grpc_host("grpc-limits"),
        api_key=pinecone_emulator.api_key,
        grpc_scheme="http",
        secure=False,
        retry_config=RetryConfig(max_retries=0),
    )


def vectors(count: int, seed: int = 1) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [{"id": f"r{i}", "values": [rng.uniform(-1, 1) for _ in range(DIMENSION)]} for i in range(count)]


def test_an_upsert_under_2_mb_of_protobuf_lands_though_its_json_would_not(index: GrpcIndex) -> None:
    # 320 records x 1536 float32 = ~1.97 MB as protobuf (the same records are ~6 MB as JSON)
    response = index.upsert(vectors=vectors(320), namespace="ns", show_progress=False)

    assert response.upserted_count == 320


def test_an_upsert_over_2_mb_of_protobuf_is_invalid_argument(index: GrpcIndex) -> None:
    with pytest.raises(ApiError) as refused:
        index.upsert(vectors=vectors(400), namespace="ns", show_progress=False)

    assert refused.value.status_code == 400  # INVALID_ARGUMENT, as the SDK maps it
    assert "exceeds the maximum supported size of 2MB" in str(refused.value)


def test_more_than_1000_vectors_is_invalid_argument(pc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc.create_index("grpc-count", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    small = GrpcIndex(
        host=pinecone_emulator.control.grpc_host("grpc-count"),
        api_key=pinecone_emulator.api_key,
        grpc_scheme="http",
        secure=False,
        retry_config=RetryConfig(max_retries=0),
    )
    with pytest.raises(ApiError) as refused:
        small.upsert(vectors=[(f"r{i}", [0.5, 0.5]) for i in range(1001)], namespace="ns", show_progress=False)

    assert refused.value.status_code == 400
    assert "1001 vectors, which exceeds the limit of 1000" in str(refused.value)
