"""The Pinecone index's life: create or adopt it, wait until it serves, change what may change, delete it.

Shared by the ``Custom::PineconeIndex`` resource (vector_relay.operations.index_resource) and the operator
commands. Pinecone's ``create_index`` returns while the index is still ``Initializing``; data-plane
calls before ``Ready`` get 503, so nothing may write before :func:`wait_ready` says so. Dimension,
metric, vector type, cloud and region never change after creation: a request to change them is
refused with a reason (:class:`IndexChangeRefused`), never carried out by deleting data.

An *adopted* index (one that existed before, found by :func:`ensure`) is someone else's: its
deletion protection is only ever raised, never lowered, and its own tags are kept (the asked-for
tags are merged in); only tags the caller set before and no longer asks for are removed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vector_relay.errors import FailureKind
from vector_relay.pinecone.control_plane import IndexDescription
from vector_relay.pinecone.errors import PineconeRequestError

METRICS = ("cosine", "dotproduct", "euclidean")
MAX_NAME_CHARS = 45  # Pinecone: 1-45 lower-case letters, digits and hyphens
POLL_FIRST_SECONDS = 1.0
POLL_MAX_SECONDS = 10.0


class IndexLifecycleError(Exception):
    """Something about the index that an operator must fix; the message says what."""


class IndexChangeRefused(IndexLifecycleError):
    """A change Pinecone cannot make in place (shape, cloud, region), or an index of another shape."""


class DeletionProtected(IndexChangeRefused):
    """A delete Pinecone refused because the index has deletion protection; each caller says how to turn it off."""

    def __init__(self, name: str) -> None:
        super().__init__(f"index {name} has deletion protection enabled, so it was not deleted")
        self.name = name


class IndexFailed(IndexLifecycleError):
    """Pinecone reports the index as InitializationFailed, Terminating or Disabled."""


class NotReadyInTime(IndexLifecycleError):
    """Still Initializing when the caller's time ran out (the caller may wait again)."""


