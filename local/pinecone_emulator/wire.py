"""Error values and the three body shapes Pinecone answers with.

* data plane (vectors, namespaces): gRPC-gateway ``rpcStatus`` ``{"code": <grpc int>, "message", "details": []}``
* control plane, admin API: ``{"error": {"code": "<NAME>", "message"}, "status": <http>}``
* gateway rejections (401): ``text/plain`` ``Unauthorized``
* OAuth token endpoint: ``{"error": "access_denied", "error_description": "..."}``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson

# Set by the gRPC front end on the REST requests it makes of gRPC calls, so the counters can tell the transports apart.
GRPC_MARKER = "X-Emulator-Transport"
# Log sequence numbers (docs.pinecone.io/guides/index-data/check-data-freshness): a write's response carries
# its namespace's LSN, a query's response the LSN of the namespace's last write it can see. The gRPC front end
# sends both as initial metadata (the emulator's choice: Pinecone documents them for HTTP only).
REQUEST_LSN_HEADER = "x-pinecone-request-lsn"
INDEXED_LSN_HEADER = "x-pinecone-max-indexed-lsn"
LSN_HEADERS = (REQUEST_LSN_HEADER, INDEXED_LSN_HEADER)


class Surface(StrEnum):
    """Which API answered, which decides the error body shape."""

    DATA = "data"
    CONTROL = "control"
    ADMIN = "admin"
    OAUTH = "oauth"
    EMULATOR = "emulator"


# HTTP status -> (gRPC code number, control-plane code name)
_CODES: dict[int, tuple[int, str]] = {
    400: (3, "INVALID_ARGUMENT"),
    401: (16, "UNAUTHENTICATED"),
    402: (9, "PAYMENT_REQUIRED"),
    403: (7, "FORBIDDEN"),
    404: (5, "NOT_FOUND"),
    408: (4, "DEADLINE_EXCEEDED"),
    409: (6, "ALREADY_EXISTS"),
    412: (9, "FAILED_PRECONDITION"),
    413: (3, "PAYLOAD_TOO_LARGE"),
    422: (3, "UNPROCESSABLE_ENTITY"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "INTERNAL"),
    501: (12, "UNIMPLEMENTED"),
    502: (14, "UNAVAILABLE"),
    503: (14, "UNAVAILABLE"),
    504: (4, "DEADLINE_EXCEEDED"),
}


def grpc_code_for(status: int) -> int:
    return _CODES.get(status, (2, "UNKNOWN"))[0]


def code_name_for(status: int) -> str:
    return _CODES.get(status, (2, "UNKNOWN"))[1]


@dataclass
class Response:
    """A finished HTTP answer; ``drop`` closes the connection without one."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def json(cls, status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        return cls(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status=status, body=text.encode(), content_type="text/plain")


@dataclass
class Request:
    """One HTTP request, already read off the socket. ``headers`` is case-insensitive."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes = b""
    parsed: Any = None  # the body already decoded (the gRPC front end); json() returns it as is
    wire_size: int | None = None  # the request's size as sent, when ``body`` is not what was sent (gRPC)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def json(self, *, required: bool = True) -> Any:
        if self.parsed is not None:
            return self.parsed
        if not self.body.strip():
            if required:
                raise ApiError(400, "Request body is required")
            return {}
        try:
            # orjson: a 2 MB upsert parses in a third of the standard library's time. Like Pinecone's
            # own parser it refuses what JSON does not allow (NaN, Infinity, integers past 64 bits).
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as error:
            raise ApiError(400, f"Failed to parse the request body as JSON: {error}") from None

    def json_object(self, *, required: bool = True) -> dict[str, Any]:
        payload = self.json(required=required)
        if not isinstance(payload, dict):
            raise ApiError(400, "Request body must be a JSON object")
        return payload


class ApiError(Exception):
    """Raised anywhere in a handler; rendered in the shape of the surface that raised it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def unauthorized() -> Response:
    return Response.text(HTTPStatus.UNAUTHORIZED, "Unauthorized")


def render_error(surface: Surface, error: ApiError) -> Response:
    if error.status == HTTPStatus.UNAUTHORIZED and surface is not Surface.OAUTH:
        response = unauthorized()
    elif surface is Surface.DATA:
        response = Response.json(
            error.status, {"code": grpc_code_for(error.status), "message": error.message, "details": []}
        )
    elif surface is Surface.OAUTH:
        response = Response.json(
            error.status, {"error": error.code or "access_denied", "error_description": error.message}
        )
    else:
        response = Response.json(
            error.status,
            {
                "error": {"code": error.code or code_name_for(error.status), "message": error.message},
                "status": error.status,
            },
        )
    response.headers.update(error.headers)
    return response
