"""The version guard's DynamoDB calls sent as the JSON DynamoDB speaks, without botocore's model walk.

A claim group of 100 records is one ``BatchGetItem`` and one ``TransactWriteItems`` of 100
conditional puts. botocore serializes such a request by walking the operation's shape for every
attribute of every item, and parses the answer the same way: measured at about 2.6 ms of CPU to
serialize 100 puts, 1.2 ms for 100 keys and 0.75 ms to parse 100 items, and about 1.2 ms for any
call however small (docs/performance.md). DynamoDB's wire format is the request itself as JSON
(``application/x-amz-json-1.0``, the operation in ``X-Amz-Target``), and the guard only ever sends
string, number and string-set attributes and maps of them, whose JSON is their botocore form. So
:class:`JsonDynamoDB` encodes the guard's five calls (the two above, and ``PutItem``, ``UpdateItem``
and ``DeleteItem`` for the claim lock and the release marker) with orjson (or takes the JSON the guard
made), signs them with the client's credentials as botocore's SigV4 signer would (:class:`_Signer`, held
equal to it by tests), and sends them to its endpoint with the
client's HTTP settings (timeouts, certificate verification, socket options) over kept-alive
connections of :mod:`vector_relay.ingest.dynamodb_http` (through the client's own HTTP session
where a proxy or a client certificate applies). Anything else goes to the botocore client unchanged.

What callers see is what botocore gives: the same response dictionaries, a
:class:`~botocore.exceptions.ClientError` with the error code, message and (for a cancelled
transaction) ``CancellationReasons``, and botocore's own timeout and connection errors. It makes
one attempt per call, as the guard's client does (``GUARD_PROFILE``): the guard retries what it must.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import hmac
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import orjson
from botocore.auth import SIGV4_TIMESTAMP
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ChecksumError, ClientError, NoCredentialsError
from botocore.httpsession import URLLib3Session
from botocore.utils import normalize_url_path

from vector_relay.ingest.dynamodb_http import DynamoDBEndpoint, Reply, host_header

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials
    from mypy_boto3_dynamodb import DynamoDBClient

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"


class JsonDynamoDB:
    """A DynamoDB client whose item calls (the version guard's five) skip botocore's serializer and parser.

    Any other attribute is the wrapped client's. Only for requests whose attribute values are
    ``S``, ``N``, ``SS``, ``NS`` or ``M``/``L`` of those (the version guard's items): a binary value
    (bytes) has no JSON form without base64, and orjson refuses it (``TypeError``).
    """

    def __init__(self, client: DynamoDBClient, credentials: Credentials | None) -> None:
        self._client = client
        self._credentials = credentials
        self._url = client.meta.endpoint_url
        self._region = client.meta.region_name
        # The client's own HTTP session: its pooled connections, timeouts (GUARD_PROFILE), TLS and proxy settings
        # and socket options (TCP_NODELAY: without it a body sent after its headers waits ~40 ms for an ACK).
        # Not a public attribute, but the one object that is all of those; closed with the client.
        self._http: URLLib3Session = cast("Any", client)._endpoint.http_session
        # The same settings over lean kept-alive connections (dynamodb_http), unless a proxy or client cert applies.
        self._endpoint = DynamoDBEndpoint.for_session(self._url, self._http)
        self._signer = _Signer(self._url, self._region)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        return self._call("BatchGetItem", request)

    def transact_write_items(self, **request: Any) -> dict[str, Any]:
        return self._call("TransactWriteItems", request)

    # The claim lock's take, renewal and drop and the release marker: one small request each per batch,
    # where botocore's fixed cost per call (about 1.2 ms of CPU) is most of the call's.
    def put_item(self, **request: Any) -> dict[str, Any]:
        return self._call("PutItem", request)

    def update_item(self, **request: Any) -> dict[str, Any]:
        return self._call("UpdateItem", request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self._call("DeleteItem", request)

    def _call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        return self.send(operation, request)()

    @property
    def pollable(self) -> bool:
        """Whether :meth:`send` writes requests itself, so that their answers can be awaited without a thread."""
        return self._endpoint is not None

    def send(self, operation: str, request: dict[str, Any] | bytes) -> Callable[[], dict[str, Any]]:
        """Send ``operation`` now (over a kept-alive connection; where the client's session must send it, when
        the answer is asked for); the function that returns the answer or raises what the call raises. Sent
        over a kept-alive connection, that function is a :class:`JsonReply`: its ``ready()`` says whether the
        answer has come, without waiting for it. ``request``: its dictionary, or the JSON already made."""
        if self._credentials is None:
            raise NoCredentialsError()
        payload = request if isinstance(request, bytes) else orjson.dumps(request)
        credentials = self._credentials.get_frozen_credentials()
        target = TARGET_PREFIX + operation
        if self._endpoint is None:
            headers = self._signer.headers(credentials, target, payload, None)
            aws_request = AWSRequest(method="POST", url=self._url, data=payload, headers=headers)
            return functools.partial(self._sent_by_session, operation, aws_request)
        headers = self._signer.headers(credentials, target, payload, self._endpoint.host)  # signed as sent
        return JsonReply(operation, self._endpoint.send(headers, payload))

    def _sent_by_session(self, operation: str, aws_request: AWSRequest) -> dict[str, Any]:
        response = self._http.send(aws_request.prepare())
        return _parsed(operation, response.status_code, response.content)

    def close(self) -> None:
        """Close the kept-alive connections, and the botocore client (its session's)."""
        if self._endpoint is not None:
            self._endpoint.close()
        self._client.close()


class JsonReply:
    """A request's answer as botocore gives it (called once), and whether it has come (:meth:`ready`)."""

    __slots__ = ("_operation", "_reply")

    def __init__(self, operation: str, reply: Reply) -> None:
        self._operation = operation
        self._reply = reply

    def __call__(self) -> dict[str, Any]:
        got = self._reply()
        _check_crc32(got.headers.get("x-amz-crc32"), got.body)
        return _parsed(self._operation, got.status, got.body)

    def ready(self) -> bool:
        return self._reply.ready()


class _Signer:
    """AWS Signature Version 4 for the one request shape this client sends: a ``POST`` of a JSON body to the
    endpoint's path, with ``Content-Type``, ``Host`` and ``X-Amz-Target`` (and the session token, if any).

    The headers and ``Authorization`` are those botocore's ``SigV4Auth`` gives the same request at the same
    instant (tests/unit/test_dynamodb_json_signing.py holds them equal, byte for byte, for the five calls and
    both transports). botocore's signer is general (any method, query, header set) and took about 55 us of
    CPU a request on an idle core and 200 us on the handler's thread between two messages; this one builds
    the canonical request from a template and keeps the day's signing key: 10 us, 19 for a 13 KB body (a claim
    group of 25), on the same idle core. It hashes the body in
    pieces under 2,048 bytes: ``hashlib`` lets go of the interpreter's lock for larger ones, and a claim
    thread that does so while the handler validates waits up to the 5 ms switch interval to get it back.
    """

    def __init__(self, url: str, region: str, service: str = "dynamodb") -> None:
        parts = urlsplit(url)
        self._path = quote(normalize_url_path(parts.path or "/"), safe="/~")
        self._query = _canonical_query(parts.query)
        self._host = host_header(url)
        self._region = region
        self._service = service
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (secret, day, signing key): the last one derived
        self._lock = threading.Lock()

    def headers(
        self, credentials: ReadOnlyCredentials, target: str, payload: bytes, host: str | None
    ) -> dict[str, str]:
        """The request's headers, signed: ``host`` is the ``Host`` header sent (default: the URL's)."""
        if credentials.access_key is None or credentials.secret_key is None:
            raise NoCredentialsError()
        stamp = _utc_now().strftime(SIGV4_TIMESTAMP)
        day = stamp[:8]
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": target}
        if host is not None:
            headers["Host"] = host
        headers["X-Amz-Date"] = stamp
        token = credentials.token
        if token:
            headers["X-Amz-Security-Token"] = token
        # Canonical headers in name order: content-type, host, x-amz-date, [x-amz-security-token,] x-amz-target
        signed = "content-type;host;x-amz-date;" + ("x-amz-security-token;" if token else "") + "x-amz-target"
        canonical = (
            f"POST\n{self._path}\n{self._query}\ncontent-type:{CONTENT_TYPE}\nhost:{_trimmed(host or self._host)}\n"
            f"x-amz-date:{stamp}\n"
            + (f"x-amz-security-token:{_trimmed(token)}\n" if token else "")
            + f"x-amz-target:{_trimmed(target)}\n\n{signed}\n{_sha256_hex(payload)}"
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode(), "sha256").hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}"
        )
        return headers

    def _signing_key(self, secret: str, day: str) -> bytes:
        with self._lock:
            kept_secret, kept_day, key = self._key
            if kept_secret == secret and kept_day == day:
                return key
        key = f"AWS4{secret}".encode()
        for part in (day, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), "sha256").digest()
        with self._lock:
            self._key = (secret, day, key)
        return key


