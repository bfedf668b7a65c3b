"""The control plane: an index's shape, the index lifecycle, and the namespaces of one index.

What the index-lifecycle code needs (:mod:`vector_relay.operations.index_lifecycle`): create without
waiting, describe, configure in place, delete. The SDK's own waiting (create/delete poll every 5 s
with no deadline by default) is turned off with ``timeout=-1``: the caller polls within its own
time limit. Tenant onboarding creates and describes namespaces (:class:`NamespaceAdmin`). Errors
are :class:`~vector_relay.pinecone.errors.PineconeRequestError`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pinecone

from vector_relay.contract.fields import IndexShape
from vector_relay.errors import FailureKind
from vector_relay.pinecone.errors import PineconeRequestError, classify, describe


def describe_index_shape(*, api_key: str, name: str, control_host: str | None) -> IndexShape:
    """The dense dimension (None for sparse-only) and metric of index ``name``, from the control plane."""
    client = pinecone.Pinecone(api_key=api_key, host=control_host or None)
    try:
        model = client.describe_index(name)
    except Exception as error:
        raise classify(error) from error
    metric = str(model.metric)
    if metric not in ("cosine", "dotproduct", "euclidean"):
        raise PineconeRequestError(FailureKind.TRANSIENT, f"index {name} has an unsupported metric {metric!r}")
    dimension = None if model.vector_type == "sparse" else model.dimension
    return IndexShape(dimension=dimension, metric=metric)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class IndexDescription:
    name: str
    host: str
    state: str  # Ready, Initializing, InitializationFailed, Terminating, Disabled
    ready: bool
    dimension: int | None  # None for a sparse-only index
    metric: str
    cloud: str | None
    region: str | None
    deletion_protection: bool
    tags: dict[str, str]


def _description(model: Any) -> IndexDescription:
    deployment = getattr(model, "deployment", None)
    status = model.status
    return IndexDescription(
        name=str(model.name),
        host=str(model.host or ""),
        state=str(getattr(status, "state", "") or ""),
        ready=bool(getattr(status, "ready", False)),
        dimension=None if model.vector_type == "sparse" else model.dimension,
        metric=str(model.metric),
        cloud=getattr(deployment, "cloud", None),
        region=getattr(deployment, "region", None),
        deletion_protection=str(model.deletion_protection) == "enabled",
        tags=dict(model.tags or {}),
    )


class PineconeIndexAdmin:
    """Indexes of one project through the control plane. Errors are :class:`PineconeRequestError`."""

    def __init__(self, *, api_key: str, control_host: str | None) -> None:
        self._client = pinecone.Pinecone(api_key=api_key, host=control_host or None, source_tag="vector_relay")

    def describe(self, name: str) -> IndexDescription | None:
        """The index, or None when there is none of that name."""
        try:
            return _description(self._client.describe_index(name))
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise classify(error) from None

    def create(
        self,
        *,
        name: str,
        dimension: int | None,
        metric: str,
        cloud: str,
        region: str,
        deletion_protection: bool,
        tags: Mapping[str, str],
    ) -> IndexDescription:
        try:
            model = self._client.create_index(
                name=name,
                dimension=dimension,
                metric=metric,
                vector_type="sparse" if dimension is None else "dense",
                spec=pinecone.ServerlessSpec(cloud=cloud, region=region),
                deletion_protection="enabled" if deletion_protection else "disabled",
                tags=dict(tags) or None,
                timeout=-1,
            )
        except Exception as error:
            raise classify(error) from None
        return _description(model)

    def configure(
        self,
        name: str,
        *,
        deletion_protection: bool,
        tags: Mapping[str, str],
        remove_tags: Collection[str] | None = None,
    ) -> IndexDescription:
        """Set deletion protection and ``tags``; the caller chooses what happens to the index's other tags.

        ``remove_tags=None``: every tag not in ``tags`` is removed (the index then carries exactly
        ``tags``). A collection: only those keys are removed, every other tag is kept (an index the
        caller does not own). Pinecone removes a tag that is sent with an empty value.
        """
        if remove_tags is None:
            current = self.describe(name)
            remove_tags = [key for key in (current.tags if current else {}) if key not in tags]
        removed = {key: "" for key in remove_tags if key not in tags}
        try:
            model = self._client.configure_index(
                name,
                deletion_protection="enabled" if deletion_protection else "disabled",
                tags={**removed, **tags} or None,
            )
        except Exception as error:
            raise classify(error) from None
        return _description(model)

    def delete(self, name: str) -> bool:
        """Start deleting the index; False when it was already gone. 403 (deletion protection) raises REJECTED."""
        try:
            self._client.delete_index(name, timeout=-1)
        except Exception as error:
            status = getattr(error, "status_code", None)
            if status == 404:
                return False
            if status == 403:  # deletion protection: a refusal, not a key problem
                raise PineconeRequestError(FailureKind.REJECTED, describe(error), status=403) from None
            raise classify(error) from None
        return True

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class NamespaceDescription:
    name: str
    record_count: int
    indexed_fields: frozenset[str] | None  # None: no schema, every metadata field is indexed


class NamespaceAdmin:
    """Namespaces of one index (tenant onboarding). Errors are :class:`PineconeRequestError`."""

    def __init__(self, *, host: str, api_key: str) -> None:
        self._index = pinecone.Index(host=host, api_key=api_key, source_tag="vector_relay")

    def describe(self, name: str) -> NamespaceDescription | None:
        try:
            found = self._index.describe_namespace(name=name)
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise classify(error) from None
        schema = getattr(found, "schema", None)
        fields = getattr(schema, "fields", None) if schema is not None else None
        indexed = None if fields is None else frozenset(dict(fields))
        return NamespaceDescription(str(found.name), int(found.record_count or 0), indexed)

    def create(self, name: str, filterable: Sequence[str] | None) -> NamespaceDescription:
        """Create the namespace; with ``filterable``, Pinecone indexes only those metadata fields (for good)."""
        schema = None if filterable is None else {"fields": {f: {"filterable": True} for f in filterable}}
        try:
            self._index.create_namespace(name=name, schema=schema)
        except Exception as error:
            raise classify(error) from None
        return NamespaceDescription(name, 0, None if filterable is None else frozenset(filterable))

    def close(self) -> None:
        self._index.close()
