"""Control plane (API 2026-07): create, describe, list, configure and delete indexes. snake_case JSON.

The handlers come first; below them, the validation of the request bodies and the index model.
"""

from __future__ import annotations

import re
import time
from typing import Any

from pinecone_emulator.app import Emulator
from pinecone_emulator.records import MAX_DIMENSION
from pinecone_emulator.store import IndexState
from pinecone_emulator.wire import ApiError, Request, Response

INDEX_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$")
TAG_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
METRICS = ("cosine", "euclidean", "dotproduct")
CLOUDS = ("aws", "gcp", "azure")
FIELD_TYPES = ("dense_vector", "sparse_vector", "semantic_text", "string", "string_list", "boolean", "integer", "float")
CREATE_KEYS = {
    "name",
    "schema",
    "deployment",
    "read_capacity",
    "deletion_protection",
    "tags",
    "source_collection",
    "source_backup_id",
    "cmek_id",
}
CONFIGURE_KEYS = {"deletion_protection", "tags", "read_capacity", "deployment", "schema", "embed"}


def list_indexes(emulator: Emulator, request: Request) -> Response:
    with emulator.lock:
        states = list(emulator.indexes.values())
    return Response.json(200, {"indexes": [index_model(s, emulator.index_host(s.name)) for s in states]})


def create_index(emulator: Emulator, request: Request) -> Response:
    state = new_index(request.json_object())
    state.ready_at = time.monotonic() + emulator.faults.index_ready_after_ms / 1000.0
    state.clock = emulator.indexing_clock
    with emulator.lock:
        if state.name in emulator.indexes:
            raise ApiError(409, f"Resource {state.name} already exists")
        emulator.indexes[state.name] = state
    emulator.changed()
    return Response.json(201, index_model(state, emulator.index_host(state.name)))


def describe_index(emulator: Emulator, request: Request, *, index: str) -> Response:
    state = emulator.get_index(index)
    return Response.json(200, index_model(state, emulator.index_host(index)))


def configure_index(emulator: Emulator, request: Request, *, index: str) -> Response:
    state = emulator.get_index(index)
    body = request.json_object()
    with state.lock:
        configure(state, body)
        state.version += 1
    emulator.changed()
    return Response.json(200, index_model(state, emulator.index_host(index)))


def delete_index(emulator: Emulator, request: Request, *, index: str) -> Response:
    state = emulator.get_index(index)
    if state.deletion_protection == "enabled":
        raise ApiError(
            403,
            f"Deletion protection is enabled for this index. Disable deletion protection before retrying: {index}",
        )
    with emulator.lock:
        emulator.indexes.pop(index, None)
        emulator.deleted_version += 1
    emulator.changed()
    return Response(status=202, body=b"", content_type=None)


def unprocessable(message: str) -> ApiError:
    return ApiError(422, f"Failed to deserialize the JSON body into the target type: {message}")


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise unprocessable("missing field `name`")
    if not INDEX_NAME.match(name):
        raise _bad(
            "Resource name must consist of lower case alphanumeric characters or '-', start and end with an "
            "alphanumeric character, and be at most 45 characters long"
        )
    return name


