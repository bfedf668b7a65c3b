"""Pinecone's data-plane gRPC service (``VectorService``) in front of the same emulator.

Every call is turned into the REST request the SDK's REST client would send for it and answered
by the emulator's front door (:func:`pinecone_emulator.routes.handle`, given to :class:`GrpcFrontEnd`
by server.py, which owns the sockets), so both transports share one store, the key checks (the ``api-key``
metadata), the limits, the counters and the fault injection; the REST answer is turned back into
the gRPC response, or into a gRPC status: the data plane's error bodies already carry their gRPC
code (``rpcStatus``), 401 is UNAUTHENTICATED and a dropped connection UNAVAILABLE.

The SDK's gRPC client dials a host and port and drops any path, and its requests name no index, so
each index has a gRPC server of its own here, on loopback, started on the first gRPC connection to the
index's host (:meth:`GrpcFrontEnd.address`): the index's port (server.py) splices every HTTP/2
connection to it (port_sharing.py). The message definitions are ``vector_service.proto`` (compiled
at start-up with grpcio-tools, a dev dependency).

An upsert's 2 MB limit is measured on the protobuf message, as Pinecone measures a gRPC request.
A write's LSN and a query's indexed LSN go back as initial metadata under their HTTP header names
(``x-pinecone-request-lsn``, ``x-pinecone-max-indexed-lsn``): the emulator's choice, as Pinecone
documents them for HTTP only, and the SDK's gRPC client (10.2.0) reads neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import grpc
import orjson
from google.protobuf import json_format

from pinecone_emulator.wire import GRPC_MARKER, LSN_HEADERS, Request, Response

PROTO = Path(__file__).with_name("vector_service.proto")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the emulator's own limits answer first, as over REST
_STATUS_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}

_compiled: list[Any] = []

type Handle = Callable[[Request], Response]  # the emulator's front door


def messages() -> tuple[Any, Any]:
    """The compiled messages and services of ``vector_service.proto`` (compiled once per process)."""
    if not _compiled:
        import sys

        folder = str(PROTO.parent)
        if folder not in sys.path:
            sys.path.append(folder)  # protos_and_services imports the generated module by the file's name
        _compiled.extend(grpc.protos_and_services(PROTO.name))
    return _compiled[0], _compiled[1]


def _struct(message: Any, field: str) -> dict[str, Any] | None:
    return json_format.MessageToDict(getattr(message, field)) if message.HasField(field) else None


def _sparse(message: Any, field: str) -> dict[str, list[Any]] | None:
    if not message.HasField(field):
        return None
    sparse = getattr(message, field)
    return {"indices": list(sparse.indices), "values": list(sparse.values)}


def _page_query(request: Any) -> list[tuple[str, Any]]:
    """The REST query parameters of a listing request's optional prefix, limit and pagination token."""
    fields = (("prefix", "prefix"), ("limit", "limit"), ("pagination_token", "paginationToken"))
    return [(name, getattr(request, field)) for field, name in fields if request.HasField(field)]


def _drop_none(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if value is not None}


class _Call:
    """One gRPC call as a REST request to the emulator."""

    def __init__(self, handle: Handle, index: str, context: grpc.ServicerContext) -> None:
        self.handle, self.index, self.context = handle, index, context
        metadata = dict(context.invocation_metadata())
        self.headers = {"Api-Key": metadata.get("api-key", ""), "Content-Type": "application/json", GRPC_MARKER: "grpc"}
        if "x-pinecone-api-version" in metadata:
            self.headers["X-Pinecone-Api-Version"] = metadata["x-pinecone-api-version"]

    def send(
        self,
        method: str,
        path: str,
        reply: Any,
        *,
        body: dict[str, Any] | None = None,
        query: list[tuple[str, Any]] | None = None,
        wire_size: int | None = None,
    ) -> Any:
        request = Request(
            method=method,
            path=f"/data/{quote(self.index)}/{path}",
            query_string=urlencode(query or [], doseq=True),
            headers=self.headers,
            parsed=body,  # the decoded body, as the REST path would have it: no JSON round trip
            wire_size=wire_size,
        )
        response = self.handle(request)
        if response.drop:
            self.context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped by the emulator's fault plan")
        if response.status >= 400:
            self.context.abort(*_status(response.status, response.body))
        lsns = tuple((name, response.headers[name]) for name in LSN_HEADERS if name in response.headers)
        if lsns:  # as initial metadata: Pinecone documents these headers for HTTP only (see wire.py)
            self.context.send_initial_metadata(lsns)
        payload = orjson.loads(response.body) if response.body else {}
        return json_format.ParseDict(payload, reply, ignore_unknown_fields=True)


def _status(http_status: int, body: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("code"), int) and payload["code"] in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[payload["code"]], str(payload.get("message", ""))
    if isinstance(payload, dict):
        message = payload.get("error", {}).get("message", "")
    else:
        message = body.decode(errors="replace")
    return _STATUS_FOR_HTTP.get(http_status, grpc.StatusCode.UNKNOWN), str(message or http_status)


