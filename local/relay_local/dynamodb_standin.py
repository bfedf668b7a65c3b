"""A DynamoDB stand-in for the version guard's calls: DynamoDB's answers with almost none of its work here.

moto's server is the local stack's DynamoDB, and on a two-core machine its CPU (60-90 ms per
1,000 guarded records) competes with the handler and the emulator, where in AWS it is DynamoDB's
work on AWS's machines. To measure what the guard costs the handler as deployed against
DynamoDB, ``bench/guard_latency.py`` points the guard at this stand-in instead: one asyncio
process that keeps items in a dict, answers the five operations the guard sends
(``BatchGetItem``, ``TransactWriteItems`` of conditional puts, ``PutItem``, ``UpdateItem``,
``DeleteItem``) as DynamoDB's JSON, and waits ``--latency-ms`` before each answer (DynamoDB's
round trip, which moto on loopback does not have).

It decides conditions as DynamoDB does, for the grammar the guard writes in: comparisons (``=``,
``<>``, ``<``, ``<=``, ``>``, ``>=``) of attributes and ``:values``, ``attribute_exists(p)`` and
``attribute_not_exists(p)``, joined by ``AND``, ``OR``, ``NOT`` and parentheses, with ``#name``
placeholders; and only ``SET p = :v`` updates. Anything else (``size``, ``begins_with``, ``IN``,
document paths) is refused with a ``ValidationException`` rather than guessed.
tests/integration/test_dynamodb_standin.py holds its answers equal to moto's for every call the
guard makes, refusals included, and for conditions of that grammar. It is not a DynamoDB:
no tables, no capacity, no signature check, everything in memory. Only for measuring.

Run: ``python -m relay_local.dynamodb_standin --port 8123 --latency-ms 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, NoReturn

import orjson

ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
CONDITION_FAILED = "The conditional request failed"
_HEAD_LIMIT = 64 * 1024

type Item = dict[str, dict[str, Any]]
type Answer = tuple[int, dict[str, Any]]


class Refused(Exception):
    """A request DynamoDB would answer with an error (its code and message)."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


class Store:
    """Items by (table, partition key, sort key); the guard's tables are keyed ``namespace`` + ``record_id``."""

    KEY = ("namespace", "record_id")

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Item] = {}
        # Capacity units as DynamoDB counts them for the guard's items (each under 1 KB): a strongly consistent
        # read 1 a key, a write 1 an item, 2 in a transaction; refused writes apart (``GET /units``).
        self.units = {"read": 0, "write": 0, "refused_write": 0}

    def key(self, table: str, key_or_item: Mapping[str, Any]) -> tuple[str, str, str]:
        try:
            return (table, key_or_item[self.KEY[0]]["S"], key_or_item[self.KEY[1]]["S"])
        except (KeyError, TypeError) as error:
            raise Refused("ValidationException", "The provided key element does not match the schema") from error

    def answer(self, operation: str, request: dict[str, Any]) -> Answer:
        handler = self._operations().get(operation)
        if handler is None:
            return 400, _error("UnknownOperationException", f"not served by the stand-in: {operation}")
        try:
            return 200, handler(request)
        except Refused as refused:
            return 400, _error(refused.code, refused.message) | refused.fields

    def _operations(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "BatchGetItem": self.batch_get_item,
            "TransactWriteItems": self.transact_write_items,
            "PutItem": self.put_item,
            "UpdateItem": self.update_item,
            "DeleteItem": self.delete_item,
        }

    def batch_get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        responses: dict[str, list[Item]] = {}
        for table, wanted in request["RequestItems"].items():
            self.units["read"] += len(wanted["Keys"])
            found = (self.items.get(self.key(table, key)) for key in wanted["Keys"])
            responses[table] = [item for item in found if item is not None]
        return {"Responses": responses, "UnprocessedKeys": {}}

    def transact_write_items(self, request: dict[str, Any]) -> dict[str, Any]:
        puts = []
        for entry in request["TransactItems"]:
            if set(entry) != {"Put"}:
                raise Refused("ValidationException", f"only Put is served by the stand-in: {sorted(entry)}")
            put = entry["Put"]
            puts.append((self.key(put["TableName"], put["Item"]), put))
        if len({key for key, _ in puts}) != len(puts):
            raise Refused("ValidationException", "Transaction request cannot include multiple operations on one item")
        failed = [not _holds(put, self.items.get(key)) for key, put in puts]
        if any(failed):
            codes = ["ConditionalCheckFailed" if fail else "None" for fail in failed]
            reasons = [
                {"Code": "ConditionalCheckFailed", "Message": CONDITION_FAILED} if fail else {"Code": "None"}
                for fail in failed
            ]
            message = (
                f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(codes)}]"
            )
            self.units["refused_write"] += 2 * len(puts)
            raise Refused("TransactionCanceledException", message, CancellationReasons=reasons)
        for key, put in puts:
            self.items[key] = put["Item"]
        self.units["write"] += 2 * len(puts)
        return {}

    def put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        key = self.key(request["TableName"], request["Item"])
        self._check(request, key)
        self.items[key] = request["Item"]
        return {}

    def update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        key = self.key(request["TableName"], request["Key"])
        self._check(request, key)
        match = re.fullmatch(r"\s*SET\s+(#?\w+)\s*=\s*(:\w+)\s*", request.get("UpdateExpression", ""))
        if match is None:
            raise Refused("ValidationException", "only SET p = :v updates are served by the stand-in")
        name = _name(match.group(1), request.get("ExpressionAttributeNames", {}))
        item = dict(self.items.get(key) or request["Key"])
        item[name] = request["ExpressionAttributeValues"][match.group(2)]
        self.items[key] = item
        return {}

    def delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        key = self.key(request["TableName"], request["Key"])
        self._check(request, key)
        self.items.pop(key, None)
        return {}

    def _check(self, request: dict[str, Any], key: tuple[str, str, str]) -> None:
        """Refuse a write whose condition does not hold; count its write unit either way."""
        if not _holds(request, self.items.get(key)):
            self.units["refused_write"] += 1
            raise Refused("ConditionalCheckFailedException", CONDITION_FAILED)
        self.units["write"] += 1


