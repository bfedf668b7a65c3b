"""The data plane: upserts, deletes and queries on one index with one API key, over REST or gRPC.

The data plane is used through the SDK's own HTTP client for the data plane, the one ``AsyncIndex``
builds for itself (:func:`data_plane_client`): upserts, deletes and queries are sent through it
as ``AsyncIndex`` sends them, and queries are decoded into the SDK's ``QueryResponse``. So no
worker imports ``AsyncIndex`` and the SDK modules it pulls in (every adapter: assistants,
backups, imports, inference; ~16-20 ms of a cold start, issue 33). The SDK retries data-plane
requests by itself inside its HTTP transport (10.2.0: 4 attempts, ``Retry-After`` up to 60 s) and
offers no setting for it; the client built here has those retries off (as
:func:`disable_sdk_retries` turns them off on an ``AsyncIndex``; tests pin the SDK internals both
rely on), and :class:`PineconeGateway` retries instead, where it can see every attempt: at most
``max_attempts``, never past the call's deadline, and it reports whether an attempt of a
successful call may also have been applied (a timeout, a dropped connection or a 5xx after which
Pinecone may still write). Every call runs under a deadline (``asyncio.wait_for``) and a
per-attempt timeout. Failures are classified by
:mod:`vector_relay.pinecone.errors`.

With ``transport="grpc"`` (setting ``PINECONE_TRANSPORT``) the same calls go through the SDK's gRPC
client (:class:`_GrpcPlane`), whose retries can be turned off through its public ``retry_config``;
everything above (classes, retries, deadline, uncertainty) is the same.

Log sequence numbers (docs.pinecone.io, "Check data freshness"): over REST a write's result carries
the LSN Pinecone committed it at (``x-pinecone-request-lsn``, read through the SDK's
``ResponseInfo``) and a query's the LSN the index has reached (``x-pinecone-max-indexed-lsn``).
The SDK's ``delete`` returns nothing, so deletes are posted through the index's own HTTP client, as
upserts are, to read theirs. Over gRPC the SDK reads neither: both are None there (unknown, never 0).

Upserts are sent as :mod:`vector_relay.pinecone.wire` encoded them: the REST body is their bytes
joined, the gRPC request their dict forms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import pinecone
from pinecone import ResponseInfo
from pinecone._internal.config import PineconeConfig, RetryConfig, check_api_key_is_header_safe
from pinecone._internal.constants import DATA_PLANE_API_VERSION
from pinecone._internal.data_plane_helpers import _validate_host, _warn_if_plaintext_public_host
from pinecone._internal.http_client import AsyncHTTPClient
from pinecone._internal.validation import (
    QUERY_TOP_K_MAX,
    require_in_range,
    require_query_selectors,
    require_valid_vector_id,
)
from pinecone.errors.exceptions import ResponseParsingError, ValidationError
from pinecone.models.vectors.responses import QueryResponse

from vector_relay.errors import FailureKind
from vector_relay.pinecone.errors import PineconeRequestError, classify, index_not_found, namespace_not_found
from vector_relay.pinecone.wire import EncodedRecord, Transport, upsert_body

if TYPE_CHECKING:
    from pinecone import AsyncIndex

BACKOFF_BASE_SECONDS = 0.25
SOURCE_TAG = "vector_relay"
BACKOFF_CAP_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class CallResult:
    """What a successful call cost: wall time in ms (latency metrics), and how it got there.

    ``uncertain``: an earlier attempt failed in a way that leaves open whether Pinecone applied it
    (a timeout, a dropped connection, a 5xx), so a copy of this write may still land later.
    ``lsn``: the log sequence number Pinecone committed the write at; None when it sent none (gRPC,
    a delete of a namespace that does not exist), which means unknown.
    """

    elapsed_ms: float
    attempts: int = 1
    uncertain: bool = False
    lsn: int | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Matches as plain dicts (``id``, ``score``, and ``values`` / ``sparse_values`` / ``metadata`` when asked)."""

    matches: list[dict[str, Any]]
    read_units: int | None
    elapsed_ms: float
    indexed_lsn: int | None = None  # how far the namespace's index has caught up; None: not said (gRPC)


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
        """Upsert records encoded for this gateway's transport by :func:`~vector_relay.pinecone.wire.encode_record`.

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

        async def start(attempt: float) -> int | None:
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
            return None

        result = await self._call(start, timeout)
        response = responses[0]
        matches = [_match(m, include_values, include_metadata) for m in response.matches]
        read_units = response.usage.read_units if response.usage is not None else None
        info = getattr(response, "response_info", None)  # REST responses only
        indexed_lsn = info.lsn_reconciled if isinstance(info, ResponseInfo) else None
        return QueryResult(
            matches=matches, read_units=read_units, elapsed_ms=result.elapsed_ms, indexed_lsn=indexed_lsn
        )

    async def close(self) -> None:
        await self._plane.close()

    async def _call(self, start: Any, timeout: float, *, missing_is_success: bool = False) -> CallResult:
        """Attempts of one call until one succeeds, one fails for good, or the deadline comes."""
        if timeout <= 0:
            raise PineconeRequestError(FailureKind.DEADLINE, "no time left for this Pinecone request")
        began = time.perf_counter()
        deadline = time.monotonic() + timeout
        uncertain = False
        lsn: int | None = None
        for attempt in range(1, self._max_attempts + 1):
            left = deadline - time.monotonic()
            call: Awaitable[int | None] = start(min(self._attempt_timeout, left))
            try:
                lsn = await asyncio.wait_for(call, timeout=left)
            except Exception as error:
                if missing_is_success and namespace_not_found(error):
                    lsn = 0  # the namespace does not exist: nothing deleted, nothing for a query to wait for
                    break
                failure = index_not_found(error) if getattr(error, "status_code", None) == 404 else classify(error)
                failure.uncertain = failure.uncertain or uncertain
                uncertain = failure.uncertain
                wait = self._backoff(attempt, failure)
                if not failure.retryable or attempt == self._max_attempts or wait > deadline - time.monotonic() - 1:
                    raise failure from error
                await self._sleep(wait)
            else:
                break
        elapsed_ms = (time.perf_counter() - began) * 1000
        return CallResult(elapsed_ms=elapsed_ms, attempts=attempt, uncertain=uncertain, lsn=lsn)

    def _backoff(self, attempt: int, failure: PineconeRequestError) -> float:
        """Pinecone's ``Retry-After`` when it sent one, else full jitter up to 0.25 s x 2^(attempt-1), at most 4 s."""
        if failure.retry_after is not None:
            return max(failure.retry_after, 0.0)
        return self._rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


