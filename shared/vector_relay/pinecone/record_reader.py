"""Synchronous reads and deletes by id for operator tools (the reconciler); not used by the workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pinecone

from vector_relay.errors import FailureKind
from vector_relay.pinecone.errors import classify


class RecordReader:
    """Synchronous reads and deletes by id for operator tools (the reconciler); not used by the workers.

    ``read_key`` gives the current API key. A pass can outlast a key rotation's grace (the
    scheduled reconciler runs up to 15 minutes), so a refused key is read again and, when it
    changed, the call is made once more with the new one.
    """

    def __init__(self, *, host: str, read_key: Callable[[], str], timeout: float = 30.0) -> None:
        self._host, self._read_key, self._timeout = host, read_key, timeout
        self._key = read_key()
        self._index = self._open(self._key)

    def metadata(self, namespace: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The metadata of those of ``ids`` that exist in ``namespace`` (ids absent from the index are left out)."""
        found = self._call(lambda index: index.fetch(ids=list(ids), namespace=namespace))
        return {record_id: dict(record.metadata or {}) for record_id, record in found.vectors.items()}

    def delete(self, namespace: str, ids: Sequence[str]) -> None:
        self._call(lambda index: index.delete(ids=list(ids), namespace=namespace))

    def close(self) -> None:
        self._index.close()

    def _open(self, key: str) -> Any:
        return pinecone.Index(host=self._host, api_key=key, timeout=self._timeout, source_tag="vector_relay")

    def _call(self, request: Callable[[Any], Any]) -> Any:
        try:
            return request(self._index)
        except Exception as error:
            failure = classify(error)
            if failure.kind is not FailureKind.AUTH:
                raise failure from None
        key = self._read_key()
        if key == self._key:  # the same key was refused: rotation has not moved on, nothing to retry with
            raise failure
        self._index.close()
        self._key, self._index = key, self._open(key)
        try:
            return request(self._index)
        except Exception as error:
            raise classify(error) from None
