"""A namespace created with a metadata schema indexes only its filterable fields, as Pinecone documents
("when schema is present, only fields which are present in the fields object with filterable: true are
indexed"): a filter cannot see the other fields, so it matches as if they were absent."""

from __future__ import annotations

from pinecone import Pinecone, ServerlessSpec

from pinecone_emulator.pytest_plugin import EmulatorHandle


def test_only_the_schema_s_fields_are_visible_to_filters(pc: Pinecone, pinecone_emulator: EmulatorHandle) -> None:
    pc.create_index("idx", dimension=2, metric="cosine", spec=ServerlessSpec(cloud="aws", region="us-east-1"))
    index = pc.Index(host=pinecone_emulator.index_host("idx"))
    index.create_namespace(name="indexed", schema={"fields": {"year": {"filterable": True}}})
    records = [("a", [1.0, 0.0], {"year": 2021, "genre": "drama"}), ("b", [0.0, 1.0], {"year": 2019, "genre": "drama"})]
    index.upsert(vectors=records, namespace="indexed")
    index.upsert(vectors=records, namespace="plain")  # no schema: every field is indexed

    def ids(namespace: str, filter_: dict[str, object]) -> set[str]:
        found = index.query(vector=[1.0, 1.0], top_k=10, namespace=namespace, filter=filter_)
        return {m.id for m in found.matches}

    assert ids("indexed", {"year": {"$gte": 2020}}) == {"a"}
    assert ids("indexed", {"genre": "drama"}) == set()  # not indexed: invisible
    assert ids("indexed", {"genre": {"$exists": False}}) == {"a", "b"}
    assert ids("plain", {"genre": "drama"}) == {"a", "b"}
    fetched = index.fetch(ids=["a"], namespace="indexed").vectors["a"].metadata
    assert fetched == {"year": 2021, "genre": "drama"}  # stored and returned all the same
    index.close()
