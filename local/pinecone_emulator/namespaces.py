"""The namespaces of one index (snake_case JSON, unlike the vector operations): create, describe, list, delete.

Deleting a namespace is a write, like a ``deleteAll`` (writes.py): it gets an LSN and takes effect after
the indexing lag. Creating one is not (Pinecone numbers upserts, updates and deletes): it takes effect at
once, and is refused (409) while a committed deletion of the same name waits for the lag."""

from __future__ import annotations

from typing import Any

from pinecone_emulator.data_plane import DataContext, encode_token, lsn_headers, namespace_param, page_params
from pinecone_emulator.records import bad
from pinecone_emulator.store import DEFAULT_NAMESPACE, IndexState
from pinecone_emulator.wire import ApiError, Request, Response

NAMESPACE_SCHEMA_MAX_FIELDS = 50


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
    namespace_param(name)
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


def describe_namespace(ctx: DataContext, request: Request, *, namespace: str) -> Response:
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    name = _namespace_path_name(namespace)
    if name not in index.namespaces:
        raise ApiError(404, "Namespace not found")
    return Response.json(200, _namespace_description(index, name))


def delete_namespace(ctx: DataContext, request: Request, *, namespace: str) -> Response:
    """A write like a ``deleteAll``: it takes the namespace's next LSN and empties it after the indexing lag.

    The namespace's LSN counter is kept, so writes to a namespace of the same name carry on from it."""
    index = ctx.index
    index.catch_up(ctx.lag_seconds)
    name = _namespace_path_name(namespace)
    if name not in index.known_namespaces:  # its deletion committed already counts as gone
        raise ApiError(404, "Namespace not found")
    index.known_namespaces.discard(name)

    def apply() -> None:
        index.namespaces.pop(name, None)
        index.namespace_schemas.pop(name, None)

    lsn = index.write(name, apply, ctx.lag_seconds)
    return Response.json(202, {}, lsn_headers(lsn))


def list_namespaces(ctx: DataContext, request: Request) -> Response:
    prefix, limit, after = page_params(request.query)
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
            "pagination": {"next": encode_token(page[-1])} if len(names) > limit else None,
            "total_count": total,
        },
    )
