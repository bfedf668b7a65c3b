"""Property tests: the emulator's exact search and filters agree with a brute-force reference on random data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pinecone import ServerlessSpec

from tests.reliability.emulator.conftest import Emulated

COLORS = ["red", "green", "blue"]
TAGS = ["a", "b", "c"]
SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# ------------------------------------------------------------------------------------------- data
metadata_strategy = st.fixed_dictionaries(
    {},
    optional={
        "color": st.sampled_from(COLORS),
        "n": st.integers(0, 5),
        "flag": st.booleans(),
        "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=3),
    },
)


def vector_strategy(dimension: int) -> st.SearchStrategy[list[float]]:
    component = st.floats(-10, 10, allow_nan=False, width=32).map(lambda x: float(np.float32(x)))
    return st.lists(component, min_size=dimension, max_size=dimension).filter(
        lambda values: any(abs(v) >= 1e-3 for v in values)
    )


# ----------------------------------------------------------------------------------------- filters
def leaf_strategy() -> st.SearchStrategy[dict[str, Any]]:
    color = st.sampled_from(COLORS)
    number = st.integers(-1, 6)
    tag = st.sampled_from(TAGS)
    return st.one_of(
        color.map(lambda v: {"color": v}),
        st.tuples(st.sampled_from(["$eq", "$ne"]), color).map(lambda t: {"color": {t[0]: t[1]}}),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(color, max_size=3)).map(lambda t: {"color": {t[0]: t[1]}}),
        st.tuples(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), number).map(
            lambda t: {"n": {t[0]: t[1]}}
        ),
        st.tuples(st.integers(-1, 3), st.integers(2, 6)).map(lambda t: {"n": {"$gte": t[0], "$lt": t[1]}}),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(number, max_size=3)).map(lambda t: {"n": {t[0]: t[1]}}),
        st.booleans().map(lambda v: {"flag": v}),
        st.tuples(st.sampled_from(["$eq", "$ne"]), st.booleans()).map(lambda t: {"flag": {t[0]: t[1]}}),
        st.tuples(st.sampled_from(["$eq", "$ne"]), tag).map(lambda t: {"tags": {t[0]: t[1]}}),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(tag, max_size=2)).map(lambda t: {"tags": {t[0]: t[1]}}),
        st.tuples(st.sampled_from(["color", "n", "flag", "tags"]), st.booleans()).map(
            lambda t: {t[0]: {"$exists": t[1]}}
        ),
    )


filter_strategy = st.recursive(
    leaf_strategy(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$and": parts}),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$or": parts}),
        st.tuples(inner, inner).map(lambda pair: {**pair[1], **pair[0]}),  # implicit AND across keys
    ),
    max_leaves=6,
)


def _equal(stored: object, wanted: object) -> bool:
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return type(stored) is type(wanted) and stored == wanted
    if isinstance(stored, int | float) and isinstance(wanted, int | float):
        return float(stored) == float(wanted)
    return isinstance(stored, str) and stored == wanted


def reference_match(metadata: dict[str, Any], expression: dict[str, Any]) -> bool:
    """Pinecone's documented semantics, written out plainly (independent of the emulator's compiler)."""
    for key, condition in expression.items():
        if key == "$and":
            ok = all(reference_match(metadata, part) for part in condition)
        elif key == "$or":
            ok = any(reference_match(metadata, part) for part in condition)
        else:
            ok = _field_matches(metadata, key, condition if isinstance(condition, dict) else {"$eq": condition})
        if not ok:
            return False
    return True


def _field_matches(metadata: dict[str, Any], key: str, condition: dict[str, Any]) -> bool:
    present = key in metadata
    value = metadata.get(key)
    elements = value if isinstance(value, list) else [value]
    for operator, operand in condition.items():
        if operator == "$exists":
            ok = present == operand
        elif not present:
            ok = False  # every other operator, $ne and $nin included, needs the field
        elif operator == "$eq":
            ok = any(_equal(e, operand) for e in elements)
        elif operator == "$ne":
            ok = not any(_equal(e, operand) for e in elements)
        elif operator == "$in":
            ok = any(_equal(e, o) for e in elements for o in operand)
        elif operator == "$nin":
            ok = not any(_equal(e, o) for e in elements for o in operand)
        else:
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            ok = numeric and _compare(operator, float(value), float(operand))
        if not ok:
            return False
    return True


def _compare(operator: str, value: float, bound: float) -> bool:
    if operator == "$gt":
        return value > bound
    if operator == "$gte":
        return value >= bound
    if operator == "$lt":
        return value < bound
    return value <= bound


def reference_score(metric: str, stored: list[float], query: list[float]) -> float:
    a, q = np.asarray(stored, dtype=np.float64), np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        return float(a @ q / (np.linalg.norm(a) * np.linalg.norm(q)))
    if metric == "dotproduct":
        return float(a @ q)
    return float(((a - q) ** 2).sum())


@st.composite
def search_case(draw: st.DrawFn) -> dict[str, Any]:
    dimension = draw(st.integers(1, 6))
    count = draw(st.integers(1, 25))
    return {
        "metric": draw(st.sampled_from(["cosine", "dotproduct", "euclidean"])),
        "dimension": dimension,
        "records": [(f"id-{i:03d}", draw(vector_strategy(dimension)), draw(metadata_strategy)) for i in range(count)],
        "query": draw(vector_strategy(dimension)),
        "top_k": draw(st.integers(1, count + 3)),
        "filter": draw(st.none() | filter_strategy),
    }


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)


@SETTINGS
@given(case=search_case())
def test_query_matches_brute_force_for_every_metric(emulated: Emulated, case: dict[str, Any]) -> None:
    name = emulated.fresh_name("prop")
    metric = case["metric"]
    emulated.pc.create_index(
        name, dimension=case["dimension"], metric=metric, spec=ServerlessSpec(cloud="aws", region="us-east-1")
    )
    index = emulated.pc.Index(name=name)
    try:
        index.upsert(vectors=case["records"])
        result = index.query(vector=case["query"], top_k=case["top_k"], filter=case["filter"], include_metadata=True)
    finally:
        index.close()
        emulated.pc.delete_index(name)

    eligible = {
        vector_id: reference_score(metric, values, case["query"])
        for vector_id, values, metadata in case["records"]
        if case["filter"] is None or reference_match(metadata, case["filter"])
    }
    better_first = sorted(eligible.values(), reverse=metric != "euclidean")
    returned = [(m.id, m.score) for m in result.matches]

    assert len(returned) == min(case["top_k"], len(eligible))
    for (vector_id, score), expected in zip(returned, better_first, strict=False):
        assert vector_id in eligible, "a match that the filter excludes"
        assert _close(score, eligible[vector_id]), "the score is not the metric's value"
        assert _close(score, expected), "a better eligible record was left out or the order is wrong"


@SETTINGS
@given(
    records=st.lists(metadata_strategy, min_size=1, max_size=30),
    expression=filter_strategy,
)
def test_filter_matches_agree_with_the_reference(
    emulated: Emulated, records: list[dict[str, Any]], expression: dict[str, Any]
) -> None:
    name = emulated.fresh_name("filter")
    emulated.pc.create_index(name, dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    index = emulated.pc.Index(name=name)
    try:
        index.upsert(vectors=[(f"r{i}", [1.0, float(i)], md) for i, md in enumerate(records)])
        fetched = index.fetch_by_metadata(filter=expression, limit=10_000)
        counted = index.update(filter=expression, set_metadata={"touched": True}, dry_run=True)
        queried = index.query(vector=[1.0, 0.0], top_k=100, filter=expression)
    finally:
        index.close()
        emulated.pc.delete_index(name)

    expected = {f"r{i}" for i, md in enumerate(records) if reference_match(md, expression)}
    assert set(fetched.vectors) == expected
    assert counted.matched_records == len(expected)
    assert {m.id for m in queried.matches} == expected


sparse_strategy = st.dictionaries(st.integers(0, 40), st.floats(-5, 5, allow_nan=False, width=32), max_size=6).map(
    lambda entries: {"indices": sorted(entries), "values": [float(np.float32(entries[i])) for i in sorted(entries)]}
)


def reference_sparse_dot(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> float:
    lookup = dict(zip(b["indices"], b["values"], strict=True))
    return sum(value * lookup.get(index, 0.0) for index, value in zip(a["indices"], a["values"], strict=True))


@SETTINGS
@given(
    records=st.lists(st.tuples(vector_strategy(3), sparse_strategy), min_size=1, max_size=20),
    dense_query=vector_strategy(3),
    sparse_query=sparse_strategy.filter(lambda s: bool(s["indices"])),
    top_k=st.integers(1, 25),
)
def test_hybrid_query_matches_dense_plus_sparse_dot_products(
    emulated: Emulated,
    records: list[tuple[list[float], dict[str, list[Any]]]],
    dense_query: list[float],
    sparse_query: dict[str, list[Any]],
    top_k: int,
) -> None:
    name = emulated.fresh_name("hybrid")
    emulated.pc.indexes.create(
        name=name,
        schema={
            "fields": {
                "_values": {"type": "dense_vector", "dimension": 3, "metric": "dotproduct"},
                "_sparse_values": {"type": "sparse_vector"},
            }
        },
    )
    index = emulated.pc.Index(name=name)
    vectors = [
        {"id": f"h{i:02d}", "values": dense, **({"sparse_values": sparse} if sparse["indices"] else {})}
        for i, (dense, sparse) in enumerate(records)
    ]
    try:
        index.upsert(vectors=vectors)
        result = index.query(vector=dense_query, sparse_vector=sparse_query, top_k=top_k)
    finally:
        index.close()
        emulated.pc.delete_index(name)

    expected = {
        f"h{i:02d}": reference_score("dotproduct", dense, dense_query) + reference_sparse_dot(sparse_query, sparse)
        for i, (dense, sparse) in enumerate(records)
    }
    best_first = sorted(expected.values(), reverse=True)
    assert len(result.matches) == min(top_k, len(records))
    for match, wanted in zip(result.matches, best_first, strict=False):
        assert _close(match.score, expected[match.id])
        assert _close(match.score, wanted)
