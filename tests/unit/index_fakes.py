"""An in-memory index admin and a clock for the Custom::PineconeIndex unit tests (no network)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

from vector_relay.errors import FailureKind
from vector_relay.pinecone.control_plane import IndexDescription
from vector_relay.pinecone.errors import PineconeRequestError

PROPERTIES = {"Name": "relay-index", "Dimension": "8", "Metric": "cosine", "Cloud": "aws", "Region": "us-east-1"}
URL = "https://cloudformation-custom-resource-response.s3.amazonaws.com/answer?X-Amz-Signature=abc"
INVOCATION_SECONDS = 900.0  # template.yaml: PineconeIndexFunction's Timeout


class Clock:
    """Seconds since the invocation started; only ``sleep`` and the fakes move it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeIndexes:
    """One project's indexes. The index is Initializing until the clock reaches ``ready_at``;
    ``fail(n)`` says what the n-th describe (1, 2, ...) raises instead of answering (None: it answers)."""

    def __init__(
        self,
        clock: Clock,
        *,
        ready_at: float = 0.0,
        fail: Callable[[int], PineconeRequestError | None] = lambda call: None,
    ) -> None:
        self.clock = clock
        self.ready_at = ready_at
        self.fail = fail
        self.index: IndexDescription | None = None
        self.calls = 0
        self.describes: list[float] = []  # when each describe that found the index was made

    def describe(self, name: str) -> IndexDescription | None:
        self.calls += 1
        failure = self.fail(self.calls)
        if failure is not None:
            raise failure
        if self.index is None:
            return None
        self.describes.append(self.clock())
        ready = self.clock() >= self.ready_at
        self.index = dataclasses.replace(self.index, ready=ready, state="Ready" if ready else "Initializing")
        return self.index

    def create(self, *, name: str, dimension: int | None, metric: str, **_: Any) -> IndexDescription:
        self.index = IndexDescription(
            name, f"https://{name}.svc.example.pinecone.io", "Initializing", False, dimension, metric,
            "aws", "us-east-1", False, {},
        )  # fmt: skip
        return self.index

    def configure(
        self,
        name: str,
        *,
        deletion_protection: bool,
        tags: Mapping[str, str],
        remove_tags: Collection[str] | None = None,
    ) -> IndexDescription:
        raise AssertionError("nothing here changes an index")

    def delete(self, name: str) -> bool:
        raise AssertionError("nothing here deletes an index")


def create_event(**extra: Any) -> dict[str, Any]:
    return {
        "RequestType": "Create",
        "ResponseURL": URL,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/relay/1",
        "RequestId": "request-create",
        "LogicalResourceId": "PineconeIndex",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **PROPERTIES},
        **extra,
    }


def unavailable() -> PineconeRequestError:
    return PineconeRequestError(FailureKind.TRANSIENT, "Pinecone 503: Service unavailable", status=503)
