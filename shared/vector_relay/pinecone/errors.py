"""Pinecone's answers as the project's failure kinds: by HTTP status, never by SDK class name.

SDK class names changed between SDK majors; the status did not. Every module of this folder turns
what an SDK call raised into a :class:`PineconeRequestError` through :func:`classify`:

* 400, 413, 422: Pinecone refuses these records as sent -> :attr:`FailureKind.REJECTED`
  (the caller splits the request to find the messages at fault; a lone message is poison);
* 401, 403: the key was refused -> :attr:`FailureKind.AUTH` (refresh the key once, then transient);
* 404 that is Pinecone's "Namespace not found" on a delete (:func:`namespace_not_found`): nothing
  to delete -> success;
* any other 404 of a data-plane call (a wrong host, a deleted index) -> :attr:`FailureKind.INDEX_NOT_FOUND`
  (:func:`index_not_found`; a deployment problem: the caller retries it later, as transient, and
  counts it for an alarm);
* 408, 429, 5xx, timeouts, connection errors, anything unexpected -> :attr:`FailureKind.TRANSIENT`.

This module does not import the SDK: it reads only the ``status_code``, ``message`` and
``retry_after`` the SDK's errors carry, so callers that only catch a :class:`PineconeRequestError`
(the operator command) do not load the SDK for it.
"""

from __future__ import annotations

import asyncio
import re

from vector_relay.errors import FailureKind

_REJECTED = frozenset({400, 413, 422})
_AUTH = frozenset({401, 403})
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})  # and no status: timeouts, dropped connections


class PineconeRequestError(Exception):
    """A Pinecone call that did not succeed, classified. The message never holds the API key."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        uncertain: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after  # seconds Pinecone asked to wait (Retry-After), if it did
        self.uncertain = uncertain  # an attempt may have been applied (timeout, dropped connection, 5xx)

    @property
    def retryable(self) -> bool:
        """Worth another attempt now: 408, 429, 5xx or no answer at all."""
        return self.kind is FailureKind.TRANSIENT and (self.status is None or self.status in RETRYABLE)


def classify(error: BaseException) -> PineconeRequestError:
    """Map any exception from an SDK call to a :class:`PineconeRequestError`."""
    if isinstance(error, PineconeRequestError):
        return error
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return PineconeRequestError(FailureKind.TRANSIENT, "Pinecone did not answer in time", uncertain=True)
    status = getattr(error, "status_code", None)
    message = describe(error)
    if isinstance(status, int):
        if status in _REJECTED:
            return PineconeRequestError(FailureKind.REJECTED, message, status=status)
        if status in _AUTH:
            return PineconeRequestError(FailureKind.AUTH, message, status=status)
        retry_after = getattr(error, "retry_after", None)
        return PineconeRequestError(
            FailureKind.TRANSIENT,
            message,
            status=status,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            uncertain=status >= 500 or status == 408,
        )
    return PineconeRequestError(FailureKind.TRANSIENT, message, uncertain=True)  # no answer: may have landed


# Pinecone's answer to a delete in a namespace that does not exist: 404, ``{"code": 5, "message":
# "Namespace not found", "details": []}`` over REST, NOT_FOUND with that message over gRPC. Only
# this answer means "nothing to delete"; every other 404 is about the index or the host.
_NAMESPACE_NOT_FOUND = re.compile(r"namespace\b.*\bnot found\.?", re.IGNORECASE | re.DOTALL)


def namespace_not_found(error: BaseException) -> bool:
    """Whether ``error`` is Pinecone's 404 saying the namespace does not exist (told apart by its message)."""
    if getattr(error, "status_code", None) != 404:
        return False
    message = getattr(error, "message", None)
    return isinstance(message, str) and _NAMESPACE_NOT_FOUND.fullmatch(message.strip()) is not None


def index_not_found(error: BaseException) -> PineconeRequestError:
    """A data-plane 404 that is not :func:`namespace_not_found`: no such index at this host."""
    return PineconeRequestError(
        FailureKind.INDEX_NOT_FOUND,
        f"{describe(error)} (no such index at this host: check PINECONE_INDEX_HOST and that the index exists)",
        status=404,
    )


def describe(error: BaseException) -> str:
    """One line for people: Pinecone's status and message (at most 500 characters), or the error's type."""
    status = getattr(error, "status_code", None)
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = " ".join(str(text).split())[:500]
    return f"Pinecone {status}: {text}" if status else f"{type(error).__name__}: {text}"
