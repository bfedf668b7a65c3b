"""``make demo``: the whole product on one machine, checked.

Starts the local stack, publishes a small dataset of texts embedded with all-MiniLM-L6-v2
(``data/demo_dataset.json``, made by ``tools/embed_demo_dataset.py``) through the ingest queue
with a delete and a few poison messages, lets the pollers run the functions until the queue
drains, asks questions through the query queue, prints the replies and what landed where, and
checks every outcome. The exit status is 1 if any check failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinecone_emulator.control import EmulatorControl
from relay_local.event_source import BatchOutcome
from relay_local.inspection import dead_letter, drain_messages, namespace_counts
from relay_local.stack import LocalStack, StackOptions
from vector_relay.producer import Publisher, body_of, delete, query, upsert

DATASET = Path(__file__).resolve().parent / "data" / "demo_dataset.json"
RECORDS_PER_MESSAGE = 4
DELETED_ID = "fleece#0"  # deleted after it is written: it must not be in the index
UNDECLARED_FILTER_ID = "q-undeclared-field"
UNKNOWN_TENANT = "initech"


@dataclass
class Check:
    what: str
    passed: bool
    detail: str = ""


@dataclass
class DemoResult:
    checks: list[Check] = field(default_factory=list)
    namespace_counts: dict[str, int] = field(default_factory=dict)
    ingest_dead_letters: list[str] = field(default_factory=list)  # error codes
    query_dead_letters: list[str] = field(default_factory=list)
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)  # by correlation id
    transports: dict[str, int] = field(default_factory=dict)  # Pinecone data-plane requests: "rest" / "grpc"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, what: str, passed: bool, detail: str = "") -> None:
        self.checks.append(Check(what, passed, detail))


def load_dataset(path: Path = DATASET) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def ingest_messages(dataset: dict[str, Any], tenants: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The bodies to publish, and the poison among them by body -> expected error_code."""
    bodies: list[str] = []
    for tenant in tenants:
        documents = [d for d in dataset["documents"] if d["tenant"] == tenant]
        for start in range(0, len(documents), RECORDS_PER_MESSAGE):
            records = [
                {"id": d["id"], "version": 1, "values": d["values"], "metadata": d["metadata"]}
                for d in documents[start : start + RECORDS_PER_MESSAGE]
            ]
            bodies.append(body_of(upsert(tenant, records)))  # built with the producer library, as a service would
    owner = next(d["tenant"] for d in dataset["documents"] if d["id"] == DELETED_ID)
    bodies.append(body_of(delete(owner, [(DELETED_ID, 2)])))
    dimension = int(dataset["dimension"])
    first = dataset["documents"][0]
    poison = {
        '{"schema_version": 1, "op": "upsert", "tenant": "acme", "records": [': "invalid_json",
        _upsert(UNKNOWN_TENANT, "stray#0", first["values"]): "unknown_tenant",
        _upsert("acme", "short#0", [0.1, 0.2, 0.3]): "dimension_mismatch",
        _upsert("globex", "blank#0", [0.0] * dimension): "zero_vector",
    }
    # Poison in the middle of the stream: it must not hold up the valid messages around it.
    middle = len(bodies) // 2
    return [*bodies[:middle], *poison, *bodies[middle:]], poison


def _upsert(tenant: str, record_id: str, values: list[float]) -> str:
    record = {"id": record_id, "version": 1, "values": values, "metadata": {"doc_id": record_id}}
    return json.dumps({"schema_version": 1, "op": "upsert", "tenant": tenant, "records": [record]})


