"""Data plane through SDK 10.2.0: every vector and namespace operation against real HTTP."""

from __future__ import annotations

import numpy as np
import pytest
from pinecone import ApiError, ConflictError, NotFoundError, Pinecone, SparseValues, Vector

from tests.integration.emulator.conftest import IndexFactory


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on an index runs through the SDK's REST client and its gRPC client (VectorService)."""
    if "transport" in metafunc.fixturenames:
        metafunc.parametrize("transport", ["rest", "grpc"], indirect=True)


def test_upsert_then_fetch_returns_values_metadata_and_float32_rounding(
    make_index: IndexFactory, transport: str
) -> None:
    index = make_index(dimension=3)

    response = index.upsert(
        vectors=[
            Vector(id="a", values=[0.1, 0.2, 0.3], metadata={"genre": "drama", "year": 2020, "tags": ["x", "y"]}),
            ("b", [1.0, 0.0, 0.0]),
        ],
        namespace="films",
    )
    fetched = index.fetch(ids=["a", "b", "missing"], namespace="films")

    assert response.upserted_count == 2
    assert set(fetched.vectors) == {"a", "b"}
    # REST prints each stored float32 as its shortest decimal; gRPC carries the float32 itself
    stored = [0.1, 0.2, 0.3] if transport == "rest" else [float(np.float32(v)) for v in (0.1, 0.2, 0.3)]
    assert fetched.vectors["a"].values == stored
    assert fetched.vectors["a"].metadata == {"genre": "drama", "year": 2020.0, "tags": ["x", "y"]}
    assert fetched.vectors["b"].metadata is None
    assert fetched.namespace == "films"


def test_metadata_nulls_are_stripped_on_write(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[{"id": "a", "values": [1.0, 2.0], "metadata": {"keep": "yes", "drop": None}}])

    assert index.fetch(ids=["a"]).vectors["a"].metadata == {"keep": "yes"}


@pytest.mark.parametrize(
    ("metric", "expected_order", "expected_best_score"),
    [
        ("cosine", ["same", "close", "far"], 1.0),
        ("dotproduct", ["far", "same", "close"], 6.0),
        ("euclidean", ["same", "close", "far"], 0.0),
    ],
)
def test_query_scores_and_orders_by_metric(
    make_index: IndexFactory, metric: str, expected_order: list[str], expected_best_score: float
) -> None:
    index = make_index(dimension=2, metric=metric)
    index.upsert(vectors=[("same", [1.0, 1.0]), ("close", [1.0, 0.5]), ("far", [-1.0, 7.0])])

    result = index.query(vector=[1.0, 1.0], top_k=3)

    assert [m.id for m in result.matches] == expected_order
    assert result.matches[0].score == pytest.approx(expected_best_score, abs=1e-6)
    if metric == "euclidean":
        assert result.matches[2].score == pytest.approx(4.0 + 36.0)  # squared distance, lower is better
    assert result.usage.read_units >= 1


