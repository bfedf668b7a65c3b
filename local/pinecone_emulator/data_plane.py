"""The data plane of one index: vector operations (camelCase JSON) and namespaces (snake_case JSON)."""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from pinecone_emulator.filters import FilterError, Predicate, compile_filter
from pinecone_emulator.records import (
    MAX_IDS_PER_REQUEST,
    MAX_UPSERT_BYTES,
    MAX_VECTORS_PER_UPSERT,
    MIN_NONZERO,
    Record,
    Sparse,
    bad,
    check_dense_nonzero,
    check_dimension,
    float32_list,
    parse_dense,
    parse_metadata,
    parse_sparse,
    parse_top_k,
    validate_id,
)
from pinecone_emulator.store import DEFAULT_NAMESPACE, IndexState, NamespaceData, namespace_key, score_rows, top_k
from pinecone_emulator.wire import ApiError, Request, Response

LIST_LIMIT_MAX = 100
FETCH_BY_METADATA_LIMIT_MAX = 10_000
NAMESPACE_NAME_MAX = 512
NAMESPACE_SCHEMA_MAX_FIELDS = 50
GIB = 1024**3
# Pinecone's query result limit, "4MB" (docs.pinecone.io/guides/search/semantic-search, "Query limits": a
# query over it fails; lower top_k or leave out values or metadata). Taken as 4 MiB, like the upsert
# limit's "2MB", and measured on the response the emulator sends (its JSON): Pinecone does not say
# how it measures, nor what it answers; the answer here is its data plane's 400 INVALID_ARGUMENT.
MAX_QUERY_RESULT_BYTES = 4 * 1024 * 1024


# How the request being carried out reached the store: "direct", "then-fault" (applied, then answered with
# an error or a dropped connection) or "held" (applied later on a timer); kept in each index's journal.
APPLIED_AS: ContextVar[str] = ContextVar("applied_as", default="direct")


@dataclass
class DataContext:
    index: IndexState
    lag_seconds: float
    admit: Callable[[str], None]  # raises the 429 when the namespace is over its rate limit


def _indexed_only(index: IndexState, key: str, predicate: Predicate | None) -> Predicate | None:
    """With a namespace schema Pinecone indexes only the fields it lists as filterable ("when schema is present,
    only fields which are present in the fields object with filterable: true are indexed", db_data 2026-07
    MetadataSchema); a filter cannot see the others, so here they are absent from what a filter evaluates."""
    schema = index.namespace_schemas.get(key)
    if predicate is None or schema is None:
        return predicate
    indexed = frozenset(schema.get("fields", {}))
    return lambda metadata: predicate({k: v for k, v in metadata.items() if k in indexed})


def _lsn_headers(lsn: int) -> dict[str, str]:
    return {"x-pinecone-request-lsn": str(lsn)}


def _namespace_param(raw: object) -> tuple[str, str]:
    """(storage key, name as the client sent it)."""
    if raw is None:
        return DEFAULT_NAMESPACE, ""
    if not isinstance(raw, str):
        raise bad("namespace must be a string")
    if len(raw) > NAMESPACE_NAME_MAX or not raw.isascii() or "\x00" in raw:
        raise bad(f"Namespace name must be ASCII, without NUL, and at most {NAMESPACE_NAME_MAX} characters")
    return namespace_key(raw), raw


def _compile(expression: object, *, empty_message: str | None = None) -> Predicate | None:
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


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise bad(f"{key} must be a boolean")
    return value


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


def _dense_block(ctx: DataContext, vectors: list[Any]) -> np.ndarray | None:
    """Every record's dense values as one float32 matrix, when all of them are valid; else None.

    One numpy conversion for the whole request instead of one per record (the emulator's upsert
    was a third numpy per-record overhead). Anything unusual (a missing or ragged array, a wrong
    dimension, a non-finite or all-zero vector) returns None, and the record-by-record path finds
    the record at fault and says what Pinecone says.
    """
    index = ctx.index
    if index.dense_field is None:
        return None
    try:
        rows = [raw["values"] for raw in vectors]
        if not all(type(row) is list and len(row) == index.dimension for row in rows):
            return None
        block = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        return None
    if block.ndim != 2 or not np.isfinite(block).all() or not (np.abs(block) >= MIN_NONZERO).any(axis=1).all():
        return None
    return block.astype(np.float32)