class _Servicer:
    """``VectorService``'s methods for one index."""

    def __init__(self, handle: Handle, index: str, pb: Any) -> None:
        self.handle, self.index, self.pb = handle, index, pb

    def _call(self, context: grpc.ServicerContext) -> _Call:
        return _Call(self.handle, self.index, context)

    def Upsert(self, request: Any, context: grpc.ServicerContext) -> Any:
        vectors = []
        for vector in request.vectors:
            vectors.append(
                _drop_none(
                    {
                        "id": vector.id,
                        "values": list(vector.values),
                        "sparseValues": _sparse(vector, "sparse_values"),
                        "metadata": _struct(vector, "metadata"),
                    }
                )
            )
        body = {"vectors": vectors, "namespace": request.namespace}
        return self._call(context).send(
            "POST", "vectors/upsert", self.pb.UpsertResponse(), body=body, wire_size=request.ByteSize()
        )

    def Query(self, request: Any, context: grpc.ServicerContext) -> Any:
        body = _drop_none(
            {
                "namespace": request.namespace,
                "topK": request.top_k,
                "filter": _struct(request, "filter"),
                "includeValues": request.include_values,
                "includeMetadata": request.include_metadata,
                "vector": list(request.vector) or None,
                "id": request.id or None,
                "sparseVector": _sparse(request, "sparse_vector"),
            }
        )
        return self._call(context).send("POST", "query", self.pb.QueryResponse(), body=body)

    def Fetch(self, request: Any, context: grpc.ServicerContext) -> Any:
        query = [("ids", list(request.ids)), ("namespace", request.namespace)]
        return self._call(context).send("GET", "vectors/fetch", self.pb.FetchResponse(), query=query)

    def FetchByMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        body = _drop_none(
            {
                "namespace": request.namespace,
                "filter": _struct(request, "filter"),
                "limit": request.limit if request.HasField("limit") else None,
                "paginationToken": request.pagination_token if request.HasField("pagination_token") else None,
            }
        )
        return self._call(context).send(
            "POST", "vectors/fetch_by_metadata", self.pb.FetchByMetadataResponse(), body=body
        )

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        body = _drop_none(
            {
                "ids": list(request.ids) or None,
                "deleteAll": request.delete_all or None,
                "namespace": request.namespace,
                "filter": _struct(request, "filter"),
            }
        )
        return self._call(context).send("POST", "vectors/delete", self.pb.DeleteResponse(), body=body)

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        body = _drop_none(
            {
                "id": request.id or None,
                "values": list(request.values) or None,
                "sparseValues": _sparse(request, "sparse_values"),
                "setMetadata": _struct(request, "set_metadata"),
                "namespace": request.namespace,
                "filter": _struct(request, "filter"),
                "dryRun": request.dry_run if request.HasField("dry_run") else None,
            }
        )
        return self._call(context).send("POST", "vectors/update", self.pb.UpdateResponse(), body=body)

    def DescribeIndexStats(self, request: Any, context: grpc.ServicerContext) -> Any:
        body = _drop_none({"filter": _struct(request, "filter")})
        return self._call(context).send("POST", "describe_index_stats", self.pb.DescribeIndexStatsResponse(), body=body)

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        query = [("namespace", request.namespace), *_page_query(request)]
        return self._call(context).send("GET", "vectors/list", self.pb.ListResponse(), query=query)

    def ListNamespaces(self, request: Any, context: grpc.ServicerContext) -> Any:
        query = _page_query(request)
        return self._call(context).send("GET", "namespaces", self.pb.ListNamespacesResponse(), query=query)

    def DescribeNamespace(self, request: Any, context: grpc.ServicerContext) -> Any:
        path = f"namespaces/{quote(request.namespace, safe='')}"
        return self._call(context).send("GET", path, self.pb.NamespaceDescription())

    def CreateNamespace(self, request: Any, context: grpc.ServicerContext) -> Any:
        body: dict[str, Any] = {"name": request.name}
        if request.HasField("schema"):
            body["schema"] = json_format.MessageToDict(request.schema)
        return self._call(context).send("POST", "namespaces", self.pb.NamespaceDescription(), body=body)

    def DeleteNamespace(self, request: Any, context: grpc.ServicerContext) -> Any:
        path = f"namespaces/{quote(request.namespace, safe='')}"
        return self._call(context).send("DELETE", path, self.pb.DeleteResponse())


class GrpcFrontEnd:
    """One gRPC server per index, on loopback, started on first use; all answered by the same front door."""

    def __init__(self, handle: Handle, host: str = "127.0.0.1", workers: int = 16) -> None:
        self.handle, self.host, self.workers = handle, host, workers
        self._servers: dict[str, tuple[grpc.Server, int]] = {}
        self._lock = threading.Lock()

    def address(self, index: str) -> tuple[str, int]:
        """``(host, port)`` of the index's gRPC server (started now if it was not)."""
        with self._lock:
            if index not in self._servers:
                self._servers[index] = self._start(index)
            port = self._servers[index][1]
        return self.host, port

    def _start(self, index: str) -> tuple[grpc.Server, int]:
        pb, services = messages()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"grpc-{index}"),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        services.add_VectorServiceServicer_to_server(_Servicer(self.handle, index, pb), server)
        port = server.add_insecure_port(f"{self.host}:0")
        server.start()
        return server, port

    def stop(self, grace: float | None = 1.0) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server, _port in servers:
            server.stop(grace)
