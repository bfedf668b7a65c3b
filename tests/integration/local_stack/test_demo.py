"""`make demo` end to end: the local stack from template.yaml, the dataset in, queries out, every outcome checked;
then write receipts and read-your-writes under a 2 s indexing lag."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay_local.demo import DELETED_ID, FRESH_QUERY_ID, NEW_ID, PLAIN_QUERY_ID, load_dataset, run_demo
from relay_local.stack import StackOptions
from tests.conftest import reset_moto
from vector_relay.contract.replies import QueryReplyOk


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_demo_lands_the_dataset_answers_by_meaning_and_dead_letters_the_poison(
    tmp_path: Path, moto_server_url: str, transport: str
) -> None:
    reset_moto(moto_server_url)  # in-process moto: nothing an earlier test left may collide with the demo's names
    # GIVEN the demo's stack (template defaults, except a 1 s ingest batching window to keep the test short)
    parameters = {
        "IngestBatchingWindowSeconds": "1",
        "PineconeTransport": transport,
    }  # PINECONE_TRANSPORT=... make demo
    options = StackOptions(state_dir=tmp_path, write_state_file=False, parameters=parameters)
    lines: list[str] = []

    # WHEN the demo runs
    result = run_demo(options, drain_timeout=300, out=lines.append)  # a ceiling

    # THEN every document but the deleted one is in its tenant's namespace ...
    dataset = load_dataset()
    assert result.namespace_counts == {
        "tenant-acme": sum(d["tenant"] == "acme" and d["id"] != DELETED_ID for d in dataset["documents"]),
        "tenant-globex": sum(d["tenant"] == "globex" and d["id"] != DELETED_ID for d in dataset["documents"]),
    }
    # ... the poison is in the ingest DLQ with its codes, the stray query in the query DLQ ...
    assert result.ingest_dead_letters == ["dimension_mismatch", "invalid_json", "unknown_tenant", "zero_vector"]
    assert result.query_dead_letters == ["reply_to_not_allowed"]
    # ... each question got the document that means the same thing, and the bad filter an error reply
    for query in dataset["queries"]:
        reply = result.replies[query["correlation_id"]]
        assert reply["status"] == "ok"
        assert reply["matches"][0]["id"] == query["expected_top_id"]
    assert result.replies["q-bad-filter"]["error"]["code"] == "invalid_filter"
    assert "q-stranger" not in result.replies
    assert result.ok, [c for c in result.checks if not c.passed]
    # ... and the workers reached Pinecone only over the transport asked for
    assert set(result.transports) == {transport}, result.transports
    # AND acme's three writes got one receipt each, with its fate ...
    assert {what: (r.fate, r.error_code) for what, r in result.receipts.items()} == {
        "new": ("applied", None),
        "stale": ("stale", None),
        "poison": ("dead_lettered", "dimension_mismatch"),
    }
    if transport == "rest":
        # ... and the query sent after the applied receipt saw the new record; the plain one was answered
        fresh = result.fresh_replies[FRESH_QUERY_ID]
        assert isinstance(fresh, QueryReplyOk), fresh
        assert fresh.fresh is True
        assert NEW_ID in [match.id for match in fresh.matches or []]
        assert isinstance(result.fresh_replies[PLAIN_QUERY_ID], QueryReplyOk)
    else:
        # ... which over gRPC carry no LSN (the SDK reads none): the demo asks no read-your-writes query
        assert result.receipts["new"].lsn is None
        assert result.fresh_replies == {}
    # AND the output shows what landed where, and never the API key in full
    output = "\n".join(lines)
    assert "namespace tenant-acme" in output
    assert "everything landed where it should" in output
    assert "pclocal-" not in output.replace("pclo…", "")