def _parse_record(ctx: DataContext, raw: object, dense: np.ndarray | None = None) -> Record:
    """One record of an upsert; ``dense`` is its values already checked by :func:`_dense_block`."""
    index = ctx.index
    if not isinstance(raw, dict):
        raise bad("Each vector must be an object with an 'id'")
    vector_id = validate_id(raw.get("id"))
    values_raw = raw.get("values", [])
    sparse_raw = raw.get("sparseValues")
    sparse = parse_sparse(sparse_raw, vector_id) if sparse_raw is not None else None
    values: np.ndarray | None = None
    if index.dense_field is not None and dense is not None:
        values = dense
    elif index.dense_field is not None:
        values = parse_dense(values_raw, vector_id)
        check_dimension(values, index.dimension)
        check_dense_nonzero(values, vector_id)
        if sparse is not None and sparse.indices.size and index.metric != "dotproduct":
            raise bad(
                f"Sparse values are only supported for indexes with the dotproduct metric; this index uses "
                f"{index.metric}"
            )
    else:
        if isinstance(values_raw, list) and values_raw:
            raise bad(f"Vector ID '{vector_id}' has dense values, but the index is sparse; send sparseValues only")
        if sparse is None or sparse.indices.size == 0:
            raise bad(f"Sparse vector for ID '{vector_id}' must contain at least one value")
        if not np.any(np.abs(sparse.values) >= 1e-8):
            raise bad(
                f"Sparse vectors must contain at least one non-zero value. Vector ID '{vector_id}' contains only zeros"
            )
    metadata_raw = raw.get("metadata")
    metadata = parse_metadata(metadata_raw) if metadata_raw is not None else None
    unknown = set(raw) - {"id", "values", "sparseValues", "metadata"}
    if unknown:
        raise bad(f"Unknown field(s) in vector '{vector_id}': {', '.join(sorted(unknown))}")
    return Record(id=vector_id, values=values, sparse=sparse, metadata=metadata or None)


def upsert(ctx: DataContext, request: Request) -> Response:
    size = request.wire_size if request.wire_size is not None else len(request.body)
    if size > MAX_UPSERT_BYTES:
        size_mb = math.ceil(size / (1024 * 1024))
        raise ApiError(413, f"Request size {size_mb}MB exceeds the maximum supported size of 2MB")
    body = request.json_object()
    key, _ = _namespace_param(body.get("namespace"))
    ctx.admit(key)
    vectors = body.get("vectors")
    if not isinstance(vectors, list) or not vectors:
        raise bad("vectors must be a non-empty array")
    if len(vectors) > MAX_VECTORS_PER_UPSERT:
        raise bad(
            f"Upsert request contains {len(vectors)} vectors, which exceeds the limit of "
            f"{MAX_VECTORS_PER_UPSERT} vectors per request"
        )
    block = _dense_block(ctx, vectors)
    if block is None:
        records = [_parse_record(ctx, raw) for raw in vectors]
    else:
        records = [_parse_record(ctx, raw, row) for raw, row in zip(vectors, block, strict=True)]
    index = ctx.index

    how = APPLIED_AS.get()

    def apply() -> None:
        data = index.namespace(key, create=True)
        assert data is not None
        data.put_many(records)
        now = time.monotonic()
        for record in records:
            version = (record.metadata or {}).get("_relay_version")
            index.journal.append((now, "upsert", key, record.id, version if isinstance(version, str) else None, how))

    index.known_namespaces.add(key)
    lsn = index.write(apply, ctx.lag_seconds)
    return Response.json(200, {"upsertedCount": len(records)}, _lsn_headers(lsn))


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
    key, sent = _namespace_param(body.get("namespace"))
    ctx.admit(key)
    k = parse_top_k(body.get("topK"))
    include_values = _bool(body, "includeValues")
    include_metadata = _bool(body, "includeMetadata")
    index = ctx.index
    predicate = _indexed_only(index, key, _compile(body.get("filter")))
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
        {"x-pinecone-max-indexed-lsn": str(index.indexed_lsn)},
    )
    if len(response.body) > MAX_QUERY_RESULT_BYTES:
        raise bad(
            f"Query result size of {len(response.body)} bytes exceeds the limit of {MAX_QUERY_RESULT_BYTES} bytes "
            "(4MB); choose a lower top_k, or set includeValues or includeMetadata to false"
        )
    return response


def fetch(ctx: DataContext, request: Request) -> Response:
    params = request.query
    key, sent = _namespace_param(params.get("namespace", [None])[0])
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


def _encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
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


