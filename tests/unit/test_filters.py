"""Pinecone's filter language, checked before any call: valid filters pass, every mistake is named."""

from __future__ import annotations

from typing import Any

import pytest

from vector_relay.contract.filters import MAX_FILTER_DEPTH, field_names, filter_problems, matches_every_record


@pytest.mark.parametrize(
    "filter_",
    [
        {"genre": "comedy"},
        {"genre": {"$eq": "comedy"}, "year": {"$gte": 2020, "$lt": 2025}},
        {"$and": [{"genre": "comedy"}, {"genre": "documentary"}]},
        {"$or": [{"year": {"$gt": 2019.5}}, {"tags": {"$in": ["a", "b"]}}]},
        {"tags": {"$nin": ["x", 3]}, "public": {"$ne": False}},
        {"reviewed": {"$exists": True}},
        {"$and": [{"$or": [{"a": 1}, {"b": 2}]}, {"c": {"$in": [1, 2]}}]},
    ],
)
def test_valid_filters_have_no_problems(filter_: dict[str, Any]) -> None:
    assert filter_problems(filter_, allow_empty=False) == []


@pytest.mark.parametrize(
    ("filter_", "location", "fragment"),
    [
        ({"year": {"$gt": "2020"}}, "year.$gt", "number only"),
        ({"year": {"$lte": True}}, "year.$lte", "number only"),
        ({"genre": ["comedy", "drama"]}, "genre", "use $in or $nin"),
        ({"genre": {"$eq": ["comedy"]}}, "genre.$eq", "use $in or $nin"),
        ({"genre": {"$in": "comedy"}}, "genre.$in", "non-empty array"),
        ({"genre": {"$in": []}}, "genre.$in", "non-empty array"),
        ({"genre": {"$in": [True]}}, "genre.$in[0]", "strings or numbers"),
        ({"genre": {"$regex": "^c"}}, "genre.$regex", "unknown operator"),
        ({"text": {"$match_phrase": "hello"}}, "text.$match_phrase", "unknown operator"),
        ({"$not": {"a": 1}}, "$not", "unknown operator"),
        ({"$or": []}, "$or", "non-empty array"),
        ({"$and": {"a": 1}}, "$and", "non-empty array"),
        ({"$and": [{}]}, "$and[0]", "non-empty filter object"),
        ({"genre": None}, "genre", "got null"),
        ({"genre": {}}, "genre", "must not be empty"),
        ({"flag": {"$exists": "yes"}}, "flag.$exists", "true or false"),
        ({"": 1}, "", "must not be empty"),
        ({"score": {"$gt": float("nan")}}, "score.$gt", "non-finite"),
        ({"score": {"$gt": 2**64}}, "score.$gt", "number only"),
    ],
)
def test_invalid_filters_name_the_place_and_the_rule(filter_: dict[str, Any], location: str, fragment: str) -> None:
    problems = filter_problems(filter_, allow_empty=True)
    assert len(problems) == 1
    assert problems[0][0] == location
    assert fragment in problems[0][1]


def test_every_problem_is_listed_not_just_the_first() -> None:
    problems = filter_problems({"a": {"$gt": "x", "$foo": 1}, "b": [1], "$or": []}, allow_empty=True)
    assert [where for where, _ in problems] == ["a.$gt", "a.$foo", "b", "$or"]


def test_empty_filter_is_refused_only_where_pinecone_refuses_it() -> None:
    assert filter_problems({}, allow_empty=True) == []
    assert filter_problems({}, allow_empty=False) == [
        ("", "an empty filter would match every record; it is not allowed here")
    ]


def test_a_filter_must_be_an_object() -> None:
    assert filter_problems(["a"], allow_empty=True) == [("", "a filter must be an object, got an array")]


def test_deep_nesting_is_refused_without_recursion_errors() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(MAX_FILTER_DEPTH + 5):
        deep = {"$and": [deep]}
    problems = filter_problems(deep, allow_empty=True)
    assert len(problems) == 1
    assert "nest at most" in problems[0][1]


BOTH = [{"f": {"$exists": True}}, {"f": {"$exists": False}}]


@pytest.mark.parametrize(
    "filter_",
    [
        {},
        {"$or": BOTH},
        {"$or": [*BOTH, {"g": 1}]},
        {"$or": [{"g": 1}, {"$or": BOTH}]},  # a nested $or counts as parts of the outer one
        {"$or": [{"$or": [BOTH[0]]}, {"$or": [BOTH[1]]}]},
        {"$and": [{"$or": BOTH}, {"$or": [{"g": {"$exists": False}}, {"g": {"$exists": True}}]}]},
        {"$or": [{"g": 1}, {"$and": [{"$or": BOTH}]}]},  # a part that matches every record
    ],
)
def test_filters_true_of_every_possible_record_are_recognised(filter_: dict[str, Any]) -> None:
    assert filter_problems(filter_, allow_empty=True) == []
    assert matches_every_record(filter_)


@pytest.mark.parametrize(
    "filter_",
    [
        {"f": {"$exists": True}},  # records without f
        {"f": {"$exists": False}},  # records with f
        {"$or": [BOTH[0], {"g": {"$exists": False}}]},  # two different fields
        {"$and": [{"$or": BOTH}, {"g": 1}]},  # AND with a selective part
        {"$or": [{"f": {"$exists": True, "$ne": "x"}}, BOTH[1]]},  # the first part asks more than existence
        {"f": {"$exists": True}, "g": {"$exists": False}},
        # not decidable from the filter alone, so not claimed (docs/contract.md, "delete_by_filter"):
        {"f": {"$ne": "a value no record holds"}},
        {"f": {"$nin": ["x"]}},
        {"n": {"$gte": -1e308}},
        {"$or": [{"f": "x"}, {"f": {"$ne": "x"}}, BOTH[1]]},
    ],
)
def test_filters_that_depend_on_the_records_are_not_claimed_to_match_every_record(filter_: dict[str, Any]) -> None:
    assert filter_problems(filter_, allow_empty=True) == []
    assert not matches_every_record(filter_)


def test_field_names_are_found_at_every_depth() -> None:
    filter_ = {"a": 1, "$or": [{"b": {"$exists": True}}, {"$and": [{"c": {"$in": ["x"]}}, {"a": 2}]}]}
    assert field_names(filter_) == {"a", "b", "c"}
