"""The routing table: which handler answers which method and path, as which operation; and the front door.

As moto's ``urls.py`` beside its ``responses.py``: each row names a handler of one surface and says
which surface answers (the shape of its errors, wire.py), the operation the request counts as
(counters, fault rules, key roles), and whether it needs a key; a row's ``{index}`` is the index
the request concerns (index-scoped fault rules). One port serves them all:

* ``/indexes``, ``/indexes/{index}``          control plane, ``Api-Key``
* ``/data/{index}/...``                       that index's data plane, ``Api-Key`` (on the index's own
                                              host, server.py, its paths without this prefix)
* ``/oauth/token``                            OAuth client-credentials token
* ``/admin/...``                              Admin API, ``Authorization: Bearer``
* ``/_emulator/...``                          test control: faults, counters, reset, state

A path is split into segments, each percent-decoded, one trailing slash dropped; ``{name}`` matches
one segment and passes it to the handler as a keyword argument, a final ``**`` any number of them
(as ``rest``); the first row that matches answers. :func:`handle` is the front door: the HTTP server
(server.py) and the gRPC front end (grpc_server.py) send every request to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pinecone_emulator import admin_api, control_plane, control_surface, data_plane, namespaces, writes
from pinecone_emulator.app import Emulator, Route
from pinecone_emulator.wire import ApiError, Request, Response, Surface

log = logging.getLogger("pinecone_emulator")

# called as handler(emulator, request, **path_parameters); a data-plane handler as handler(context, request, ...)
type Handler = Callable[..., Response]


@dataclass(frozen=True)
class Row:
    method: str  # "*": any method
    path: tuple[str, ...]
    surface: Surface
    operation: str
    handler: Handler
    needs_key: bool = True

    def match(self, method: str, parts: list[str]) -> dict[str, str] | None:
        """The path's parameters when the request is this row's, else None."""
        if self.method not in ("*", method):
            return None
        parameters: dict[str, str] = {}
        for position, segment in enumerate(self.path):
            if segment == "**":
                parameters["rest"] = "/".join(parts[position:])
                return parameters
            if position >= len(parts):
                return None
            if segment.startswith("{"):
                parameters[segment[1:-1]] = parts[position]
            elif segment != parts[position]:
                return None
        return parameters if len(parts) == len(self.path) else None

    def bind(self, emulator: Emulator, request: Request, parameters: dict[str, str]) -> Route:
        def answer() -> Response:
            return self.handler(emulator, request, **parameters)

        return Route(self.surface, self.operation, answer, index=parameters.get("index"), needs_key=self.needs_key)


def _row(method: str, path: str, surface: Surface, operation: str, handler: Handler, needs_key: bool = True) -> Row:
    return Row(method, tuple(path.split("/")), surface, operation, handler, needs_key)


def _control(method: str, path: str, operation: str, handler: Handler) -> Row:
    return _row(method, path, Surface.CONTROL, operation, handler)


def _data(method: str, path: str, operation: str, handler: Handler) -> Row:
    """A row of an index's data plane: the handler runs on the index, under its lock (data_plane.serve)."""

    def on_index(emulator: Emulator, request: Request, *, index: str, **parameters: str) -> Response:
        return data_plane.serve(emulator, index, operation, lambda context: handler(context, request, **parameters))

    return _row(method, f"data/{{index}}/{path}", Surface.DATA, operation, on_index)


def _admin(method: str, path: str, operation: str, handler: Handler) -> Row:
    return _row(method, f"admin/{path}", Surface.ADMIN, operation, handler)


def _test_control(method: str, path: str, handler: Handler) -> Row:
    return _row(method, f"_emulator/{path}", Surface.EMULATOR, "emulator", handler, needs_key=False)


def _not_emulated(what: str | None = None) -> Handler:
    """A handler for what the emulator does not do: 501 (after the key check, as Pinecone's other errors)."""

    def refuse(_target: Any, request: Request, **parameters: str) -> Response:
        name = what if what is not None else f"Admin API {request.method} /admin/{parameters['rest']}"
        raise ApiError(501, f"{name} is not emulated by pinecone_emulator")

    return refuse


