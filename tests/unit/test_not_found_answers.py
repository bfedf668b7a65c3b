"""Which 404s mean "nothing to delete": only Pinecone's answer that the namespace does not exist."""

from __future__ import annotations

import pytest
from pinecone import ApiError, NotFoundError

from vector_relay.pinecone.errors import namespace_not_found


@pytest.mark.parametrize(
    "error",
    [
        # REST: the data plane's rpcStatus body
        NotFoundError("Namespace not found", body={"code": 5, "message": "Namespace not found", "details": []}),
        # gRPC: NOT_FOUND with the same message (the SDK builds an error-object body)
        NotFoundError("Namespace not found", body={"error": {"code": "NOT_FOUND", "message": "Namespace not found"}}),
        NotFoundError("Namespace 'tenant-acme' not found."),
    ],
    ids=["rest", "grpc", "named"],
)
def test_pinecone_s_namespace_answer_means_nothing_to_delete(error: Exception) -> None:
    assert namespace_not_found(error)


@pytest.mark.parametrize(
    "error",
    [
        NotFoundError("Index relay not found", body={"code": 5, "message": "Index relay not found", "details": []}),
        NotFoundError(
            "Index relay not found.", body={"error": {"code": "NOT_FOUND", "message": "Index relay not found."}}
        ),
        NotFoundError("Not Found"),  # a bodiless 404: the SDK falls back to the reason phrase
        NotFoundError(""),
        NotFoundError("No route for POST /wrong/vectors/delete"),
        ApiError("Namespace not found", 400),  # not a 404
        ValueError("Namespace not found"),  # not an answer from Pinecone at all
    ],
    ids=["index-rest", "index-control-shape", "bodiless", "empty", "no-route", "status-400", "not-http"],
)
def test_every_other_answer_is_not_a_missing_namespace(error: Exception) -> None:
    assert not namespace_not_found(error)