def _normalize_field(name: str, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise unprocessable(f"schema.fields.{name}: expected an object")
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        raise unprocessable(f"schema.fields.{name}: unknown variant `{kind}`, expected one of {', '.join(FIELD_TYPES)}")
    field = {k: v for k, v in raw.items() if v is not None}
    if kind == "dense_vector":
        dimension, metric = raw.get("dimension"), raw.get("metric")
        if not isinstance(dimension, int) or isinstance(dimension, bool):
            raise unprocessable(f"schema.fields.{name}: missing field `dimension`")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise _bad(f"Dimension must be between 1 and {MAX_DIMENSION}, got {dimension}")
        if not isinstance(metric, str) or metric.lower() not in METRICS:
            raise _bad(f"Invalid metric {metric!r} for field '{name}': expected one of {', '.join(METRICS)}")
        field["metric"] = metric.lower()
    if kind == "sparse_vector":
        metric = raw.get("metric")
        if metric is not None and str(metric).lower() != "dotproduct":
            raise _bad(f"Sparse vector field '{name}' only supports the dotproduct metric")
    if name == "_values" and kind != "dense_vector":
        raise _bad("The reserved field '_values' must have type 'dense_vector'")
    if name == "_sparse_values" and kind != "sparse_vector":
        raise _bad("The reserved field '_sparse_values' must have type 'sparse_vector'")
    return field


def validate_schema(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict):
        raise unprocessable("missing field `schema`")
    fields = {name: _normalize_field(name, value) for name, value in raw["fields"].items()}
    if not fields:
        raise _bad("An index schema must define at least one field")
    dense = fields.get("_values")
    if dense is not None and "_sparse_values" in fields and dense["metric"] != "dotproduct":
        raise _bad("An index with both dense and sparse vectors must use the dotproduct metric")
    return {"fields": fields}


def validate_deployment(raw: object) -> dict[str, Any]:
    if raw is None:
        return {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
    if not isinstance(raw, dict):
        raise unprocessable("deployment: expected an object")
    kind = raw.get("deployment_type")
    if kind == "managed":
        cloud, region = raw.get("cloud"), raw.get("region")
        if not isinstance(cloud, str) or not isinstance(region, str):
            raise unprocessable("deployment: missing field `cloud` or `region`")
        if cloud not in CLOUDS:
            raise ApiError(404, f"Unknown cloud '{cloud}'")
        return {k: v for k, v in raw.items() if v is not None}
    if kind == "pod":
        for key in ("environment", "pod_type"):
            if not isinstance(raw.get(key), str):
                raise unprocessable(f"deployment: missing field `{key}`")
        return {"replicas": 1, "shards": 1, **{k: v for k, v in raw.items() if v is not None}}
    if kind == "byoc":
        if not isinstance(raw.get("environment"), str):
            raise unprocessable("deployment: missing field `environment`")
        return {k: v for k, v in raw.items() if v is not None}
    raise unprocessable(f"deployment: unknown variant `{kind}`, expected one of `managed`, `pod`, `byoc`")


def validate_deletion_protection(raw: object) -> str:
    if raw not in ("enabled", "disabled"):
        raise _bad(f"deletion_protection must be 'enabled' or 'disabled', got {raw!r}")
    return str(raw)


def validate_tags(raw: object, *, allow_empty_values: bool) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _bad("tags must be an object of string keys and values")
    if len(raw) > 20:
        raise _bad(f"An index can have at most 20 tags, got {len(raw)}")
    for key, value in raw.items():
        if not TAG_KEY.match(key):
            raise _bad(f"Invalid tag key {key!r}: 1-80 characters of letters, digits, '_' or '-'")
        if not isinstance(value, str) or len(value) > 120 or not value.isascii():
            raise _bad(f"Invalid value for tag {key!r}: at most 120 printable ASCII characters")
        if not value and not allow_empty_values:
            raise _bad(f"Invalid value for tag {key!r}: must not be empty")
    return dict(raw)


def validate_read_capacity(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("mode") not in ("OnDemand", "Dedicated"):
        raise unprocessable("read_capacity: unknown variant, expected one of `OnDemand`, `Dedicated`")
    if raw["mode"] == "OnDemand":
        return {"mode": "OnDemand"}
    dedicated = raw.get("dedicated")
    if not isinstance(dedicated, dict) or not isinstance(dedicated.get("node_type"), str):
        raise unprocessable("read_capacity: missing field `dedicated`")
    return {"mode": "Dedicated", "dedicated": {"scaling": "Manual", **dedicated}}


def new_index(body: dict[str, Any]) -> IndexState:
    unknown = set(body) - CREATE_KEYS
    if unknown:
        raise unprocessable(f"unknown field `{sorted(unknown)[0]}`")
    name = validate_name(body.get("name"))
    state = IndexState(
        name=name,
        schema=validate_schema(body.get("schema")),
        deployment=validate_deployment(body.get("deployment")),
    )
    if body.get("deletion_protection") is not None:
        state.deletion_protection = validate_deletion_protection(body["deletion_protection"])
    if body.get("tags") is not None:
        state.tags = validate_tags(body["tags"], allow_empty_values=False) or None
    if body.get("read_capacity") is not None:
        state.read_capacity = validate_read_capacity(body["read_capacity"])
    for key in ("source_collection", "source_backup_id", "cmek_id"):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise unprocessable(f"{key}: expected a string")
            setattr(state, key, body[key])
    return state


def configure(state: IndexState, body: dict[str, Any]) -> None:
    unknown = set(body) - CONFIGURE_KEYS
    if unknown:
        raise unprocessable(f"unknown field `{sorted(unknown)[0]}`")
    if body.get("embed") is not None:
        raise _bad("This index has no integrated embedding to configure")
    protection = state.deletion_protection
    tags = dict(state.tags or {})
    read_capacity = state.read_capacity
    deployment = dict(state.deployment)
    schema = {"fields": dict(state.schema["fields"])}
    if body.get("deletion_protection") is not None:
        protection = validate_deletion_protection(body["deletion_protection"])
    if body.get("tags") is not None:
        for key, value in validate_tags(body["tags"], allow_empty_values=True).items():
            if value == "":
                tags.pop(key, None)
            else:
                tags[key] = value
        if len(tags) > 20:
            raise _bad(f"An index can have at most 20 tags, got {len(tags)}")
    if body.get("read_capacity") is not None:
        read_capacity = validate_read_capacity(body["read_capacity"])
    if body.get("deployment") is not None:
        change = body["deployment"]
        if not isinstance(change, dict):
            raise unprocessable("deployment: expected an object")
        if deployment["deployment_type"] != "pod" and ({"replicas", "pod_type"} & set(change)):
            raise _bad("replicas and pod_type can only be configured on pod-based indexes")
        deployment.update({k: v for k, v in change.items() if v is not None and k != "deployment_type"})
    if body.get("schema") is not None:
        added = validate_schema(body["schema"])["fields"]
        for name, field in added.items():
            if name in ("_values", "_sparse_values") and schema["fields"].get(name) != field:
                raise _bad(f"The vector field '{name}' cannot be changed after the index is created")
            schema["fields"][name] = field
    state.deletion_protection = protection
    state.tags = tags or None
    state.read_capacity = read_capacity
    state.deployment = deployment
    state.schema = schema


def index_model(state: IndexState, host: str) -> dict[str, Any]:
    read_capacity: dict[str, Any] = dict(state.read_capacity or {"mode": "OnDemand"})
    status: dict[str, Any] = {"state": "Ready"}
    if read_capacity["mode"] == "Dedicated":
        manual = read_capacity["dedicated"].get("manual") or {}
        status.update({"current_shards": manual.get("shards", 1), "current_replicas": manual.get("replicas", 1)})
    read_capacity["status"] = status
    return {
        "name": state.name,
        "host": host,
        "status": {"ready": state.status == "Ready", "state": state.status},
        "schema": state.schema,
        "deployment": state.deployment,
        "deletion_protection": state.deletion_protection,
        "read_capacity": read_capacity,
        "tags": state.tags,
        "private_host": None,
        "source_collection": state.source_collection,
        "source_backup_id": state.source_backup_id,
        "cmek_id": state.cmek_id,
    }
