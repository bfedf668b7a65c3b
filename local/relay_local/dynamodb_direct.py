"""The version guard's DynamoDB calls answered by moto's own handler, without Flask, moto's parser or serializer.

Under the version guard's claims moto's server spent more CPU than the ingest handler it served
(179-200 ms per 1,000 guarded records, issue 32 item 4), most of it around DynamoDB's work rather
than in it: Flask and werkzeug's request objects, moto's request parser walking the operation's
input shape for every attribute of a hundred items, and its response serializer walking the
output shape the same way. :class:`DirectDynamoDB` answers the guard's four bulk and lock calls
(``BatchGetItem``, ``TransactWriteItems``, ``PutItem``, ``DeleteItem``) by calling moto's own
``DynamoHandler`` action (every validation and every backend step moto makes) with the request's
JSON as its parameters, and writes the answer with orjson: the same JSON, with a CRC32 of the bytes
sent (``x-amz-crc32``, which botocore checks) and the headers moto's Flask app sends.

Only requests whose JSON is already what moto's parser would make of it come this way: the
members the guard sends (nothing moto's parser would drop or convert: no nulls, no binary values,
no ``ReturnValues`` other than ``NONE``), signed for DynamoDB, posted to ``/`` as
``application/x-amz-json-1.0``, with moto's request recorder and IAM checks off. Any other request,
and any request moto's handler refuses (a failed condition, a cancelled transaction, a validation
error, a missing table), goes moto's whole way, which answers it with its own error: a refused
request has changed nothing (reads change nothing, a put or delete is checked before it is
written, and a transaction checks every condition before it writes and undoes what it wrote if an
action is refused midway), so moto's way finds the table as this one did. The DynamoDB lock
(:class:`~relay_local.moto_server.AtomicDynamoDB`) is held around both.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import ServiceException
from moto.dynamodb.responses import DynamoHandler
from moto.iam.models import mark_account_as_visited
from moto.moto_api import recorder
from moto.utilities.aws_headers import gen_amzn_requestid_long
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
_EMPTY = b"{}"  # PutItem and DeleteItem without ReturnValues: moto's serializer keeps none of the result's members
_TRANSACTION_DONE = orjson.dumps({"ConsumedCapacity": [], "ItemCollectionMetrics": {}})

# What each call may carry to come this way: the members the guard sends (see the module's docstring).
_CONDITION = frozenset(
    {
        "ConditionExpression",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "ReturnValuesOnConditionCheckFailure",
    }
)
_PUT = frozenset({"TableName", "Item", "ReturnValues"}) | _CONDITION
_DELETE = frozenset({"TableName", "Key", "ReturnValues"}) | _CONDITION
_TRANSACT_ACTIONS = {
    "Put": frozenset({"TableName", "Item"}) | _CONDITION,
    "Delete": frozenset({"TableName", "Key"}) | _CONDITION,
    "ConditionCheck": frozenset({"TableName", "Key"}) | _CONDITION,
}


class _NotDirect(Exception):
    """This request goes moto's whole way."""


def plain_value(value: Any) -> bool:
    """Whether ``value`` is an attribute value whose JSON is what moto's parser and serializer make of it.

    Strings, numbers (as strings), their sets, booleans, nulls, and lists and maps of those;
    not binary values (base64 on the wire, bytes inside moto).
    """
    if type(value) is not dict or len(value) != 1:
        return False
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return type(inner) is str
    if kind in ("SS", "NS"):
        return type(inner) is list and all(type(member) is str for member in inner)
    if kind == "M":
        return type(inner) is dict and all(type(name) is str and plain_value(v) for name, v in inner.items())
    if kind == "L":
        return type(inner) is list and all(plain_value(member) for member in inner)
    if kind in ("BOOL", "NULL"):
        return type(inner) is bool
    return False


def _plain_attributes(attributes: Any) -> bool:
    return type(attributes) is dict and all(type(name) is str and plain_value(v) for name, v in attributes.items())


def _check_members(parameters: Any, allowed: frozenset[str]) -> None:
    if type(parameters) is not dict or not allowed.issuperset(parameters):
        raise _NotDirect
    if type(parameters.get("TableName")) is not str:
        raise _NotDirect
    if "Item" in parameters and not _plain_attributes(parameters["Item"]):
        raise _NotDirect
    if "Key" in parameters and not _plain_attributes(parameters["Key"]):
        raise _NotDirect
    for name in ("ConditionExpression", "ReturnValuesOnConditionCheckFailure"):
        if name in parameters and type(parameters[name]) is not str:
            raise _NotDirect
    names = parameters.get("ExpressionAttributeNames", {})
    if type(names) is not dict or not all(type(k) is str and type(v) is str for k, v in names.items()):
        raise _NotDirect
    if "ExpressionAttributeValues" in parameters and not _plain_attributes(parameters["ExpressionAttributeValues"]):
        raise _NotDirect
    if parameters.get("ReturnValues", "NONE") != "NONE":
        raise _NotDirect


def _check_transaction(request: dict[str, Any]) -> None:
    actions = request.get("TransactItems")
    if set(request) != {"TransactItems"} or type(actions) is not list:
        raise _NotDirect
    for action in actions:
        if type(action) is not dict or len(action) != 1:
            raise _NotDirect
        ((kind, parameters),) = action.items()
        if kind not in _TRANSACT_ACTIONS:
            raise _NotDirect
        _check_members(parameters, _TRANSACT_ACTIONS[kind])