def _canonical_query(query: str) -> str:
    """An endpoint's query string (never DynamoDB's own) as botocore signs it: its pairs sorted, as written."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _trimmed(value: str) -> str:
    """A header value as SigV4 canonicalises it: outer white space off, inner runs of it one space."""
    return " ".join(value.split())


def _sha256_hex(body: bytes) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(body), _UNLOCKED_HASH_BYTES):
        digest.update(body[start : start + _UNLOCKED_HASH_BYTES])
    return digest.hexdigest()


_UNLOCKED_HASH_BYTES = 2047  # below CPython's HASHLIB_GIL_MINSIZE (2048)


def _parsed(operation: str, status: int, content: bytes) -> dict[str, Any]:
    """An answer's body as botocore gives it, or its :class:`~botocore.exceptions.ClientError`."""
    try:
        body: dict[str, Any] = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:  # not DynamoDB's answer (a proxy's error page): its status says what
        body = {}
    if status >= 300 or not isinstance(body, dict):
        raise ClientError(_error_response(body, status), operation)  # type: ignore[arg-type]
    return body


def _check_crc32(expected: str | None, content: bytes) -> None:
    """DynamoDB's ``x-amz-crc32`` of the answer, checked as botocore checks it (a mismatch is a damaged answer)."""
    if expected is not None and expected.isdigit() and zlib.crc32(content) != int(expected):
        raise ChecksumError(checksum_type="crc32", expected_checksum=expected, actual_checksum=str(zlib.crc32(content)))


def _error_response(body: dict[str, Any], status: int) -> dict[str, Any]:
    """An error answer as botocore gives it: ``Error`` (code without its namespace, message) and the body's fields."""
    code = str(body.get("__type", "")).rsplit("#", 1)[-1] or ("InternalServerError" if status >= 500 else str(status))
    message = body.get("message", body.get("Message", ""))
    fields = {key: value for key, value in body.items() if key not in ("__type", "message", "Message")}
    return {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}, **fields}