def query_messages(dataset: dict[str, Any], reply_to: str) -> tuple[list[str], str, str]:
    """Query bodies; the correlation id that must get an error reply, and the query that must be dead-lettered."""
    bodies = []
    for q in dataset["queries"]:
        built = query(
            q["tenant"],
            reply_to=reply_to,
            vector=q["vector"],
            top_k=3,
            include_metadata=True,
            correlation_id=q["correlation_id"],
            filter=q["filter"] or None,
        )
        bodies.append(body_of(built))
    vector = dataset["queries"][0]["vector"]
    bad_filter = {
        "schema_version": 1,
        "op": "query",
        "tenant": "acme",
        "vector": vector,
        "top_k": 3,
        "filter": {"year": {"$regex": "20.*"}},
        "reply_to": reply_to,
        "correlation_id": "q-bad-filter",
    }
    not_allowed = {**bad_filter, "filter": {"year": {"$gte": 2020}}, "correlation_id": "q-stranger"}
    not_allowed["reply_to"] = reply_to.rsplit("/", 1)[0] + "/somebody-elses-queue"
    # acme's schema declares no "colour": Pinecone would answer with nothing; the relay says why instead
    undeclared = {**bad_filter, "filter": {"colour": {"$eq": "green"}}, "correlation_id": UNDECLARED_FILTER_ID}
    return (
        [*bodies, json.dumps(bad_filter), json.dumps(not_allowed), json.dumps(undeclared)],
        "q-bad-filter",
        "q-stranger",
    )


def publish(sqs: Any, queue_url: str, bodies: list[str]) -> None:
    """Through the producer library's Publisher (batched, retried); the poison goes the same way, as a broken
    producer's would."""
    result = Publisher(queue_url, sqs=sqs).publish_bodies(bodies)
    if result.failed:
        raise RuntimeError(f"SQS refused messages: {[(f.code, f.reason) for f in result.failed]}")