def test_query_by_id_filter_and_include_flags(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(
        vectors=[
            ("a", [1.0, 0.0], {"kind": "x"}),
            ("b", [0.9, 0.1], {"kind": "y"}),
            ("c", [0.0, 1.0], {"kind": "x"}),
        ]
    )

    plain = index.query(id="a", top_k=2)
    filtered = index.query(vector=[1.0, 0.0], top_k=5, filter={"kind": {"$eq": "x"}}, include_metadata=True)
    with_values = index.query(vector=[1.0, 0.0], top_k=1, include_values=True)

    assert [m.id for m in plain.matches] == ["a", "b"]
    assert plain.matches[0].values == []
    assert plain.matches[0].metadata is None
    assert [m.id for m in filtered.matches] == ["a", "c"]
    assert filtered.matches[1].metadata == {"kind": "x"}
    assert with_values.matches[0].values == [1.0, 0.0]


def test_query_by_unknown_id_or_unknown_namespace_is_empty(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[("a", [1.0, 0.0])])

    assert index.query(id="nope", top_k=3).matches == []
    assert index.query(vector=[1.0, 0.0], top_k=3, namespace="empty").matches == []


def test_sparse_index_upsert_and_query(make_index: IndexFactory) -> None:
    index = make_index(name="sparse", vector_type="sparse")
    index.upsert(
        vectors=[
            Vector(id="s1", sparse_values=SparseValues(indices=[1, 5], values=[1.0, 2.0])),
            Vector(id="s2", sparse_values=SparseValues(indices=[5, 9], values=[0.5, 4.0])),
        ]
    )

    result = index.query(sparse_vector={"indices": [5, 9], "values": [1.0, 1.0]}, top_k=2, include_values=True)
    stats = index.describe_index_stats()

    assert [(m.id, m.score) for m in result.matches] == [("s2", 4.5), ("s1", 2.0)]
    assert result.matches[0].sparse_values.indices == [5, 9]
    assert stats.vector_type == "sparse"
    assert stats.dimension is None


def test_hybrid_query_adds_dense_and_sparse_dot_products(pc: Pinecone) -> None:
    pc.indexes.create(
        name="hybrid",
        schema={
            "fields": {
                "_values": {"type": "dense_vector", "dimension": 2, "metric": "dotproduct"},
                "_sparse_values": {"type": "sparse_vector"},
            }
        },
    )
    index = pc.Index(name="hybrid")
    index.upsert(
        vectors=[
            Vector(id="h1", values=[1.0, 0.0], sparse_values=SparseValues(indices=[3], values=[2.0])),
            Vector(id="h2", values=[0.0, 1.0], sparse_values=SparseValues(indices=[4], values=[10.0])),
        ]
    )

    result = index.query(vector=[1.0, 1.0], sparse_vector={"indices": [3], "values": [3.0]}, top_k=2)

    assert [(m.id, m.score) for m in result.matches] == [("h1", 7.0), ("h2", 1.0)]


def test_sparse_query_on_a_cosine_index_is_400(make_index: IndexFactory) -> None:
    index = make_index(dimension=2, metric="cosine")
    index.upsert(vectors=[("a", [1.0, 0.0])])

    with pytest.raises(ApiError) as raised:
        index.query(vector=[1.0, 0.0], sparse_vector={"indices": [1], "values": [1.0]}, top_k=1)
    assert raised.value.status_code == 400


def test_delete_by_ids_filter_and_all(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[(f"v{i}", [1.0, float(i)], {"even": i % 2 == 0}) for i in range(6)], namespace="ns")

    index.delete(ids=["v0", "v1"], namespace="ns")
    after_ids = sorted(index.fetch(ids=[f"v{i}" for i in range(6)], namespace="ns").vectors)
    index.delete(filter={"even": True}, namespace="ns")
    after_filter = sorted(index.fetch(ids=[f"v{i}" for i in range(6)], namespace="ns").vectors)
    index.delete(delete_all=True, namespace="ns")

    assert after_ids == ["v2", "v3", "v4", "v5"]
    assert after_filter == ["v3", "v5"]
    assert index.describe_index_stats().total_vector_count == 0


def test_delete_in_a_namespace_that_does_not_exist_is_404(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)

    with pytest.raises(NotFoundError):
        index.delete(ids=["a"], namespace="never-written")


def test_update_by_id_patches_values_and_merges_metadata(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[("a", [1.0, 0.0], {"keep": "me", "n": 1})])

    response = index.update(id="a", values=[0.0, 1.0], set_metadata={"n": 2, "new": True})
    fetched = index.fetch(ids=["a"]).vectors["a"]

    assert response.matched_records is None
    assert fetched.values == [0.0, 1.0]
    assert fetched.metadata == {"keep": "me", "n": 2.0, "new": True}


def test_update_by_filter_and_dry_run_report_matched_records(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[(f"v{i}", [1.0, float(i)], {"group": "a" if i < 3 else "b"}) for i in range(5)])

    preview = index.update(filter={"group": "a"}, set_metadata={"seen": True}, dry_run=True)
    untouched = index.fetch(ids=["v0"]).vectors["v0"].metadata
    applied = index.update(filter={"group": "a"}, set_metadata={"seen": True})
    touched = index.fetch_by_metadata(filter={"seen": True})

    assert preview.matched_records == 3
    assert untouched == {"group": "a"}
    assert applied.matched_records == 3
    assert sorted(touched.vectors) == ["v0", "v1", "v2"]


def test_describe_index_stats_counts_namespaces_with_default_named(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[("a", [1.0, 0.0]), ("b", [0.0, 1.0])])
    index.upsert(vectors=[("c", [1.0, 1.0])], namespace="other")

    stats = index.describe_index_stats()

    assert stats.total_vector_count == 3
    assert stats.dimension == 2
    assert stats.metric == "cosine"
    assert {name: ns.vector_count for name, ns in stats.namespaces.items()} == {"__default__": 2, "other": 1}


def test_default_namespace_is_the_same_whether_omitted_empty_or_named(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[("a", [1.0, 0.0])])

    assert "a" in index.fetch(ids=["a"], namespace="__default__").vectors
    assert [m.id for m in index.query(vector=[1.0, 0.0], top_k=1, namespace="").matches] == ["a"]


def test_list_is_sorted_prefix_filtered_and_paginated(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    ids = [f"doc#{i:03d}" for i in range(250)] + ["other-1", "Upper"]
    for start in range(0, len(ids), 100):
        index.upsert(vectors=[(i, [1.0, 0.5]) for i in ids[start : start + 100]])

    first = index.list_paginated(prefix="doc#", limit=100)
    second = index.list_paginated(prefix="doc#", limit=100, pagination_token=first.pagination.next)
    pages = list(index.list(prefix="doc#"))
    everything = [item.id for page in index.list() for item in page.vectors]

    assert [v.id for v in first.vectors] == ids[:100]
    assert [v.id for v in second.vectors] == ids[100:200]
    assert [len(page.vectors) for page in pages] == [100, 100, 50]
    assert everything == sorted(ids)  # byte order: "Upper" < "doc#..." < "other-1"


def test_fetch_by_metadata_paginates(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.upsert(vectors=[(f"v{i:02d}", [1.0, 0.1], {"n": i}) for i in range(25)])

    first = index.fetch_by_metadata(filter={"n": {"$gte": 5}}, limit=10)
    second = index.fetch_by_metadata(filter={"n": {"$gte": 5}}, limit=10, pagination_token=first.pagination.next)

    assert sorted(first.vectors) == [f"v{i:02d}" for i in range(5, 15)]
    assert sorted(second.vectors) == [f"v{i:02d}" for i in range(15, 25)]
    assert second.pagination is None


def test_namespaces_create_describe_list_delete(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    created = index.create_namespace(name="tenant-a", schema={"fields": {"genre": {"filterable": True}}})
    index.upsert(vectors=[("a", [1.0, 0.0]), ("b", [0.0, 1.0])], namespace="tenant-b")
    index.upsert(vectors=[("c", [1.0, 1.0])])

    described = index.describe_namespace(name="tenant-b")
    listed = index.list_namespaces_paginated(limit=2)
    rest = index.list_namespaces_paginated(limit=2, pagination_token=listed.pagination.next)
    index.delete_namespace(name="tenant-b")

    assert created.name == "tenant-a"
    assert created.record_count == 0
    assert created.schema.fields["genre"].filterable is True
    assert described.record_count == 2
    assert [n.name for n in listed.namespaces] == ["__default__", "tenant-a"]
    assert [n.name for n in rest.namespaces] == ["tenant-b"]
    assert listed.total_count == 3
    assert sorted(n.name for page in index.list_namespaces() for n in page.namespaces) == ["__default__", "tenant-a"]
    with pytest.raises(NotFoundError):
        index.describe_namespace(name="tenant-b")


def test_creating_an_existing_namespace_is_409(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)
    index.create_namespace(name="dup")

    with pytest.raises(ConflictError):
        index.create_namespace(name="dup")


def test_index_by_host_works_like_index_by_name(pc: Pinecone, make_index: IndexFactory) -> None:
    by_name = make_index(dimension=2)
    by_name.upsert(vectors=[("a", [1.0, 0.0])])
    by_host = pc.Index(host=pc.describe_index("idx").host)

    assert "a" in by_host.fetch(ids=["a"]).vectors
    by_host.close()


def test_batched_upsert_reports_counts(make_index: IndexFactory) -> None:
    index = make_index(dimension=2)

    response = index.upsert(
        vectors=[(f"v{i}", [1.0, float(i)]) for i in range(250)], batch_size=100, show_progress=False
    )

    assert response.upserted_count == 250
    assert not response.has_errors
    assert index.describe_index_stats().total_vector_count == 250


def test_query_namespaces_merges_across_namespaces(make_index: IndexFactory) -> None:
    index = make_index(dimension=2, metric="euclidean")
    index.upsert(vectors=[("a", [1.0, 1.0])], namespace="n1")
    index.upsert(vectors=[("b", [3.0, 4.0])], namespace="n2")

    merged = index.query_namespaces(vector=[1.0, 2.0], namespaces=["n1", "n2"], metric="euclidean", top_k=2)

    assert [(m.id, m.score) for m in merged.matches] == [("a", 1.0), ("b", 8.0)]


def test_sparse_values_on_a_cosine_index_are_refused_in_a_batch_of_valid_dense_rows(make_index: IndexFactory) -> None:
    """Pinecone accepts sparse values only on a dotproduct index, whichever way the emulator read the dense rows
    (one numpy block for a batch whose dense values are all valid, or row by row): both are refused."""
    index = make_index(name="cosine-hybrid", dimension=2, metric="cosine")
    for other_row_valid in (True, False):  # the block path, then the row-by-row path
        other = Vector(id="b", values=[1.0, 0.0] if other_row_valid else [0.0, 0.0])
        with pytest.raises(ApiError) as refused:
            index.upsert(
                vectors=[
                    Vector(id="a", values=[0.5, 0.5], sparse_values=SparseValues(indices=[1], values=[1.0])),
                    other,
                ]
            )
        assert refused.value.status_code == 400
    assert index.describe_index_stats().total_vector_count == 0
