"""The version guard's DynamoDB calls sent as the JSON DynamoDB speaks, without botocore's model walk.

A claim group of 100 records is one ``BatchGetItem`` and one ``TransactWriteItems`` of 100
conditional puts. botocore serializes such a request by walking the operation's shape for every
attribute of every item, and parses the answer the same way: measured at about 2.6 ms of CPU to
serialize 100 puts, 1.2 ms for 100 keys and 0.75 ms to parse 100 items, and about 1.2 ms for any
call however small (docs/performance.md). DynamoDB's wire format is the request itself as JSON
(``application/x-amz-json-1.0``, the operation in ``X-Amz-Target``), and the guard only ever sends
string, number and string-set attributes and maps of them, whose JSON is their botocore form. So
:class:`JsonDynamoDB` encodes the guard's five calls (the two above, and ``PutItem``, ``UpdateItem``
and ``DeleteItem`` for the claim lock and the release marker) with orjson, signs them with
botocore's own SigV4 signer and the client's credentials, and sends them to its endpoint with the
client's HTTP settings (timeouts, certificate verification, socket options) over kept-alive
connections of :mod:`vector_relay.ingest.dynamodb_http` (through the client's own HTTP session
where a proxy or a client certificate applies). Anything else goes to the botocore client unchanged.

What callers see is what botocore gives: the same response dictionaries, a
:class:`~botocore.exceptions.ClientError` with the error code, message and (for a cancelled
transaction) ``CancellationReasons``, and botocore's own timeout and connection errors. It makes
one attempt per call, as the guard's client does (``GUARD_PROFILE``): the guard retries what it must.
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ChecksumError, ClientError, NoCredentialsError
from botocore.httpsession import URLLib3Session

from vector_relay.ingest.dynamodb_http import DynamoDBEndpoint, Reply

if TYPE_CHECKING:
    from botocore.credentials import Credentials
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

    def send(self, operation: str, request: dict[str, Any]) -> Callable[[], dict[str, Any]]:
        """Send ``operation`` now (over a kept-alive connection; where the client's session must send it, when
        the answer is asked for); the function that returns the answer or raises what the call raises. Sent
        over a kept-alive connection, that function is a :class:`JsonReply`: its ``ready()`` says whether the
        answer has come, without waiting for it."""
        if self._credentials is None:
            raise NoCredentialsError()
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
        if self._endpoint is not None:
            headers["Host"] = self._endpoint.host  # signed as sent
        payload = orjson.dumps(request)
        aws_request = AWSRequest(method="POST", url=self._url, data=payload, headers=headers)
        _Signer(self._credentials.get_frozen_credentials(), "dynamodb", self._region).add_auth(aws_request)
        if self._endpoint is None:
            return functools.partial(self._sent_by_session, operation, aws_request)
        return JsonReply(operation, self._endpoint.send(dict(aws_request.headers.items()), payload))

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


class _Signer(SigV4Auth):
    """botocore's SigV4 signer, hashing the body without letting go of the interpreter's lock.

    ``hashlib`` releases the lock to hash 2,048 bytes or more at once; a claim thread that lets it go while
    the handler's thread validates messages waits up to the 5 ms switch interval to get it back, once for
    every such release. Hashed in smaller pieces, the digest is the same and the thread keeps the lock.
    """

    def payload(self, request: AWSRequest) -> str:
        body: object = request.body  # bytes as sent here (botocore's stubs say str)
        context = request.context
        if not isinstance(body, bytes) or not body or "checksum" in context or not context.get(_SIGN_PAYLOAD, True):
            # botocore signs a body's SHA-256 unless the request's context says otherwise (payload signing turned
            # off, or a streamed checksum); the requests made here never do, but then botocore decides
            return str(super().payload(request))
        digest = hashlib.sha256()
        for start in range(0, len(body), _UNLOCKED_HASH_BYTES):
            digest.update(body[start : start + _UNLOCKED_HASH_BYTES])
        return digest.hexdigest()


_UNLOCKED_HASH_BYTES = 2047  # below CPython's HASHLIB_GIL_MINSIZE (2048)
_SIGN_PAYLOAD = "payload_signing_enabled"  # botocore's context key


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
