"""moto's condition expressions parsed once and evaluated with each request's values (relay_local.moto_conditions).

Every answer of the cache is held to moto's own parser's for the same request: the same verdict on
the same item, the same error, the same names and values found. A cached expression evaluated with
other values gives each its own verdict; a failed condition is still a failed condition.
"""

from __future__ import annotations

from typing import Any

import pytest
from moto.dynamodb.comparisons import ConditionExpressionParser
from moto.dynamodb.models.dynamo_type import DynamoType, Item

from relay_local import moto_conditions
from relay_local.moto_conditions import BoundCondition, CachedConditionParser


def item(**attributes: dict[str, Any]) -> Item:
    return Item(
        DynamoType({"S": "ns"}),
        DynamoType({"S": "id"}),
        {"namespace": {"S": "ns"}, "record_id": {"S": "id"}} | attributes,
    )


def moto_answer(expression: str, names: dict[str, str] | None, values: dict[str, Any] | None, on: Item | None) -> Any:
    """moto's own verdict (or error) and what its parser found."""
    parser = ConditionExpressionParser(expression, names, values)
    try:
        verdict: Any = parser.parse().expr(on)
    except Exception as error:  # the error is the answer
        verdict = type(error)
    return verdict, parser.expr_attr_names_found, parser.expr_attr_values_found


def cached_answer(expression: str, names: dict[str, str] | None, values: dict[str, Any] | None, on: Item | None) -> Any:
    parser = CachedConditionParser(expression, names, values)
    try:
        verdict: Any = parser.parse().expr(on)
    except Exception as error:  # the error is the answer
        verdict = type(error)
    return verdict, parser.expr_attr_names_found, parser.expr_attr_values_found


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    moto_conditions.cache_clear()


def test_a_cached_condition_evaluated_with_other_values_gives_each_its_own_verdict() -> None:
    claimed = item(state={"S": "7 upsert"})
    expression, names = "#state = :read", {"#state": "state"}
    first = CachedConditionParser(expression, names, {":read": {"S": "7 upsert"}}).parse()
    assert not isinstance(first, BoundCondition)  # moto's own tree, the first time
    assert first.expr(claimed)
    verdicts = {}
    for read in ("7 upsert", "6 upsert", "8 delete"):
        condition = CachedConditionParser(expression, names, {":read": {"S": read}}).parse()
        assert isinstance(condition, BoundCondition)  # from the cache
        verdicts[read] = condition.expr(claimed)
    assert verdicts == {"7 upsert": True, "6 upsert": False, "8 delete": False}
    assert CachedConditionParser(expression, names, {":read": {"S": "6 upsert"}}).parse().expr(None) is False


def test_the_same_expression_with_values_of_another_type_is_parsed_apart_and_compared_as_moto_does() -> None:
    lock = item(lock_until={"N": "1000"}, lock_token={"S": "t1"})
    expression = "attribute_not_exists(lock_until) OR lock_until < :now"
    for values in ({":now": {"N": "2000"}}, {":now": {"N": "500"}}, {":now": {"S": "2000"}}, {":now": {"N": "2000"}}):
        assert cached_answer(expression, None, values, lock) == moto_answer(expression, None, values, lock)
        assert cached_answer(expression, None, values, None) == moto_answer(expression, None, values, None)
    # a string attribute against a number: moto's comparison fails (TypeError), cached or not
    odd = item(lock_until={"S": "1000"})
    assert cached_answer(expression, None, {":now": {"N": "2000"}}, odd)[0] is TypeError
    assert moto_answer(expression, None, {":now": {"N": "2000"}}, odd)[0] is TypeError