class _RestPlane:
    """The data plane over HTTP: the SDK's data-plane client with its own retries off."""

    def __init__(self, host: str, api_key: str, attempt_timeout: float) -> None:
        self._http = data_plane_client(host=host, api_key=api_key, timeout=attempt_timeout)

    def upsert_sender(
        self, namespace: str, records: Sequence[EncodedRecord]
    ) -> Callable[[float], Awaitable[int | None]]:
        """One attempt of the upsert: the records' bytes joined, exactly what ``AsyncIndex.upsert`` would
        build from them, sent through the index's own HTTP client (its key, headers, pool, error
        mapping). The planner encoded every record to measure the 2 MB limit; the SDK would encode
        them again."""
        body = upsert_body(namespace, [record.encoded for record in records])
        http = self._http

        async def send(attempt: float) -> int | None:
            response = await http.post(
                "/vectors/upsert", timeout=attempt, content=body, headers={"Content-Type": "application/json"}
            )
            return _committed_lsn(response.headers)

        return send

    async def delete(
        self,
        attempt: float,
        *,
        namespace: str,
        ids: list[str] | None = None,
        filter: dict[str, Any] | None = None,
        delete_all: bool = False,
    ) -> int | None:
        """One attempt of a delete, the body ``AsyncIndex.delete`` builds, posted through the index's client
        so the response's LSN can be read (the SDK's ``delete`` returns None)."""
        body: dict[str, Any] = {"namespace": namespace}
        if ids is not None:
            body["ids"] = ids
        if delete_all:
            body["deleteAll"] = True
        if filter is not None:
            body["filter"] = filter
        response = await self._http.post("/vectors/delete", timeout=attempt, json=body)
        return _committed_lsn(response.headers)

    async def query(
        self,
        attempt: float,
        *,
        top_k: int,
        vector: Sequence[float] | None,
        id: str | None,
        namespace: str,
        filter: Mapping[str, Any] | None,
        include_values: bool,
        include_metadata: bool,
        sparse_vector: Mapping[str, Any] | None,
    ) -> QueryResponse:
        """One attempt of a query as ``AsyncIndex.query`` makes it (SDK 10.2.0): the same checks before
        sending, the same body, the answer decoded into the SDK's ``QueryResponse`` with its
        ``response_info``. Without ``AsyncIndex``, whose module imports every SDK adapter (assistants,
        backups, imports, inference); tests/integration/test_pinecone_queries.py holds the two equal."""
        require_in_range("top_k", top_k, 1, QUERY_TOP_K_MAX)
        require_query_selectors(vector=vector, id=id, sparse_vector=sparse_vector)
        if id is not None:
            require_valid_vector_id("id", id)
        body: dict[str, Any] = {"topK": top_k, "includeValues": include_values, "includeMetadata": include_metadata}
        if namespace:
            body["namespace"] = namespace
        if vector is not None:
            body["vector"] = vector
        if id is not None:
            body["id"] = id
        if filter is not None:
            body["filter"] = filter
        if sparse_vector is not None:
            body["sparseVector"] = sparse_vector
        response = await self._http.post("/query", timeout=attempt, json=body)
        try:
            result = msgspec.json.decode(response.content, type=QueryResponse)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:  # as the SDK's decode_response wraps them
            raise ResponseParsingError(
                f"Failed to parse API response as QueryResponse: {error}", cause=error
            ) from error
        result.response_info = ResponseInfo(raw_headers=dict(response.headers))
        return result

    async def close(self) -> None:
        await self._http.close()


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
            source_tag=SOURCE_TAG,
            secure=not plaintext,
            grpc_scheme="http" if plaintext else "https",
            timeout=attempt_timeout,
            retry_config=RetryConfig(max_retries=0),
        )

    def upsert_sender(
        self, namespace: str, records: Sequence[EncodedRecord]
    ) -> Callable[[float], Awaitable[int | None]]:
        vectors = [record.grpc for record in records if record.grpc is not None]  # all are, over gRPC

        async def send(attempt: float) -> int | None:
            await asyncio.to_thread(
                self._index.upsert, vectors=vectors, namespace=namespace, timeout=attempt, show_progress=False
            )
            return None  # the SDK's GrpcIndex reads no LSN

        return send

    async def delete(self, attempt: float, **selector: Any) -> int | None:
        await asyncio.to_thread(self._index.delete, timeout=attempt, **selector)
        return None

    async def query(self, attempt: float, **request: Any) -> Any:
        return await asyncio.to_thread(self._index.query, timeout=attempt, **request)

    async def close(self) -> None:
        await asyncio.to_thread(self._index.close)


