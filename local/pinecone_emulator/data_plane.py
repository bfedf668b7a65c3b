"""The data plane of one index (camelCase JSON): what every operation shares, and the reads.

:func:`serve` finds the index and carries an operation out under its lock; the operations take a
:class:`DataContext` (the index, the indexing lag, the rate limit) and know nothing else of the
emulator. The writes (upsert, delete, update) are in writes.py, the namespaces (snake_case JSON)
in namespaces.py; both read their requests with the helpers here.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pinecone_emulator.app import Emulator
from pinecone_emulator.auth import READ_OPERATIONS
from pinecone_emulator.filters import FilterError, Predicate, compile_filter
from pinecone_emulator.records import (
    MAX_IDS_PER_REQUEST,
    Sparse,
    bad,
    float32_list,
    parse_dense,
    parse_sparse,
    parse_top_k,
    validate_id,
)
from pinecone_emulator.store import (
    DEFAULT_NAMESPACE,
    IndexState,
    NamespaceData,
    namespace_key,
    score_rows,
    top_k,
)
from pinecone_emulator.wire import INDEXED_LSN_HEADER, REQUEST_LSN_HEADER, ApiError, Request, Response

LIST_LIMIT_MAX = 100
FETCH_BY_METADATA_LIMIT_MAX = 10_000
NAMESPACE_NAME_MAX = 512
GIB = 1024**3
# Pinecone's query result limit, "4MB" (docs.pinecone.io/guides/search/semantic-search, "Query limits": a
# query over it fails; lower top_k or leave out values or metadata). Taken as 4 MiB, like the upsert
# limit's "2MB", and measured on the response the emulator sends (its JSON): Pinecone does not say
# how it measures, nor what it answers; the answer here is its data plane's 400 INVALID_ARGUMENT.
MAX_QUERY_RESULT_BYTES = 4 * 1024 * 1024


@dataclass
class DataContext:
    index: IndexState
    lag_seconds: float
    admit: Callable[[str], None]  # raises the 429 when the namespace is over its rate limit


def serve(emulator: Emulator, name: str, operation: str, answer: Callable[[DataContext], Response]) -> Response:
    """``answer`` on index ``name``, under the index's lock; a write marks the emulator changed (persistence)."""
    with emulator.lock:
        index = emulator.indexes.get(name)
    if index is None:
        raise ApiError(404, f"Index {name} not found")
    if not index.serves_vectors:
        raise ApiError(400, "This index has no vector fields; the vectors API cannot be used with it")
    with index.lock:
        response = answer(DataContext(index, emulator.faults.lag_seconds, emulator.admit(operation, name)))
    if operation not in READ_OPERATIONS:
        emulator.changed()
    return response


def lsn_headers(lsn: int) -> dict[str, str]:
    """A write's receipt: its namespace's LSN, in the header Pinecone returns it in (check-data-freshness)."""
    return {REQUEST_LSN_HEADER: str(lsn)}


def indexed_only(index: IndexState, key: str, predicate: Predicate | None) -> Predicate | None:
    """With a namespace schema Pinecone indexes only the fields it lists as filterable ("when schema is present,
    only fields which are present in the fields object with filterable: true are indexed", db_data 2026-07
    MetadataSchema); a filter cannot see the others, so here they are absent from what a filter evaluates."""
    schema = index.namespace_schemas.get(key)
    if predicate is None or schema is None:
        return predicate
    indexed = frozenset(schema.get("fields", {}))
    return lambda metadata: predicate({k: v for k, v in metadata.items() if k in indexed})


def namespace_param(raw: object) -> tuple[str, str]:
    """(storage key, name as the client sent it)."""
    if raw is None:
        return DEFAULT_NAMESPACE, ""
    if not isinstance(raw, str):
        raise bad("namespace must be a string")
    if len(raw) > NAMESPACE_NAME_MAX or not raw.isascii() or "\x00" in raw:
        raise bad(f"Namespace name must be ASCII, without NUL, and at most {NAMESPACE_NAME_MAX} characters")
    return namespace_key(raw), raw


def filter_param(expression: object, *, empty_message: str | None = None) -> Predicate | None:
    if expression is None:
        return None
    if empty_message is not None and expression == {}:
        raise bad(empty_message)
    if expression == {}:
        return None
    try:
        return compile_filter(expression)
    except FilterError as error:
        raise bad(str(error)) from None


