"""The one module that talks to the Pinecone SDK (ruff's TID251 bans ``pinecone`` everywhere else).

It turns the SDK's exceptions into the project's failure classes by HTTP status, never by SDK
class name (those changed between SDK majors):

* 400, 413, 422: Pinecone refuses these records as sent -> :attr:`FailureKind.REJECTED`
  (the caller splits the request to find the messages at fault; a lone message is poison);
* 401, 403: the key was refused -> :attr:`FailureKind.AUTH` (refresh the key once, then transient);
* 404 that is Pinecone's "Namespace not found" on a delete: nothing to delete -> success;
* any other 404 of a data-plane call (a wrong host, a deleted index) -> :attr:`FailureKind.INDEX_NOT_FOUND`
  (a deployment problem: the caller retries it later, as transient, and counts it for an alarm);
* 408, 429, 5xx, timeouts, connection errors, anything unexpected -> :attr:`FailureKind.TRANSIENT`.

The data plane is used through the SDK's ``AsyncIndex``. The SDK retries data-plane requests by
itself inside its HTTP transport (10.2.0: 4 attempts, ``Retry-After`` up to 60 s) and offers no
setting for it; :func:`disable_sdk_retries` turns those retries off on each index this module
builds (a test pins the SDK internals it relies on), and :class:`PineconeGateway` retries instead,
where it can see every attempt: at most ``max_attempts``, never past the call's deadline, and it
reports whether an attempt of a successful call may also have been applied (a timeout, a dropped
connection or a 5xx after which Pinecone may still write). Every call runs under a deadline
(``asyncio.wait_for``) and a per-attempt timeout.

With ``transport="grpc"`` (setting ``PINECONE_TRANSPORT``) the same calls go through the SDK's gRPC
client (:class:`_GrpcPlane`), whose retries can be turned off through its public ``retry_config``;
everything above (classes, retries, deadline, uncertainty) is the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import random
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pinecone
from pinecone import AsyncIndex
from pinecone._internal.config import PineconeConfig, RetryConfig

from vector_relay.contract.messages import IndexShape
from vector_relay.ingest.planning import EncodedRecord, Transport, upsert_body

_REJECTED = frozenset({400, 413, 422})
_AUTH = frozenset({401, 403})
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})  # and no status: timeouts, dropped connections
_KNOWN_NOT_APPLIED = frozenset({429})  # refused before the write: nothing of that attempt can land later
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 4.0


class FailureKind(enum.Enum):
    REJECTED = "rejected"
    AUTH = "auth"
    TRANSIENT = "transient"
    DEADLINE = "deadline"
    INDEX_NOT_FOUND = "index_not_found"  # 404 from the data plane, not about a namespace: wrong host, deleted index


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


@dataclass(frozen=True, slots=True)
class CallResult:
    """What a successful call cost: wall time in ms (latency metrics), and how it got there.

    ``uncertain``: an earlier attempt failed in a way that leaves open whether Pinecone applied it
    (a timeout, a dropped connection, a 5xx), so a copy of this write may still land later.
    """

    elapsed_ms: float
    attempts: int = 1
    uncertain: bool = False


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Matches as plain dicts (``id``, ``score``, and ``values`` / ``sparse_values`` / ``metadata`` when asked)."""

    matches: list[dict[str, Any]]
    read_units: int | None
    elapsed_ms: float


def classify(error: BaseException) -> PineconeRequestError:
    """Map any exception from an SDK call to a :class:`PineconeRequestError`."""
    if isinstance(error, PineconeRequestError):
        return error
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return PineconeRequestError(FailureKind.TRANSIENT, "Pinecone did not answer in time", uncertain=True)
    status = getattr(error, "status_code", None)
    message = _describe(error)
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


def _index_not_found(error: BaseException) -> PineconeRequestError:
    return PineconeRequestError(
        FailureKind.INDEX_NOT_FOUND,
        f"{_describe(error)} (no such index at this host: check PINECONE_INDEX_HOST and that the index exists)",
        status=404,
    )