def _holds(request: Mapping[str, Any], item: Item | None) -> bool:
    """Whether ``request``'s ``ConditionExpression`` holds for ``item`` (True without one)."""
    expression = request.get("ConditionExpression")
    if expression is None:
        return True
    condition = _Condition(
        expression, request.get("ExpressionAttributeNames", {}), request.get("ExpressionAttributeValues", {})
    )
    return condition.holds(item or {})


_TOKEN = re.compile(r"\s*(<=|>=|<>|[=<>(),]|[#:]?\w+)")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Condition:
    """A condition expression of comparisons and ``attribute_(not_)exists``, with AND, OR, NOT and parentheses.

    Evaluated as it is parsed (recursive descent, AND binding tighter than OR, as in DynamoDB);
    functions, operands or operators outside that grammar are refused.
    """

    def __init__(self, expression: str, names: Mapping[str, str], values: Mapping[str, Any]) -> None:
        self.tokens = _tokens(expression)
        self.names = names
        self.values = values
        self.expression = expression

    def holds(self, item: Item) -> bool:
        self.item, self.at = item, 0
        result = self._or()
        if self.at != len(self.tokens):
            self._refuse()
        return result

    def _or(self) -> bool:
        result = self._and()
        while self._take("OR"):
            result = self._and() or result  # both sides parsed, whatever the first gave
        return result

    def _and(self) -> bool:
        result = self._not()
        while self._take("AND"):
            result = self._not() and result
        return result

    def _not(self) -> bool:
        if self._take("NOT"):
            return not self._not()
        if self._take("("):
            result = self._or()
            self._expect(")")
            return result
        if self._peek() in ("attribute_exists", "attribute_not_exists"):
            function = self.tokens[self.at]
            self.at += 1
            self._expect("(")
            present = self._path() in self.item
            self._expect(")")
            return present if function == "attribute_exists" else not present
        have = self._operand()
        operator = self._peek()
        if operator not in _COMPARE:
            self._refuse()
        self.at += 1
        want = self._operand()
        if have is None or want is None:
            return False
        (have_type, have_value), (want_type, want_value) = next(iter(have.items())), next(iter(want.items()))
        if have_type != want_type:
            return operator == "<>"
        if have_type == "N":
            have_value, want_value = Decimal(have_value), Decimal(want_value)
        elif have_type != "S" and operator not in ("=", "<>"):
            self._refuse()
        return bool(_COMPARE[operator](have_value, want_value))

    def _operand(self) -> dict[str, Any] | None:
        token = self._peek()
        if token.startswith(":"):
            self.at += 1
            if token not in self.values:
                raise Refused("ValidationException", f"an expression attribute value is not defined: {token}")
            return dict(self.values[token])
        return self.item.get(self._path())

    def _path(self) -> str:
        token = self._peek()
        if not re.fullmatch(r"#?[A-Za-z_]\w*", token) or token in ("AND", "OR", "NOT"):
            self._refuse()
        self.at += 1
        return _name(token, self.names)

    def _peek(self) -> str:
        return self.tokens[self.at] if self.at < len(self.tokens) else ""

    def _take(self, token: str) -> bool:
        if self._peek() == token:
            self.at += 1
            return True
        return False

    def _expect(self, token: str) -> None:
        if not self._take(token):
            self._refuse()

    def _refuse(self) -> NoReturn:
        raise Refused("ValidationException", f"a condition the stand-in does not serve: {self.expression!r}")