class IndexAdmin(Protocol):
    def describe(self, name: str) -> IndexDescription | None: ...

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
    ) -> IndexDescription: ...

    def configure(
        self,
        name: str,
        *,
        deletion_protection: bool,
        tags: Mapping[str, str],
        remove_tags: Collection[str] | None = None,
    ) -> IndexDescription: ...

    def delete(self, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """What the template (or the operator) asks for."""

    name: str
    dimension: int | None  # None: a sparse index (metric dotproduct)
    metric: str
    cloud: str
    region: str
    deletion_protection: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_properties(cls, properties: Mapping[str, Any]) -> IndexSpec:
        """From a custom resource's ResourceProperties (CloudFormation hands every value over as a string)."""
        problems: list[str] = []
        name = str(properties.get("Name", ""))
        if not (1 <= len(name) <= MAX_NAME_CHARS) or not all(c.islower() or c.isdigit() or c == "-" for c in name):
            problems.append(f"Name {name!r} must be 1-45 lower-case letters, digits or hyphens")
        raw_dimension = str(properties.get("Dimension", "")).strip()
        dimension: int | None = None
        if raw_dimension:
            if not raw_dimension.isdigit() or not 1 <= int(raw_dimension) <= 20_000:
                problems.append(f"Dimension {raw_dimension!r} must be a whole number from 1 to 20000 (empty: sparse)")
            else:
                dimension = int(raw_dimension)
        metric = str(properties.get("Metric", "cosine"))
        if metric not in METRICS:
            problems.append(f"Metric {metric!r} must be one of {', '.join(METRICS)}")
        if dimension is None and metric != "dotproduct" and not problems:
            problems.append("a sparse index (no Dimension) needs Metric dotproduct")
        cloud, region = str(properties.get("Cloud", "aws")), str(properties.get("Region", "us-east-1"))
        protection = str(properties.get("DeletionProtection", "false")).lower()
        if protection not in ("true", "false"):
            problems.append(f"DeletionProtection {protection!r} must be true or false")
        tags = properties.get("Tags", {}) or {}
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            problems.append("Tags must map strings to strings")
            tags = {}
        if problems:
            raise IndexLifecycleError("; ".join(problems))
        return cls(name, dimension, metric, cloud, region, protection == "true", dict(tags))

    def shape(self) -> tuple[int | None, str, str, str]:
        return (self.dimension, self.metric, self.cloud, self.region)


def _shape_of(found: IndexDescription) -> tuple[int | None, str, str | None, str | None]:
    return (found.dimension, found.metric, found.cloud, found.region)


def _describe_shape(shape: tuple[Any, ...]) -> str:
    dimension, metric, cloud, region = shape
    kind = "sparse" if dimension is None else f"dimension {dimension}"
    return f"{kind}, metric {metric}, {cloud} {region}"


@dataclass(frozen=True, slots=True)
class Ensured:
    index: IndexDescription
    adopted: bool  # it existed already, with the asked-for shape
    message: str


def ensure(admin: IndexAdmin, spec: IndexSpec) -> Ensured:
    """Create the index, or adopt an existing one of the same shape (its protection and tags set as asked)."""
    found = admin.describe(spec.name)
    if found is None:
        created = admin.create(
            name=spec.name,
            dimension=spec.dimension,
            metric=spec.metric,
            cloud=spec.cloud,
            region=spec.region,
            deletion_protection=spec.deletion_protection,
            tags=spec.tags,
        )
        return Ensured(created, adopted=False, message=f"created index {spec.name} ({_describe_shape(spec.shape())})")
    if _shape_of(found) != spec.shape():
        raise IndexChangeRefused(
            f"index {spec.name} already exists with {_describe_shape(_shape_of(found))}; asked for "
            f"{_describe_shape(spec.shape())}: refusing to adopt it (choose another name, or delete it yourself)"
        )
    found = _settle(admin, found, spec, adopted=True)
    return Ensured(found, adopted=True, message=f"adopted the existing index {spec.name} (same shape)")


def update(
    admin: IndexAdmin, new: IndexSpec, *, adopted: bool = False, dropped_tags: Collection[str] = ()
) -> IndexDescription:
    """Change deletion protection and tags of index ``new.name`` in place; refuse a change of shape, cloud or region.

    The shape is compared with the index itself, not with what was asked before, so the rollback
    of a refused change (asking for the index as it is) succeeds. An index the stack created gets
    exactly ``new.tags``; an ``adopted`` one keeps its own tags (only ``dropped_tags``, tags the
    stack set before and no longer asks for, are removed) and its protection is never lowered.
    """
    found = admin.describe(new.name)
    if found is None:
        raise IndexLifecycleError(f"index {new.name} no longer exists in Pinecone")
    if _shape_of(found) != new.shape():
        raise IndexChangeRefused(
            f"index {new.name}: {_describe_shape(_shape_of(found))} cannot change to {_describe_shape(new.shape())} "
            "(Pinecone fixes dimension, metric, cloud and region at creation); the update is refused"
        )
    return _settle(admin, found, new, adopted=adopted, dropped_tags=dropped_tags)


def _settle(
    admin: IndexAdmin, found: IndexDescription, spec: IndexSpec, *, adopted: bool, dropped_tags: Collection[str] = ()
) -> IndexDescription:
    """Give ``found`` the deletion protection and tags ``spec`` asks for (see the module's note on adopted indexes)."""
    if adopted:
        protection = spec.deletion_protection or found.deletion_protection
        removed = {key for key in dropped_tags if key in found.tags and key not in spec.tags}
        tags = {key: value for key, value in found.tags.items() if key not in removed} | dict(spec.tags)
        remove_tags: Collection[str] | None = removed
    else:
        protection, tags, remove_tags = spec.deletion_protection, dict(spec.tags), None
    if (found.deletion_protection, found.tags) == (protection, tags):
        return found
    return admin.configure(spec.name, deletion_protection=protection, tags=spec.tags, remove_tags=remove_tags)


def wait_ready(
    admin: IndexAdmin,
    name: str,
    *,
    time_left: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[IndexDescription], None] | None = None,
) -> IndexDescription:
    """Poll until the index is Ready, backing off from 1 s to 10 s; :class:`NotReadyInTime` if time runs out.

    A ``describe`` that fails in a way worth retrying (408, 429, 5xx, no answer) is one more poll
    that saw nothing: polling goes on while time is left, and :class:`NotReadyInTime` names that
    error if it was the last thing seen. Any other failure (a refused key, ...) ends the wait.
    """
    delay = POLL_FIRST_SECONDS
    while True:
        try:
            found = admin.describe(name)
        except PineconeRequestError as error:
            if not error.retryable:
                raise
            still = f"index {name} could not be described ({error})"
        else:
            if found is None:
                raise IndexLifecycleError(f"index {name} disappeared while waiting for it to be ready")
            if on_poll is not None:
                on_poll(found)
            if found.ready and found.state == "Ready":
                return found
            if found.state in ("InitializationFailed", "Terminating", "Disabled"):
                raise IndexFailed(f"index {name} is {found.state}; Pinecone will not make it ready")
            still = f"index {name} is still {found.state or 'not ready'}"
        if time_left() <= delay:
            raise NotReadyInTime(still)
        sleep(delay)
        delay = min(delay * 2, POLL_MAX_SECONDS)


def delete(admin: IndexAdmin, name: str) -> str:
    """Delete the index (a missing one is fine); deletion protection is a :class:`DeletionProtected`.

    The refusal does not say how to turn protection off: the stack's resource and the command each say it their way.
    """
    try:
        existed = admin.delete(name)
    except PineconeRequestError as error:
        if error.kind is FailureKind.REJECTED and error.status == 403:
            raise DeletionProtected(name) from None
        raise
    return f"deleted index {name}" if existed else f"index {name} was already gone"