def run_demo(
    options: StackOptions | None = None,
    *,
    dataset_path: Path = DATASET,
    drain_timeout: float = 180.0,
    out: Callable[[str], None] = print,
) -> DemoResult:
    started = time.monotonic()
    result = DemoResult()
    dataset = load_dataset(dataset_path)

    def step(text: str) -> None:
        out(f"[{time.monotonic() - started:5.1f}s] {text}")

    def on_batch(outcome: BatchOutcome) -> None:
        step("  " + outcome.describe())

    options = options or StackOptions()
    step("starting the local stack from template.yaml")
    with LocalStack(options, progress=lambda line: step("  " + line), on_batch=on_batch) as stack:
        info = stack.info
        assert info is not None
        sqs = stack.sqs()
        tenants = info.tenants

        bodies, poison = ingest_messages(dataset, tenants)
        step(
            f"publishing {len(bodies)} messages to IngestQueue: {len(dataset['documents'])} documents "
            f"({RECORDS_PER_MESSAGE} per upsert), 1 delete, {len(poison)} poison"
        )
        publish(sqs, info.queues["IngestQueue"], bodies)
        drained = stack.wait_until_drained(["IngestQueue"], timeout=drain_timeout)
        result.check("ingest queue drained", drained, "" if drained else f"not empty after {drain_timeout:.0f} s")

        queries, error_id, stranger_id = query_messages(dataset, info.queues["ExampleReplyQueue"])
        step(f"publishing {len(queries)} queries to QueryQueue (reply_to: ExampleReplyQueue)")
        publish(sqs, info.queues["QueryQueue"], queries)
        drained = stack.wait_until_drained(["QueryQueue"], timeout=drain_timeout)
        result.check("query queue drained", drained, "" if drained else f"not empty after {drain_timeout:.0f} s")

        for message in drain_messages(sqs, info.queues["ExampleReplyQueue"]):
            reply = json.loads(message["Body"])
            result.replies[str(reply.get("correlation_id"))] = reply
        ingest_dlq = [dead_letter(m) for m in drain_messages(sqs, info.dead_letter_queues["IngestQueue"])]
        query_dlq = [dead_letter(m) for m in drain_messages(sqs, info.dead_letter_queues["QueryQueue"])]
        result.ingest_dead_letters = sorted(d.error_code for d in ingest_dlq)
        result.query_dead_letters = sorted(d.error_code for d in query_dlq)
        result.namespace_counts = namespace_counts(info.pinecone_url, info.index_name)

        # ---------------------------------------------------------------- replies
        documents = {(d["tenant"], d["id"]): d for d in dataset["documents"]}
        step("replies on ExampleReplyQueue:")
        for q in dataset["queries"]:
            reply = result.replies.get(q["correlation_id"])
            out(f'  {q["tenant"]:7} "{q["question"]}"' + (f" filter {json.dumps(q['filter'])}" if q["filter"] else ""))
            if reply is None:
                out("      (no reply)")
                result.check(f"reply to {q['correlation_id']}", False, "no reply")
                continue
            matches = reply.get("matches") or []
            for rank, match in enumerate(matches, 1):
                text = (documents.get((q["tenant"], match["id"])) or {}).get("metadata", {}).get("text", "?")
                out(f"      {rank}. {match['score']:.3f} {match['id']:16} {text}")
            top = matches[0]["id"] if matches else None
            result.check(
                f"{q['correlation_id']}: best match {q['expected_top_id']}",
                reply.get("status") == "ok" and top == q["expected_top_id"],
                f"status {reply.get('status')}, best match {top}",
            )
        error_reply = result.replies.get(error_id, {})
        error_code = (error_reply.get("error") or {}).get("code")
        out(f"  {error_id}: status {error_reply.get('status')}, error {error_code}")
        result.check(f"{error_id} answered with error invalid_filter", error_code == "invalid_filter", str(error_code))
        result.check(f"{stranger_id} got no reply", stranger_id not in result.replies)
        undeclared_error = result.replies.get(UNDECLARED_FILTER_ID, {}).get("error") or {}
        out(
            f"  {UNDECLARED_FILTER_ID}: filter on a field acme's schema does not declare -> "
            f"{undeclared_error.get('code')}: {_short(str(undeclared_error.get('message')))}"
        )
        result.check(
            f"{UNDECLARED_FILTER_ID} refused by acme's schema",
            undeclared_error.get("code") == "filter_field_not_declared",
            str(undeclared_error.get("code")),
        )

        # ---------------------------------------------------------------- what landed where
        step(f"what landed where (index {info.index_name}):")
        expected_counts: dict[str, int] = {}
        for d in dataset["documents"]:
            if d["id"] != DELETED_ID:
                namespace = tenants[d["tenant"]]
                expected_counts[namespace] = expected_counts.get(namespace, 0) + 1
        for namespace, count in sorted(result.namespace_counts.items()):
            out(f"  namespace {namespace:16} {count:3} records")
        result.check(
            "records per namespace",
            result.namespace_counts == expected_counts,
            f"expected {expected_counts}, found {result.namespace_counts}",
        )
        out(f"  IngestDeadLetterQueue: {len(ingest_dlq)} messages")
        for d in ingest_dlq:
            out(f"    {d.error_code:20} {_short(d.reason)}")
        out(f"  QueryDeadLetterQueue: {len(query_dlq)} messages")
        for d in query_dlq:
            out(f"    {d.error_code:20} {_short(d.reason)}")
        result.check(
            "ingest DLQ holds exactly the poison, each with its error_code",
            result.ingest_dead_letters == sorted(poison.values()),
            f"expected {sorted(poison.values())}, found {result.ingest_dead_letters}",
        )
        result.check(
            "query DLQ holds the query with a reply_to off the allow-list",
            result.query_dead_letters == ["reply_to_not_allowed"],
            f"found {result.query_dead_letters}",
        )
        by_transport = EmulatorControl(info.pinecone_url).counters().get("by_transport", {})
        result.transports = {str(k): int(v) for k, v in by_transport.items()}
        out(
            "  Pinecone data-plane requests: "
            + ", ".join(f"{count} over {name}" for name, count in sorted(result.transports.items()))
        )
        counters = {name: poller.counters for name, poller in stack.pollers.items()}
        for name, counted in counters.items():
            out(
                f"  poller {name}: {counted.invocations} invocations, {counted.messages} messages, "
                f"{counted.deleted} deleted, {counted.left} left for retry, {counted.cold_starts} cold starts"
            )
        step("stopping the local stack")
    result.seconds = time.monotonic() - started
    failed = [c for c in result.checks if not c.passed]
    out("")
    for c in result.checks:
        out(f"  {'ok  ' if c.passed else 'FAIL'} {c.what}" + (f": {c.detail}" if not c.passed and c.detail else ""))
    verdict = "everything landed where it should" if not failed else f"{len(failed)} check(s) failed"
    out(f"demo finished in {result.seconds:.1f} s: {verdict}")
    return result


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