def _check_batch_get(request: dict[str, Any]) -> None:
    tables = request.get("RequestItems")
    if set(request) != {"RequestItems"} or type(tables) is not dict:
        raise _NotDirect
    for table in tables.values():
        if type(table) is not dict or not {"Keys", "ConsistentRead"}.issuperset(table):
            raise _NotDirect
        if type(table.get("ConsistentRead", False)) is not bool or type(table.get("Keys")) is not list:
            raise _NotDirect
        if not all(_plain_attributes(key) for key in table["Keys"]):
            raise _NotDirect


def _batch_get_answer(result: Any) -> bytes:
    """moto's serialized ``BatchGetItem`` answer: its three members, capacity units as numbers with a fraction."""
    responses = result["Responses"]
    if not all(_plain_attributes(item) for items in responses.values() for item in items):
        raise _NotDirect  # a binary attribute: moto's serializer base64-encodes it
    return orjson.dumps(
        {
            "Responses": responses,
            "UnprocessedKeys": result["UnprocessedKeys"],
            "ConsumedCapacity": [
                {"TableName": c["TableName"], "CapacityUnits": float(c["CapacityUnits"])}
                for c in result["ConsumedCapacity"]
            ],
        }
    )


# operation -> (its request check, moto's handler method, the answer from the method's result)
_OPERATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str, Callable[[Any], bytes]]] = {
    "BatchGetItem": (_check_batch_get, "batch_get_item", _batch_get_answer),
    "TransactWriteItems": (_check_transaction, "transact_write_items", lambda _: _TRANSACTION_DONE),
    "PutItem": (lambda request: _check_members(request, _PUT), "put_item", lambda _: _EMPTY),
    "DeleteItem": (lambda request: _check_members(request, _DELETE), "delete_item", lambda _: _EMPTY),
}


def _signed_for_dynamodb(authorization: str) -> bool:
    """The credential scope names DynamoDB: moto's dispatcher sends the request to its DynamoDB app."""
    try:
        credential_scope = authorization.split(",")[0].split()[1]
        service = credential_scope.split("/")[3]
    except IndexError:
        return False
    return len(credential_scope.split("/")) == 5 and service.lower() == "dynamodb"


def _direct_environ(environ: WSGIEnvironment) -> bool:
    """Whether moto's Flask app would route the request to DynamoDB's handler and do nothing else with it."""
    return (
        environ.get("REQUEST_METHOD") == "POST"
        and environ.get("PATH_INFO") == "/"
        and not environ.get("QUERY_STRING")
        and environ.get("CONTENT_TYPE") == CONTENT_TYPE
        and "HTTP_CONTENT_ENCODING" not in environ
        and "HTTP_ORIGIN" not in environ  # flask-cors answers a cross-origin request with more headers
        and "HTTP_TRANSFER_ENCODING" not in environ
        and "amazonaws.com" not in str(environ.get("HTTP_HOST", ""))  # moto reads the region from such a host
        and _signed_for_dynamodb(str(environ.get("HTTP_AUTHORIZATION", "")))
        and not recorder._user_enabled
        and float("inf") == settings.INITIAL_NO_AUTH_ACTION_COUNT
    )


class DirectDynamoDB:
    """A WSGI middleware answering the version guard's DynamoDB calls through moto's handler (see the module)."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self.answered = 0  # requests answered here rather than by moto's whole way (for tests and profiles)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        operation = _OPERATIONS.get(target[len(TARGET_PREFIX) :]) if target.startswith(TARGET_PREFIX) else None
        if operation is None or not _direct_environ(environ):
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)  # moto's way reads it again
        try:
            answer = self._answer(environ, body, *operation)
        except _NotDirect:
            return self._app(environ, start_response)
        headers = [("Content-Type", CONTENT_TYPE), ("server", "amazon.com")]
        headers.append(("x-amzn-requestid", gen_amzn_requestid_long()))
        headers.append(("x-amz-crc32", str(binascii.crc32(answer))))
        if not settings.DISABLE_GLOBAL_CORS:
            headers.append(("Access-Control-Allow-Origin", "*"))  # flask-cors, as moto's app is set up
        self.answered += 1
        start_response("200 OK", headers)
        return [answer]

    @staticmethod
    def _answer(
        environ: WSGIEnvironment,
        body: bytes,
        check: Callable[[dict[str, Any]], None],
        method: str,
        answer: Callable[[Any], bytes],
    ) -> bytes:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _NotDirect from None
        if type(request) is not dict:
            raise _NotDirect
        check(request)
        handler = DynamoHandler()
        _identify(handler, environ, body)
        handler.body = request
        ActionAuthenticatorMixin.request_count += 1  # what moto's check does while IAM checks are off
        try:
            result = getattr(handler, method)()
        except (ServiceException, HTTPException):  # refused, nothing changed: moto's way answers with its error
            raise _NotDirect from None
        return answer(result.result)


def _identify(handler: DynamoHandler, environ: WSGIEnvironment, body: bytes) -> None:
    """The account and region moto's ``setup_class`` finds for the request, and its visit recorded as moto does."""
    headers = EnvironHeaders(environ)
    handler.headers = headers
    if b"AWSAccessKeyId" in body:  # moto would look for a key in the body read as a form: its way
        raise _NotDirect
    handler.querystring = {}
    handler.access_key = handler.get_access_key()
    handler.current_account = handler.get_current_account()
    full_url = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}/"
    handler.region = handler.get_region_from_url(SimpleNamespace(headers=headers), full_url)
    mark_account_as_visited(
        account_id=handler.current_account, access_key=handler.access_key, service="dynamodb", region=handler.region
    )