@functools.lru_cache(maxsize=64)
def _tokens(expression: str) -> tuple[str, ...]:
    """``expression``'s tokens, split once per expression (the guard sends the same few conditions every time)."""
    tokens: list[str] = []
    position = 0
    while position < len(expression.rstrip()):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise Refused("ValidationException", f"a condition the stand-in does not serve: {expression!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tuple(tokens)


def _name(token: str, names: Mapping[str, str]) -> str:
    if not token.startswith("#"):
        return token
    if token not in names:
        raise Refused(
            "ValidationException", f"An expression attribute name used in the document path is not defined: {token}"
        )
    return names[token]


def _error(code: str, message: str) -> dict[str, Any]:
    return {"__type": ERROR_PREFIX + code, "message": message}


class StandIn:
    """The HTTP/1.1 front: kept-alive connections, one request at a time per connection, answers after the latency."""

    def __init__(self, latency_seconds: float) -> None:
        self.store = Store()
        self.latency = latency_seconds

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrived = loop.time()
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if request_line.startswith("GET /units"):
                    status, answer = 200, dict(self.store.units)
                elif request_line.startswith("GET "):  # health
                    status, answer = 200, {"status": "ok"}
                else:
                    operation = headers.get("x-amz-target", "").rpartition(".")[2]
                    try:
                        request = orjson.loads(body)
                    except orjson.JSONDecodeError:
                        status, answer = 400, _error("SerializationException", "not JSON")
                    else:
                        status, answer = self.store.answer(operation, request)
                        # The answer leaves ``latency`` after the request came, the stand-in's own work included:
                        # DynamoDB's round trip holds its work, and the stand-in's is this machine's, not AWS's.
                        left = arrived + self.latency - loop.time()
                        if left > 0:
                            await asyncio.sleep(left)
                content = orjson.dumps(answer)
                writer.write(
                    (
                        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Bad Request'}\r\n"
                        "Content-Type: application/x-amz-json-1.0\r\n"
                        f"x-amz-crc32: {zlib.crc32(content)}\r\n"
                        f"Content-Length: {len(content)}\r\n\r\n"
                    ).encode("latin-1")
                    + content
                )
                await writer.drain()
        writer.close()


async def _run(port: int, latency_seconds: float) -> None:
    stand_in = StandIn(latency_seconds)
    server = await asyncio.start_server(stand_in.serve, "127.0.0.1", port, limit=_HEAD_LIMIT)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def running(latency_seconds: float = 0.0) -> Iterator[str]:
    """The stand-in on a loopback port of the OS's choosing, on a thread of this process (tests); its URL."""
    loop = asyncio.new_event_loop()
    stand_in = StandIn(latency_seconds)
    server = loop.run_until_complete(asyncio.start_server(stand_in.serve, "127.0.0.1", 0, limit=_HEAD_LIMIT))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, name="dynamodb-stand-in", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(_stop(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _stop(server: asyncio.Server) -> None:
    """Stop listening and end every connection's task."""
    server.close()
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before every answer")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.port, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