def _describe(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = " ".join(str(text).split())[:500]
    return f"Pinecone {status}: {text}" if status else f"{type(error).__name__}: {text}"


class PineconeGateway:
    """Data-plane calls on one index with one API key. Build one per key; reuse it across invocations.

    Records are passed as SDK dicts (``id``, ``values``, optional ``sparse_values`` and
    ``metadata``). Every method takes ``timeout``: the seconds left for the whole call, retries
    included; no attempt outlives it. A retryable failure (408, 429, 5xx, no answer) is tried
    again, up to ``max_attempts`` in all, after a jittered back-off or Pinecone's ``Retry-After``,
    unless the wait would not leave an attempt room before the deadline.
    """

    def __init__(
        self,
        *,
        host: str,
        api_key: str,
        attempt_timeout: float,
        max_attempts: int = 3,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        transport: Transport = "rest",
        grpc_host: str | None = None,
    ) -> None:
        self._plane: _RestPlane | _GrpcPlane
        if transport == "grpc":
            self._plane = _GrpcPlane(grpc_host or host, api_key, attempt_timeout)
        else:
            self._plane = _RestPlane(host, api_key, attempt_timeout)
        self.transport = transport
        self._attempt_timeout = attempt_timeout
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - back-off jitter, not a secret

    async def upsert(self, namespace: str, records: Sequence[EncodedRecord], *, timeout: float) -> CallResult:
        """Upsert records encoded for this gateway's transport by :func:`~vector_relay.ingest.planning.encode_record`.

        The body is those bytes joined, exactly what ``AsyncIndex.upsert`` would build from the
        same records, sent through the index's own HTTP client (its key, headers, connection pool
        and error mapping): the batch planner had to encode every record to measure the 2 MB
        limit, and encoding them a second time in the SDK doubled the worker's JSON work.
        """
        send = self._plane.upsert_sender(namespace, records)
        return await self._call(send, timeout)

    async def delete_ids(self, namespace: str, ids: Sequence[str], *, timeout: float) -> CallResult:
        return await self._call(
            lambda attempt: self._plane.delete(attempt, ids=list(ids), namespace=namespace),
            timeout,
            missing_is_success=True,
        )

    async def delete_by_filter(self, namespace: str, filter_: Mapping[str, Any], *, timeout: float) -> CallResult:
        return await self._call(
            lambda attempt: self._plane.delete(attempt, filter=dict(filter_), namespace=namespace),
            timeout,
            missing_is_success=True,
        )

    async def delete_all(self, namespace: str, *, timeout: float) -> CallResult:
        return await self._call(
            lambda attempt: self._plane.delete(attempt, delete_all=True, namespace=namespace),
            timeout,
            missing_is_success=True,
        )

    async def query(
        self,
        namespace: str,
        *,
        top_k: int,
        vector: Sequence[float] | None,
        record_id: str | None,
        sparse_vector: Mapping[str, Any] | None,
        filter_: Mapping[str, Any] | None,
        include_values: bool,
        include_metadata: bool,
        timeout: float,
    ) -> QueryResult:
        responses: list[Any] = []

        async def start(attempt: float) -> None:
            responses.append(
                await self._plane.query(
                    attempt,
                    top_k=top_k,
                    vector=vector,
                    id=record_id,
                    namespace=namespace,
                    filter=filter_,
                    include_values=include_values,
                    include_metadata=include_metadata,
                    sparse_vector=sparse_vector,
                )
            )

        result = await self._call(start, timeout)
        response = responses[0]
        matches = [_match(m, include_values, include_metadata) for m in response.matches]
        read_units = response.usage.read_units if response.usage is not None else None
        return QueryResult(matches=matches, read_units=read_units, elapsed_ms=result.elapsed_ms)

    async def close(self) -> None:
        await self._plane.close()

    async def _call(self, start: Any, timeout: float, *, missing_is_success: bool = False) -> CallResult:
        """Attempts of one call until one succeeds, one fails for good, or the deadline comes."""
        if timeout <= 0:
            raise PineconeRequestError(FailureKind.DEADLINE, "no time left for this Pinecone request")
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        uncertain = False
        for attempt in range(1, self._max_attempts + 1):
            left = deadline - time.monotonic()
            call: Awaitable[Any] = start(min(self._attempt_timeout, left))
            try:
                await asyncio.wait_for(call, timeout=left)
            except Exception as error:
                if missing_is_success and namespace_not_found(error):
                    break  # the namespace does not exist: nothing to delete
                failure = _index_not_found(error) if getattr(error, "status_code", None) == 404 else classify(error)
                failure.uncertain = failure.uncertain or uncertain
                uncertain = failure.uncertain
                wait = self._backoff(attempt, failure)
                if not failure.retryable or attempt == self._max_attempts or wait > deadline - time.monotonic() - 1:
                    raise failure from error
                await self._sleep(wait)
            else:
                break
        return CallResult(elapsed_ms=(time.perf_counter() - began) * 1000, attempts=attempt, uncertain=uncertain)

    def _backoff(self, attempt: int, failure: PineconeRequestError) -> float:
        """Pinecone's ``Retry-After`` when it sent one, else full jitter up to 0.25 s x 2^(attempt-1), at most 4 s."""
        if failure.retry_after is not None:
            return max(failure.retry_after, 0.0)
        return self._rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


class _RestPlane:
    """The data plane over HTTP: the SDK's ``AsyncIndex`` with its own retries off."""

    def __init__(self, host: str, api_key: str, attempt_timeout: float) -> None:
        self._index = AsyncIndex(host=host, api_key=api_key, timeout=attempt_timeout, source_tag="vector_relay")
        disable_sdk_retries(self._index)

    def upsert_sender(self, namespace: str, records: Sequence[EncodedRecord]) -> Callable[[float], Awaitable[None]]:
        """One attempt of the upsert: the records' bytes joined, exactly what ``AsyncIndex.upsert`` would
        build from them, sent through the index's own HTTP client (its key, headers, pool, error
        mapping). The planner encoded every record to measure the 2 MB limit; the SDK would encode
        them again."""
        body = upsert_body(namespace, [record.encoded for record in records])
        http = self._index._http  # the SDK's client, as in disable_sdk_retries; a test pins it

        async def send(attempt: float) -> None:
            await http.post(
                "/vectors/upsert", timeout=attempt, content=body, headers={"Content-Type": "application/json"}
            )

        return send

    async def delete(self, attempt: float, **selector: Any) -> None:
        await self._index.delete(timeout=attempt, **selector)

    async def query(self, attempt: float, **request: Any) -> Any:
        return await self._index.query(timeout=attempt, **request)

    async def close(self) -> None:
        await self._index.close()


class _GrpcPlane:
    """The data plane over gRPC: the SDK's ``GrpcIndex`` (its Rust client), its retries off.

    Unlike REST, the gRPC client takes a retry configuration, so no SDK internals are touched: it
    makes exactly one attempt per call, bounded by the attempt's ``timeout`` (the gRPC deadline,
    at most the time the invocation has left), and :class:`PineconeGateway` retries. Its calls
    block, so each runs in a worker thread; a call given up by the event loop still ends by its own
    deadline. gRPC statuses reach :func:`classify` as the SDK maps them: INVALID_ARGUMENT 400,
    UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, RESOURCE_EXHAUSTED 429,
    UNAVAILABLE and DEADLINE_EXCEEDED as connection and timeout errors (transient, may have landed).
    """

    def __init__(self, host: str, api_key: str, attempt_timeout: float) -> None:
        from pinecone.grpc import GrpcIndex

        plaintext = host.startswith("http://")  # only ever a loopback emulator (settings refuse others)
        self._index = GrpcIndex(
            host=host,
            api_key=api_key,
            source_tag="vector_relay",
            secure=not plaintext,
            grpc_scheme="http" if plaintext else "https",
            timeout=attempt_timeout,
            retry_config=RetryConfig(max_retries=0),
        )

    def upsert_sender(self, namespace: str, records: Sequence[EncodedRecord]) -> Callable[[float], Awaitable[None]]:
        vectors = [record.grpc for record in records if record.grpc is not None]  # all are, over gRPC

        async def send(attempt: float) -> None:
            await asyncio.to_thread(
                self._index.upsert, vectors=vectors, namespace=namespace, timeout=attempt, show_progress=False
            )

        return send

    async def delete(self, attempt: float, **selector: Any) -> None:
        await asyncio.to_thread(self._index.delete, timeout=attempt, **selector)

    async def query(self, attempt: float, **request: Any) -> Any:
        return await asyncio.to_thread(self._index.query, timeout=attempt, **request)

    async def close(self) -> None:
        await asyncio.to_thread(self._index.close)


def load_transport() -> None:
    """Import what the SDK loads on its first data-plane call (its HTTP transport), without connecting."""
    import httpcore  # noqa: F401 - imported for its side effect: the module is loaded
    import httpx  # noqa: F401

    AsyncIndex(host="https://snapshot.invalid", api_key="unused", source_tag="vector_relay")


def disable_sdk_retries(index: AsyncIndex) -> None:
    """Turn off the retries the SDK makes inside its HTTP transport for ``index`` (before its first call).

    SDK 10.2.0 builds the data plane's httpx client lazily from ``index._http._config.retry_config``
    and takes no public setting for it. If those internals change, this raises at once rather than
    let hidden retries back in (tests/integration/test_worker_retries.py counts attempts on the wire).
    """
    http = getattr(index, "_http", None)
    config = getattr(http, "_config", None)
    if http is None or getattr(http, "_client", object()) is not None or not isinstance(config, PineconeConfig):
        raise RuntimeError(f"pinecone {pinecone.__version__}: cannot turn off the SDK's data-plane retries")
    http._config = dataclasses.replace(config, retry_config=RetryConfig(max_retries=0))


def _match(scored: Any, include_values: bool, include_metadata: bool) -> dict[str, Any]:
    match: dict[str, Any] = {"id": scored.id, "score": float(scored.score)}
    if include_values:
        match["values"] = list(scored.values)
        if scored.sparse_values is not None:
            match["sparse_values"] = {
                "indices": list(scored.sparse_values.indices),
                "values": list(scored.sparse_values.values),
            }
    if include_metadata and scored.metadata is not None:
        match["metadata"] = dict(scored.metadata)
    return match


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


# ------------------------------------------------------------------------------------ indexes
# What the index-lifecycle code needs (vector_relay.operations.index_lifecycle): create without waiting,
# describe, configure in place, delete. The SDK's own waiting (create/delete poll every 5 s with no
# deadline by default) is turned off with timeout=-1: the caller polls within its own time limit.


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
                raise PineconeRequestError(FailureKind.REJECTED, _describe(error), status=403) from None
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


# ------------------------------------------------------------------------------------ API keys
# What the rotation function needs: mint, find and revoke keys through the Admin API (service
# account, OAuth client credentials), and one cheap data-plane call made with a given key.


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as the Admin API lists it: never its value."""

    key_id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A key just minted. ``value`` is shown once by Pinecone; ``repr`` never shows it."""

    info: ApiKeyInfo
    value: str = field(repr=False)


def _key_info(model: Any) -> ApiKeyInfo:
    roles = tuple(str(getattr(role, "value", role)) for role in (model.roles or ()))
    return ApiKeyInfo(key_id=str(model.id), name=str(model.name or ""), roles=roles)


class PineconeKeyAdmin:
    """API keys of one project through Pinecone's Admin API. Errors are :class:`PineconeRequestError`."""

    def __init__(self, *, client_id: str, client_secret: str, host: str | None, oauth_url: str | None) -> None:
        try:
            self._admin = pinecone.Admin(
                client_id=client_id,
                client_secret=client_secret,
                host=host or None,
                oauth_url=oauth_url or None,
                source_tag="vector_relay",
            )
        except Exception as error:
            raise classify(error) from None

    def list_keys(self, project_id: str) -> list[ApiKeyInfo]:
        try:
            return [_key_info(model) for model in self._admin.api_keys.list(project_id=project_id)]
        except Exception as error:
            raise classify(error) from None

    def describe_key(self, key_id: str) -> ApiKeyInfo | None:
        """The key, or None when Pinecone does not know it (deleted, or from another project)."""
        try:
            return _key_info(self._admin.api_keys.describe(api_key_id=key_id))
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return None
            raise classify(error) from None

    def create_key(self, project_id: str, name: str, roles: Sequence[str]) -> CreatedApiKey:
        try:
            created = self._admin.api_keys.create(project_id=project_id, name=name, roles=list(roles) or None)
        except Exception as error:
            raise classify(error) from None
        return CreatedApiKey(info=_key_info(created.key), value=created.value)

    def delete_key(self, key_id: str) -> bool:
        """Revoke the key; False when it was already gone (a retried step)."""
        try:
            self._admin.api_keys.delete(api_key_id=key_id)
        except Exception as error:
            if getattr(error, "status_code", None) == 404:
                return False
            raise classify(error) from None
        return True

    def close(self) -> None:
        self._admin.close()


def check_api_key(*, host: str, api_key: str, timeout: float) -> None:
    """One cheap data-plane call (index stats) with ``api_key``; raises :class:`PineconeRequestError` if refused."""
    index = pinecone.Index(host=host, api_key=api_key, timeout=timeout, source_tag="vector_relay")
    try:
        index.describe_index_stats(timeout=timeout)
    except Exception as error:
        raise classify(error) from None
    finally:
        index.close()


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