ROWS: tuple[Row, ...] = (
    _control("GET", "indexes", "list_indexes", control_plane.list_indexes),
    _control("POST", "indexes", "create_index", control_plane.create_index),
    _control("POST", "indexes/create-for-model", "create_index_for_model", _not_emulated("create_index_for_model")),
    _control("GET", "indexes/{index}", "describe_index", control_plane.describe_index),
    _control("PATCH", "indexes/{index}", "configure_index", control_plane.configure_index),
    _control("DELETE", "indexes/{index}", "delete_index", control_plane.delete_index),
    _data("POST", "vectors/upsert", "upsert", writes.upsert),
    _data("POST", "query", "query", data_plane.query),
    _data("GET", "vectors/fetch", "fetch", data_plane.fetch),
    _data("POST", "vectors/fetch_by_metadata", "fetch_by_metadata", data_plane.fetch_by_metadata),
    _data("POST", "vectors/delete", "delete", writes.delete),
    _data("POST", "vectors/update", "update", writes.update),
    _data("POST", "describe_index_stats", "describe_index_stats", data_plane.describe_index_stats),
    _data("GET", "describe_index_stats", "describe_index_stats", data_plane.describe_index_stats),
    _data("GET", "vectors/list", "list", data_plane.list_vectors),
    _data("POST", "namespaces", "create_namespace", namespaces.create_namespace),
    _data("GET", "namespaces", "list_namespaces", namespaces.list_namespaces),
    _data("GET", "namespaces/{namespace}", "describe_namespace", namespaces.describe_namespace),
    _data("DELETE", "namespaces/{namespace}", "delete_namespace", namespaces.delete_namespace),
    _row("*", "data/{index}/records/**", Surface.DATA, "records", _not_emulated("records")),
    _row("*", "data/{index}/bulk/**", Surface.DATA, "bulk_import", _not_emulated("bulk_import")),
    _row("*", "data/{index}/documents/**", Surface.DATA, "documents", _not_emulated("documents")),
    _row("POST", "oauth/token", Surface.OAUTH, "oauth_token", admin_api.oauth_token, needs_key=False),
    _admin("GET", "projects", "admin_list_projects", admin_api.list_projects),
    _admin("GET", "projects/{project_id}", "admin_describe_project", admin_api.describe_project),
    _admin("GET", "projects/{project_id}/api-keys", "admin_list_api_keys", admin_api.list_api_keys),
    _admin("POST", "projects/{project_id}/api-keys", "admin_create_api_key", admin_api.create_api_key),
    _admin("GET", "api-keys/{key_id}", "admin_describe_api_key", admin_api.describe_api_key),
    _admin("PATCH", "api-keys/{key_id}", "admin_update_api_key", admin_api.update_api_key),
    _admin("DELETE", "api-keys/{key_id}", "admin_delete_api_key", admin_api.delete_api_key),
    _admin("GET", "organizations", "admin_list_organizations", admin_api.list_organizations),
    _admin("GET", "organizations/{organization_id}", "admin_describe_organization", admin_api.describe_organization),
    _admin("*", "**", "admin_other", _not_emulated()),
    _test_control("*", "health", control_surface.health),
    _test_control("DELETE", "counters", control_surface.clear_counters),
    _test_control("*", "counters", control_surface.counters),
    _test_control("GET", "faults", control_surface.faults),
    _test_control("PUT", "faults", control_surface.configure_faults),
    _test_control("POST", "faults", control_surface.configure_faults),
    _test_control("DELETE", "faults", control_surface.clear_faults),
    _test_control("POST", "faults/rules", control_surface.add_fault_rule),
    _test_control("DELETE", "faults/rules/{rule_id}", control_surface.remove_fault_rule),
    _test_control("POST", "applies/flush", control_surface.flush_applies),
    _test_control("POST", "indexing/flush", control_surface.flush_indexing),
    _test_control("POST", "reset", control_surface.reset),
    _test_control("GET", "state", control_surface.state),
    _test_control("PUT", "indexes/{index}/state", control_surface.set_index_state),
    _test_control("GET", "indexes/{index}/grpc", control_surface.grpc_host),
    _test_control("GET", "journal/{index}/{namespace}", control_surface.journal),
    _test_control("POST", "snapshot", control_surface.snapshot),
    _test_control("*", "**", control_surface.no_route),
)
_BY_HEAD: dict[str, list[Row]] = {}
for _entry in ROWS:
    _BY_HEAD.setdefault(_entry.path[0], []).append(_entry)


def route(emulator: Emulator, request: Request) -> Route:
    """The row that answers ``request``, bound to it; 404 when none does."""
    parts = [unquote(part) for part in request.path.split("/")[1:]]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    for row in _BY_HEAD.get(parts[0] if parts else "", ()):
        parameters = row.match(request.method, parts)
        if parameters is not None:
            return row.bind(emulator, request, parameters)
    raise ApiError(404, f"No route for {request.method} {request.path}")


def handle(emulator: Emulator, request: Request) -> Response:
    """Answer ``request``: find its route, then serve it through the emulator's keys, faults and counters."""
    try:
        found = route(emulator, request)
    except ApiError as error:
        return emulator.refuse(request, error)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return emulator.refuse(request, ApiError(500, "Internal error in the emulator"))
    return emulator.serve(request, found)