EXPRESSIONS = [
    ("attribute_not_exists(record_id)", None, None),
    ("attribute_exists(#s) AND NOT (#s = :v)", {"#s": "state"}, {":v": {"S": "1"}}),
    ("#state = :read", {"#state": "state"}, {":read": {"S": "1"}}),
    (
        "attribute_not_exists(#state) AND #version = :version",
        {"#state": "state", "#version": "version"},
        {":version": {"N": "3"}},
    ),
    ("lock_token = :token", None, {":token": {"S": "t1"}}),
    ("begins_with(#s, :p) OR contains(tags, :t)", {"#s": "state"}, {":p": {"S": "1"}, ":t": {"S": "a"}}),
    ("size(tags) > :n AND n BETWEEN :lo AND :hi", None, {":n": {"N": "1"}, ":lo": {"N": "1"}, ":hi": {"N": "9"}}),
    ("n IN (:a, :b, :c)", None, {":a": {"N": "1"}, ":b": {"N": "5"}, ":c": {"S": "5"}}),
    ("m.inner = :v OR l[0] = :v", None, {":v": {"S": "x"}}),
    ("attribute_type(n, :t)", None, {":t": {"S": "N"}}),
    ("tags = :set", None, {":set": {"SS": ["b", "a"]}}),
    ("n <> :n", None, {":n": {"N": "5.0"}}),
]
ITEMS = [
    None,
    item(),
    item(state={"S": "1"}, tags={"SS": ["a", "b"]}, n={"N": "5"}, m={"M": {"inner": {"S": "x"}}}),
    item(state={"S": "2"}, version={"N": "3"}, n={"S": "5"}, l={"L": [{"S": "x"}]}, lock_token={"S": "t1"}),
    item(state={"N": "1"}, tags={"L": [{"S": "a"}]}, n={"N": "0"}),
]


@pytest.mark.parametrize(("expression", "names", "values"), EXPRESSIONS)
def test_every_verdict_from_the_cache_is_moto_s_own(
    expression: str, names: dict[str, str] | None, values: dict[str, Any] | None
) -> None:
    for attempt in range(2):  # the first is parsed by moto, the second comes from the cache
        for on in ITEMS:
            assert cached_answer(expression, names, values, on) == moto_answer(expression, names, values, on), (
                attempt,
                on,
            )


def refusal(parser: Any) -> tuple[type[Exception], str] | None:
    """The error a parser's ``parse()`` raises (its type and message), or None."""
    try:
        parser.parse()
    except Exception as error:  # the error is the answer
        return type(error), str(error)
    return None


def test_a_refused_expression_is_refused_every_time_and_nothing_is_kept() -> None:
    for expression, values in (
        ("x = :missing", {":other": {"S": "1"}}),
        ("size = :v", {":v": {"S": "1"}}),  # a reserved word as an attribute name
        ("a BETWEEN :lo AND :hi", {":lo": {"NULL": True}, ":hi": {"N": "1"}}),
        ("a = = :v", {":v": {"S": "1"}}),
    ):
        for _ in range(2):
            cached = refusal(CachedConditionParser(expression, None, values))
            assert cached is not None
            assert cached == refusal(ConditionExpressionParser(expression, None, values))
    # the same BETWEEN with numbers is fine, then refused again with a NULL bound (another key)
    between = "a BETWEEN :lo AND :hi"
    for _ in range(2):
        CachedConditionParser(between, None, {":lo": {"N": "0"}, ":hi": {"N": "1"}}).parse()
    with pytest.raises(Exception, match="NULL"):
        CachedConditionParser(between, None, {":lo": {"NULL": True}, ":hi": {"N": "1"}}).parse()


def test_the_names_found_are_the_requests_own_list() -> None:
    names = {"#state": "state"}
    for _ in range(3):
        parser = CachedConditionParser("#state = :read", names, {":read": {"S": "1"}})
        parser.parse()
        assert parser.expr_attr_names_found == ["#state"]
        assert parser.expr_attr_values_found == [":read"]
        parser.expr_attr_names_found += ["#added-by-a-handler"]  # moto's handlers extend it in place


def test_no_expression_is_moto_s_always_true() -> None:
    assert CachedConditionParser(None, None, None).parse().expr(None)
    assert CachedConditionParser("", {}, {}).parse().expr(item())
