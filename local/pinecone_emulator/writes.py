"""The data plane's writes: upsert, delete and update, each committed through :meth:`IndexState.write`.

A write gets the next log sequence number of its namespace (the ``x-pinecone-request-lsn`` header;
namespaces.py's namespace delete too), becomes readable after the indexing lag, and lands in the
index's journal (upserts and deletes by id) with how it was carried out
(:data:`~pinecone_emulator.store.APPLIED_AS`). A dry-run update writes nothing and gets no LSN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from pinecone_emulator.data_plane import (
    DataContext,
    bool_param,
    filter_param,
    indexed_only,
    lsn_headers,
    namespace_param,
)
from pinecone_emulator.records import (
    MAX_IDS_PER_REQUEST,
    MAX_UPSERT_BYTES,
    MAX_VECTORS_PER_UPSERT,
    bad,
    check_dense_nonzero,
    check_dimension,
    dense_block,
    parse_dense,
    parse_metadata,
    parse_record,
    parse_sparse,
    validate_id,
)
from pinecone_emulator.store import APPLIED_AS, Applied, IndexState
from pinecone_emulator.wire import ApiError, Request, Response


def upsert(ctx: DataContext, request: Request) -> Response:
    size = request.wire_size if request.wire_size is not None else len(request.body)
    if size > MAX_UPSERT_BYTES:
        size_mb = math.ceil(size / (1024 * 1024))
        raise ApiError(413, f"Request size {size_mb}MB exceeds the maximum supported size of 2MB")
    body = request.json_object()
    key, _ = namespace_param(body.get("namespace"))
    ctx.admit(key)
    vectors = body.get("vectors")
    if not isinstance(vectors, list) or not vectors:
        raise bad("vectors must be a non-empty array")
    if len(vectors) > MAX_VECTORS_PER_UPSERT:
        raise bad(
            f"Upsert request contains {len(vectors)} vectors, which exceeds the limit of "
            f"{MAX_VECTORS_PER_UPSERT} vectors per request"
        )
    index = ctx.index
    dimension, metric = (index.dimension if index.dense_field is not None else None), index.metric
    block = dense_block(vectors, dimension)
    if block is None:
        records = [parse_record(raw, dimension=dimension, metric=metric) for raw in vectors]
    else:
        rows = zip(vectors, block, strict=True)
        records = [parse_record(raw, dimension=dimension, metric=metric, dense=row) for raw, row in rows]

    how = APPLIED_AS.get()

    def apply() -> None:
        data = index.namespace(key, create=True)
        assert data is not None
        data.put_many(records)
        now = time.monotonic()
        index.journal.extend(Applied(now, "upsert", key, record.id, record.metadata, how) for record in records)

    index.known_namespaces.add(key)
    lsn = index.write(key, apply, ctx.lag_seconds)
    return Response.json(200, {"upsertedCount": len(records)}, lsn_headers(lsn))


def _require_namespace(index: IndexState, key: str) -> None:
    if key not in index.known_namespaces:
        raise ApiError(404, "Namespace not found")


def delete(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, _ = namespace_param(body.get("namespace"))
    ctx.admit(key)
    ids, delete_all, filter_raw = body.get("ids"), bool_param(body, "deleteAll"), body.get("filter")
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
            index.journal.extend(Applied(now, "delete", key, vector_id, None, how) for vector_id in id_list)

    elif delete_all:
        _require_namespace(index, key)
        index.known_namespaces.discard(key)

        def apply() -> None:
            index.namespaces.pop(key, None)

    else:
        predicate = indexed_only(
            index, key, filter_param(filter_raw, empty_message="Delete with empty metadata filter is not allowed")
        )
        _require_namespace(index, key)

        def apply() -> None:
            data = index.namespaces.get(key)
            if data is not None:
                for row in sorted(data.matching_rows(predicate).tolist(), reverse=True):
                    data.remove(data.ids[row])

    lsn = index.write(key, apply, ctx.lag_seconds)
    return Response.json(200, {}, lsn_headers(lsn))


def update(ctx: DataContext, request: Request) -> Response:
    body = request.json_object()
    key, _ = namespace_param(body.get("namespace"))
    ctx.admit(key)
    index = ctx.index
    id_raw, filter_raw = body.get("id"), body.get("filter")
    values_raw, sparse_raw, set_raw = body.get("values"), body.get("sparseValues"), body.get("setMetadata")
    dry_run = bool_param(body, "dryRun")
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

        lsn = index.write(key, apply, ctx.lag_seconds)
        return Response.json(200, {}, lsn_headers(lsn))

    if values_raw is not None or sparse_raw is not None:
        raise bad("An update by filter can only set metadata; 'values' and 'sparseValues' need an 'id'")
    predicate = indexed_only(
        index, key, filter_param(filter_raw, empty_message="Update with empty metadata filter is not allowed")
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

    lsn = index.write(key, apply_filter, ctx.lag_seconds)
    return Response.json(200, {"matchedRecords": matched}, lsn_headers(lsn))