def _committed_lsn(headers: Mapping[str, str]) -> int | None:
    """The LSN a write response says it committed at, as the SDK reads it (None when absent or not a number)."""
    return ResponseInfo(raw_headers={name.lower(): value for name, value in headers.items()}).lsn_committed


def load_transport() -> None:
    """Import what the SDK loads on its first data-plane call (its HTTP transport), without connecting."""
    import httpcore  # noqa: F401 - imported for its side effect: the module is loaded
    import httpx  # noqa: F401

    data_plane_client(host="https://snapshot.invalid", api_key="unused", timeout=1.0)


def data_plane_client(*, host: str, api_key: str, timeout: float) -> AsyncHTTPClient:
    """The HTTP client ``AsyncIndex(host=host, api_key=api_key, timeout=timeout, source_tag=...)`` builds for
    itself (SDK 10.2.0: same host check, configuration, headers), with the SDK's own retries off.

    Built without importing ``AsyncIndex``. Like the SDK's, its httpx client (connection pool, TLS
    context) is made on the first request. tests/unit/test_pinecone_client.py holds it equal to the
    one ``AsyncIndex`` builds.
    """
    normalized = _validate_host(host)
    _warn_if_plaintext_public_host(normalized)
    config = PineconeConfig(
        api_key=api_key,  # an empty one falls back to PINECONE_API_KEY here, as in AsyncIndex
        host=normalized,
        timeout=timeout,
        source_tag=SOURCE_TAG,
        retry_config=RetryConfig(max_retries=0),
    )
    if not config.api_key:
        raise ValidationError(
            "No API key provided. Pass api_key='...' or set the PINECONE_API_KEY environment variable."
        )
    check_api_key_is_header_safe(config.api_key)
    return AsyncHTTPClient(config, DATA_PLANE_API_VERSION)


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


def check_api_key(*, host: str, api_key: str, timeout: float) -> None:
    """One cheap data-plane call (index stats) with ``api_key``; raises :class:`PineconeRequestError` if refused."""
    index = pinecone.Index(host=host, api_key=api_key, timeout=timeout, source_tag=SOURCE_TAG)
    try:
        index.describe_index_stats(timeout=timeout)
    except Exception as error:
        raise classify(error) from None
    finally:
        index.close()