def bool_param(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise bad(f"{key} must be a boolean")
    return value


def encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad(f"Invalid pagination token: {token!r}") from None


def _limit(raw: object, *, default: int, maximum: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, str):
        try:
            raw = int(raw)
        except ValueError:
            raise bad(f"limit must be an integer, got '{raw}'") from None
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= maximum:
        raise bad(f"Invalid value for limit: {raw}. limit must be between 1 and {maximum}")
    return raw


def page_params(params: dict[str, list[str]]) -> tuple[str, int, Any]:
    """``prefix``, ``limit`` and the decoded ``paginationToken`` of a list request."""
    prefix = params.get("prefix", [""])[0]
    limit = _limit(params.get("limit", [None])[0], default=LIST_LIMIT_MAX, maximum=LIST_LIMIT_MAX)
    token = params.get("paginationToken", [""])[0]
    return prefix, limit, decode_token(token) if token else None


def _vector_json(data: NamespaceData, row: int, *, values: bool, metadata: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": data.ids[row]}
    out["values"] = float32_list(data.vectors[row]) if values and data.dimension else []
    sparse = data.sparse[row]
    if values and sparse is not None:
        out["sparseValues"] = sparse.to_json()
    md = data.metadata[row]
    if metadata and md is not None:
        out["metadata"] = md
    return out


def _query_vector(
    ctx: DataContext, body: dict[str, Any], data: NamespaceData | None
) -> tuple[np.ndarray | None, Sparse | None, bool]:
    """(dense query, sparse query, found). ``found`` is False for a query by an id that does not exist."""
    index = ctx.index
    vector_raw, id_raw, sparse_raw = body.get("vector"), body.get("id"), body.get("sparseVector")
    if vector_raw is not None and id_raw is not None:
        raise bad("Cannot provide both 'id' and 'vector' in a query; provide exactly one")
    sparse = parse_sparse(sparse_raw, "query") if sparse_raw is not None else None
    if sparse is not None and index.metric != "dotproduct":
        raise bad(
            f"Sparse and hybrid queries are only supported for indexes with the dotproduct metric; this index uses "
            f"{index.metric}"
        )
    if id_raw is not None:
        vector_id = validate_id(id_raw)
        stored = data.get(vector_id) if data is not None else None
        if stored is None:
            return None, None, False
        return stored.values, stored.sparse if index.dense_field is None else sparse, True
    if vector_raw is not None:
        if index.dense_field is None:
            if isinstance(vector_raw, list) and vector_raw:
                raise bad("Cannot query a sparse index with a dense vector; use sparseVector")
            dense = None
        else:
            dense = parse_dense(vector_raw, "query")
            if dense.shape[0] == 0 and sparse is not None:
                dense = None
            else:
                if dense.shape[0] != index.dimension:
                    raise bad(
                        f"Query vector dimension {dense.shape[0]} does not match the dimension of the index "
                        f"{index.dimension}"
                    )
        if dense is None and sparse is None:
            raise bad("A sparse index must be queried with sparseVector")
        return dense, sparse, True
    if sparse is not None:
        if index.dense_field is not None:
            raise bad("A query on a dense index requires 'vector' or 'id' (sparseVector alone is not enough)")
        return None, sparse, True
    raise bad("No query provided: provide 'vector', 'id' or 'sparseVector'")


def query(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, sent = namespace_param(body.get("namespace"))
    ctx.admit(key)
    k = parse_top_k(body.get("topK"))
    include_values = bool_param(body, "includeValues")
    include_metadata = bool_param(body, "includeMetadata")
    index = ctx.index
    predicate = indexed_only(index, key, filter_param(body.get("filter")))
    index.catch_up(ctx.lag_seconds)
    data = index.namespaces.get(key)
    dense, sparse, found = _query_vector(ctx, body, data)
    matches: list[dict[str, Any]] = []
    if found and data is not None and len(data):
        rows = data.matching_rows(predicate)
        scores = score_rows(data, rows, index.metric if dense is not None else "dotproduct", dense, sparse)
        best = top_k(rows, scores, k, ascending=index.metric == "euclidean" and dense is not None, ids=data.ids)
        score_values = float32_list(np.asarray([s for _, s in best], dtype=np.float32))
        for (row, _), score in zip(best, score_values, strict=True):
            match = _vector_json(data, row, values=include_values, metadata=include_metadata)
            match["score"] = score
            matches.append(match)
    size = data.record_bytes() if data is not None else 0
    read_units = max(1, math.ceil(size / GIB))
    response = Response.json(
        200,
        {"matches": matches, "namespace": sent, "usage": {"readUnits": read_units}},
        {INDEXED_LSN_HEADER: str(index.indexed_lsn(key))},
    )
    if len(response.body) > MAX_QUERY_RESULT_BYTES:
        raise bad(
            f"Query result size of {len(response.body)} bytes exceeds the limit of {MAX_QUERY_RESULT_BYTES} bytes "
            "(4MB); choose a lower top_k, or set includeValues or includeMetadata to false"
        )
    return response


def fetch(ctx: DataContext, request: Request) -> Response:
    params = request.query
    key, sent = namespace_param(params.get("namespace", [None])[0])
    ids = params.get("ids", [])
    if not ids:
        raise bad("ids must contain at least one id")
    if len(ids) > MAX_IDS_PER_REQUEST:
        raise bad(f"Fetch request contains {len(ids)} ids, which exceeds the limit of {MAX_IDS_PER_REQUEST}")
    for vector_id in ids:
        validate_id(vector_id)
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    data = index.namespaces.get(key)
    vectors: dict[str, Any] = {}
    if data is not None:
        for vector_id in ids:
            row = data.rows.get(vector_id)
            if row is not None:
                vectors[vector_id] = _vector_json(data, row, values=True, metadata=True)
    return Response.json(
        200,
        {"vectors": vectors, "namespace": sent, "usage": {"readUnits": max(1, math.ceil(len(vectors) / 10))}},
    )


def fetch_by_metadata(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, sent = namespace_param(body.get("namespace"))
    if body.get("filter") is None:
        raise bad("Empty filter provided for fetch by metadata request")
    index = ctx.index
    expression = filter_param(body.get("filter"), empty_message="Empty filter provided for fetch by metadata request")
    predicate = indexed_only(index, key, expression)
    limit = _limit(body.get("limit"), default=100, maximum=FETCH_BY_METADATA_LIMIT_MAX)
    token = body.get("paginationToken")
    after = decode_token(token) if isinstance(token, str) and token else None
    index.catch_up(ctx.lag_seconds)
    data = index.namespaces.get(key)
    vectors: dict[str, Any] = {}
    pagination = None
    if data is not None:
        rows = data.matching_rows(predicate).tolist()
        ordered = sorted(rows, key=lambda row: data.ids[row])
        if after is not None:
            ordered = [row for row in ordered if data.ids[row] > after]
        page = ordered[:limit]
        for row in page:
            vectors[data.ids[row]] = _vector_json(data, row, values=True, metadata=True)
        if len(ordered) > limit:
            pagination = {"next": encode_token(data.ids[page[-1]])}
    payload: dict[str, Any] = {
        "vectors": vectors,
        "namespace": sent,
        "usage": {"readUnits": max(1, math.ceil(len(vectors) / 10))},
    }
    if pagination:
        payload["pagination"] = pagination
    return Response.json(200, payload)


def describe_index_stats(ctx: DataContext, request: Request) -> Response:
    body = request.json_object(required=False) if request.method == "POST" else {}
    if body.get("filter"):
        raise bad("describe_index_stats does not support filtering on serverless indexes")
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    namespaces = {name: {"vectorCount": len(data)} for name, data in sorted(index.namespaces.items())}
    payload: dict[str, Any] = {
        "namespaces": namespaces,
        "indexFullness": 0.0,
        "totalVectorCount": sum(len(d) for d in index.namespaces.values()),
        "metric": index.metric,
        "vectorType": index.vector_type,
    }
    if index.dense_field is not None:
        payload["dimension"] = index.dimension
    return Response.json(200, payload)


def list_vectors(ctx: DataContext, request: Request) -> Response:
    params = request.query
    key, sent = namespace_param(params.get("namespace", [None])[0])
    prefix, limit, after = page_params(params)
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    data = index.namespaces.get(key)
    ids = sorted(i for i in (data.ids if data is not None else []) if i.startswith(prefix))
    if after is not None:
        ids = [i for i in ids if i > after]
    page = ids[:limit]
    payload: dict[str, Any] = {
        "vectors": [{"id": i} for i in page],
        "namespace": sent,
        "usage": {"readUnits": 1},
    }
    if len(ids) > limit:
        payload["pagination"] = {"next": encode_token(page[-1])}
    return Response.json(200, payload)