def fetch_by_metadata(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, sent = _namespace_param(body.get("namespace"))
    if body.get("filter") is None:
        raise bad("Empty filter provided for fetch by metadata request")
    index = ctx.index
    predicate = _indexed_only(
        index, key, _compile(body.get("filter"), empty_message="Empty filter provided for fetch by metadata request")
    )
    limit = _limit(body.get("limit"), default=100, maximum=FETCH_BY_METADATA_LIMIT_MAX)
    token = body.get("paginationToken")
    after = _decode_token(token) if isinstance(token, str) and token else None
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
            pagination = {"next": _encode_token(data.ids[page[-1]])}
    payload: dict[str, Any] = {
        "vectors": vectors,
        "namespace": sent,
        "usage": {"readUnits": max(1, math.ceil(len(vectors) / 10))},
    }
    if pagination:
        payload["pagination"] = pagination
    return Response.json(200, payload)


def _require_namespace(index: IndexState, key: str) -> None:
    if key not in index.known_namespaces:
        raise ApiError(404, "Namespace not found")


def delete(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, _ = _namespace_param(body.get("namespace"))
    ctx.admit(key)
    ids, delete_all, filter_raw = body.get("ids"), _bool(body, "deleteAll"), body.get("filter")
    selectors = sum(1 for present in (ids is not None, delete_all, filter_raw is not None) if present)
    if selectors != 1:
        raise bad("Exactly one of 'ids', 'deleteAll' or 'filter' must be provided")
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    apply: Callable[[], None]
    if ids is not None:
        if not isinstance(ids, list) or not ids:
            raise bad("ids must be a non-empty array")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise bad(f"Delete request contains {len(ids)} ids, which exceeds the limit of {MAX_IDS_PER_REQUEST}")
        id_list = [validate_id(i) for i in ids]
        _require_namespace(index, key)

        how = APPLIED_AS.get()

        def apply() -> None:
            data = index.namespaces.get(key)
            if data is not None:
                for vector_id in id_list:
                    data.remove(vector_id)
            now = time.monotonic()
            for vector_id in id_list:
                index.journal.append((now, "delete", key, vector_id, None, how))

    elif delete_all:
        _require_namespace(index, key)
        index.known_namespaces.discard(key)

        def apply() -> None:
            index.namespaces.pop(key, None)

    else:
        predicate = _indexed_only(
            index, key, _compile(filter_raw, empty_message="Delete with empty metadata filter is not allowed")
        )
        _require_namespace(index, key)

        def apply() -> None:
            data = index.namespaces.get(key)
            if data is not None:
                for row in sorted(data.matching_rows(predicate).tolist(), reverse=True):
                    data.remove(data.ids[row])

    lsn = index.write(apply, ctx.lag_seconds)
    return Response.json(200, {}, _lsn_headers(lsn))


def update(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, _ = _namespace_param(body.get("namespace"))
    ctx.admit(key)
    index = ctx.index
    id_raw, filter_raw = body.get("id"), body.get("filter")
    values_raw, sparse_raw, set_raw = body.get("values"), body.get("sparseValues"), body.get("setMetadata")
    dry_run = _bool(body, "dryRun")
    if (id_raw is None) == (filter_raw is None):
        raise bad("Exactly one of 'id' or 'filter' must be provided")
    set_metadata = parse_metadata(set_raw) if set_raw is not None else None
    index.catch_up(ctx.lag_seconds)
    if id_raw is not None:
        vector_id = validate_id(id_raw)
        values = None
        if values_raw is not None:
            if index.dense_field is None:
                raise bad("Cannot update dense values on a sparse index")
            values = parse_dense(values_raw, vector_id)
            check_dimension(values, index.dimension)
            check_dense_nonzero(values, vector_id)
        sparse = parse_sparse(sparse_raw, vector_id) if sparse_raw is not None else None
        if sparse is not None and index.dense_field is not None and index.metric != "dotproduct":
            raise bad(
                f"Sparse values are only supported for indexes with the dotproduct metric; this index uses "
                f"{index.metric}"
            )
        data_now = index.namespaces.get(key)
        current = data_now.get(vector_id) if data_now is not None else None
        if current is not None and set_metadata:
            parse_metadata({**(current.metadata or {}), **set_metadata})  # re-check the 40 KB limit after the merge

        def apply() -> None:
            data = index.namespaces.get(key)
            stored = data.get(vector_id) if data is not None else None
            if data is None or stored is None:
                return
            if values is not None:
                stored.values = values
            if sparse is not None:
                stored.sparse = sparse
            if set_metadata:
                stored.metadata = {**(stored.metadata or {}), **set_metadata}
            data.put(stored)

        lsn = index.write(apply, ctx.lag_seconds)
        return Response.json(200, {}, _lsn_headers(lsn))

    if values_raw is not None or sparse_raw is not None:
        raise bad("An update by filter can only set metadata; 'values' and 'sparseValues' need an 'id'")
    predicate = _indexed_only(
        index, key, _compile(filter_raw, empty_message="Update with empty metadata filter is not allowed")
    )
    if not set_metadata:
        raise bad("An update by filter requires 'setMetadata'")
    data_now = index.namespaces.get(key)
    matched = len(data_now.matching_rows(predicate)) if data_now is not None else 0
    if dry_run:
        return Response.json(200, {"matchedRecords": matched})

    def apply_filter() -> None:
        data = index.namespaces.get(key)
        if data is None:
            return
        for row in data.matching_rows(predicate).tolist():
            data.metadata[row] = {**(data.metadata[row] or {}), **set_metadata}

    lsn = index.write(apply_filter, ctx.lag_seconds)
    return Response.json(200, {"matchedRecords": matched}, _lsn_headers(lsn))


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


def _page_params(params: dict[str, list[str]]) -> tuple[str, int, Any]:
    """``prefix``, ``limit`` and the decoded ``paginationToken`` of a list request."""
    prefix = params.get("prefix", [""])[0]
    limit = _limit(params.get("limit", [None])[0], default=LIST_LIMIT_MAX, maximum=LIST_LIMIT_MAX)
    token = params.get("paginationToken", [""])[0]
    return prefix, limit, _decode_token(token) if token else None


def list_vectors(ctx: DataContext, request: Request) -> Response:
    params = request.query
    key, sent = _namespace_param(params.get("namespace", [None])[0])
    prefix, limit, after = _page_params(params)
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
        payload["pagination"] = {"next": _encode_token(page[-1])}
    return Response.json(200, payload)


def _namespace_description(index: IndexState, name: str) -> dict[str, Any]:
    data = index.namespaces.get(name)
    count = len(data) if data is not None else 0
    out: dict[str, Any] = {
        "name": name,
        "record_count": str(count),
        "size_bytes": str(data.record_bytes() if data is not None else 0),
    }
    schema = index.namespace_schemas.get(name)
    if schema is not None:
        out["schema"] = schema
        out["indexed_fields"] = {"fields": sorted(schema.get("fields", {}))}
    return out


def _namespace_path_name(raw: str) -> str:
    if not raw:
        raise bad("Namespace name must not be empty")
    return raw


def create_namespace(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad("name must be a non-empty string")
    if name == DEFAULT_NAMESPACE:
        raise bad("The namespace name '__default__' is reserved")
    _namespace_param(name)
    schema = body.get("schema")
    if schema is not None:
        fields = schema.get("fields") if isinstance(schema, dict) else None
        if not isinstance(fields, dict) or not all(isinstance(v, dict) for v in fields.values()):
            raise bad("schema must be an object with a 'fields' object")
        if len(fields) > NAMESPACE_SCHEMA_MAX_FIELDS:
            raise bad(f"A namespace schema can have at most {NAMESPACE_SCHEMA_MAX_FIELDS} fields")
        schema = {"fields": {f: {"filterable": bool(cfg.get("filterable", False))} for f, cfg in fields.items()}}
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    if name in index.known_namespaces or name in index.namespaces:
        raise ApiError(409, f"Namespace {name} already exists")
    index.namespace(name, create=True)
    index.known_namespaces.add(name)
    if schema is not None:
        index.namespace_schemas[name] = schema
    index.version += 1
    return Response.json(201, _namespace_description(index, name))


def describe_namespace(ctx: DataContext, request: Request, name: str) -> Response:
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    name = _namespace_path_name(name)
    if name not in index.namespaces:
        raise ApiError(404, "Namespace not found")
    return Response.json(200, _namespace_description(index, name))


def delete_namespace(ctx: DataContext, request: Request, name: str) -> Response:
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    name = _namespace_path_name(name)
    if name not in index.namespaces and name not in index.known_namespaces:
        raise ApiError(404, "Namespace not found")
    index.namespaces.pop(name, None)
    index.namespace_schemas.pop(name, None)
    index.known_namespaces.discard(name)
    index.version += 1
    return Response.json(202, {})


def list_namespaces(ctx: DataContext, request: Request) -> Response:
    prefix, limit, after = _page_params(request.query)
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    names = sorted(n for n in index.namespaces if n.startswith(prefix))
    total = len(names)
    if after is not None:
        names = [n for n in names if n > after]
    page = names[:limit]
    return Response.json(
        200,
        {
            "namespaces": [_namespace_description(index, n) for n in page],
            "pagination": {"next": _encode_token(page[-1])} if len(names) > limit else None,
            "total_count": total,
        },
    )
