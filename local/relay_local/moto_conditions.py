"""moto's condition expressions parsed once per expression, then evaluated with each request's values.

moto parses a ``ConditionExpression`` (or a ``FilterExpression``) into a tree of its own operators
on every request, and most requests parse it twice (the handler's validation, then the backend's
check): about 12% of moto's CPU under the version guard's claims, whose hundred conditional puts
per transaction share two or three expressions. A parse depends on the expression, the attribute
names and which value placeholders there are with which types, never on the values themselves
(they are looked up and wrapped, not read). So :func:`condition_expression_parser` keeps one tree
per (expression, names, each value's placeholder and type keys), in which each ``:value`` is a
:class:`ValueSlot`; a request's :class:`BoundCondition` evaluates that tree with its own values,
through moto's own operators (:mod:`moto.dynamodb.comparisons`), so a condition is decided exactly
as moto decides it.

A new key is parsed by moto's own parser first, with the request's values: a request that moto
refuses (an unknown placeholder, a reserved word, a syntax error) is refused with the same error,
and nothing is kept for it. :func:`install` puts the cached parser where moto's DynamoDB handler and
backend look theirs up.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from typing import Any

import moto.dynamodb.models
import moto.dynamodb.models.table
import moto.dynamodb.responses
from moto.dynamodb.comparisons import AttributeValue, ConditionExpressionParser, Func, Op, Operand
from moto.dynamodb.models.dynamo_type import Item

CACHE_LIMIT = 4096  # distinct (expression, names, value types); cleared whole when full
_VALUES: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("condition_values")
_Key = tuple[str, tuple[tuple[Any, Any], ...], tuple[tuple[Any, tuple[Any, ...]], ...]]


class ValueSlot(AttributeValue):
    """A ``:value`` placeholder in a cached tree: the value of the evaluation it is part of."""

    def __init__(self, name: str) -> None:  # no super().__init__: there is no value yet
        self.name = name

    def _bound(self) -> AttributeValue:
        return AttributeValue(_VALUES.get()[self.name])

    def expr(self, item: Item | None) -> Any:
        return self._bound().expr(item)

    def get_type(self, item: Item | None) -> str:
        return self._bound().get_type(item)

    def __repr__(self) -> str:
        return self.name


class _SlotParser(ConditionExpressionParser):
    """moto's parser, leaving each ``:value`` as a :class:`ValueSlot` instead of its value."""

    def _make_operand(self, node: Any) -> Operand:
        if node.kind == self.Kind.EXPRESSION_ATTRIBUTE_VALUE:
            return ValueSlot(node.text)
        return super()._make_operand(node)


class BoundCondition:
    """A cached tree and one request's values: what moto's parser would have built for that request."""

    def __init__(self, tree: Op | Func, values: Mapping[str, Any]) -> None:
        self.tree = tree
        self.values = values

    def expr(self, item: Item | None) -> bool:
        token = _VALUES.set(self.values)
        try:
            return bool(self.tree.expr(item))
        finally:
            _VALUES.reset(token)

    def __repr__(self) -> str:
        return repr(self.tree)


class _Parsed:
    __slots__ = ("names_found", "tree", "values_found")

    def __init__(self, tree: Op | Func, names_found: list[str], values_found: list[str]) -> None:
        self.tree = tree
        self.names_found = names_found
        self.values_found = values_found


_cache: dict[_Key, _Parsed] = {}
_cache_lock = threading.Lock()


def _key(expression: Any, names: Any, values: Any) -> _Key | None:
    """The cache key, or None when the request is not of the shape a key can describe (moto's parser decides)."""
    if (
        not isinstance(expression, str)
        or not isinstance(names, Mapping | None)
        or not isinstance(values, Mapping | None)
    ):
        return None
    shapes: list[tuple[Any, tuple[Any, ...]]] = []
    for name, value in (values or {}).items():
        if not isinstance(value, dict):
            return None
        shapes.append((name, tuple(value)))
    key = (expression, tuple((names or {}).items()), tuple(shapes))
    try:
        hash(key)
    except TypeError:  # a name mapped to something unhashable: not a request worth a key
        return None
    return key


class CachedConditionParser:
    """moto's ``ConditionExpressionParser``, answering from the cache when the expression was seen before.

    Same constructor, same ``parse()`` and the same ``expr_attr_names_found`` and
    ``expr_attr_values_found`` afterwards (fresh lists: moto's handlers extend them in place).
    """

    def __init__(
        self,
        condition_expression: str | None,
        expression_attribute_names: dict[str, str] | None,
        expression_attribute_values: dict[str, dict[str, Any]] | None,
    ) -> None:
        self.condition_expression = condition_expression
        self.expression_attribute_names = expression_attribute_names
        self.expression_attribute_values = expression_attribute_values
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self) -> Op | Func | BoundCondition:
        expression, names, values = (
            self.condition_expression,
            self.expression_attribute_names,
            self.expression_attribute_values,
        )
        key = _key(expression, names, values) if expression else None
        parsed = _cache.get(key) if key is not None else None
        if parsed is None:
            parser = ConditionExpressionParser(
                expression, names, values
            )  # moto's answer, or its error, for this request
            tree = parser.parse()
            self.expr_attr_names_found = parser.expr_attr_names_found
            self.expr_attr_values_found = parser.expr_attr_values_found
            if key is not None:
                _remember(key, names, values, parser)
            return tree
        self.expr_attr_names_found = list(parsed.names_found)
        self.expr_attr_values_found = list(parsed.values_found)
        return BoundCondition(parsed.tree, values or {})


def _remember(
    key: _Key, names: Mapping[str, str] | None, values: Mapping[str, Any] | None, parsed: ConditionExpressionParser
) -> None:
    slots = _SlotParser(
        key[0], dict(names) if names is not None else None, dict(values) if values is not None else None
    )
    token = _VALUES.set(values or {})  # a BETWEEN checks its bounds' types while it is built
    try:
        tree = slots.parse()
    except Exception:  # moto's own parse succeeded; without a tree this key is just not cached
        return
    finally:
        _VALUES.reset(token)
    with _cache_lock:
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[key] = _Parsed(tree, list(parsed.expr_attr_names_found), list(parsed.expr_attr_values_found))


def condition_expression_parser(
    expr: str | None, names: dict[str, str] | None, values: dict[str, dict[str, Any]] | None
) -> CachedConditionParser:
    """In place of moto's ``create_condition_expression_parser``."""
    return CachedConditionParser(expr, names, values)


def filter_expression(
    expr: str | None, names: dict[str, str] | None, values: dict[str, dict[str, Any]] | None
) -> Op | Func | BoundCondition:
    """In place of moto's ``get_filter_expression``: the condition, ready to evaluate against an item."""
    return CachedConditionParser(expr, names, values).parse()


def install() -> None:
    """Make moto's DynamoDB handler and backend parse conditions through the cache."""
    # the names each module imported from moto.dynamodb.comparisons
    moto.dynamodb.responses.create_condition_expression_parser = condition_expression_parser  # type: ignore[attr-defined,assignment]
    moto.dynamodb.models.create_condition_expression_parser = condition_expression_parser  # type: ignore[attr-defined,assignment]
    moto.dynamodb.models.get_filter_expression = filter_expression  # type: ignore[attr-defined,assignment]
    moto.dynamodb.models.table.get_filter_expression = filter_expression  # type: ignore[attr-defined,assignment]


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()
