"""``make demo``: the whole product on one machine, checked.

Starts the local stack, publishes a small dataset of texts embedded with all-MiniLM-L6-v2
(``data/demo_dataset.json``, made by ``tools/embed_demo_dataset.py``) through the ingest queue
with a delete and a few poison messages, lets the pollers run the functions until the queue
drains, asks questions through the query queue, prints the replies and what landed where, and
checks every outcome. The exit status is 1 if any check failed.

Then write receipts and read-your-writes (docs/producer.md): acme is deployed with a receipt queue in
its registry entry; with the emulator's indexing lag at 2 s, the demo publishes a new record, a
stale write and a poison message for acme, waits for their receipts with the producer's
``ReceiptReader``, and sends a plain query and one ``after=`` the applied receipt at once: the
second must see the new record (``fresh: true``), the first shows what the index had then.

With tracing (``TRACING=1 make demo``) it ends with the traces the run collected: how many per
function, and the last ingest invocation's tree.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pinecone_emulator.control import EmulatorControl
from relay_local.cloudformation import ACCOUNT_ID, DEFAULT_STACK_NAME, REGION
from relay_local.event_source import BatchOutcome
from relay_local.inspection import dead_letter, drain_messages, namespace_counts
from relay_local.sample_deployment import registry_entries
from relay_local.stack import LocalStack, StackOptions
from relay_local.traces import Trace, last_traces, read_documents, render_trace
from vector_relay.contract.receipts import Receipt
from vector_relay.contract.replies import QueryReplyError, QueryReplyOk
from vector_relay.producer import Publisher, ReceiptReader, body_of, delete, query, upsert, wait_for_reply

DATASET = Path(__file__).resolve().parent / "data" / "demo_dataset.json"
RECORDS_PER_MESSAGE = 4
DELETED_ID = "fleece#0"  # deleted after it is written: it must not be in the index
UNDECLARED_FILTER_ID = "q-undeclared-field"
UNKNOWN_TENANT = "initech"

# Write receipts and read-your-writes
RECEIPTS_TENANT = "acme"
DASHBOARD_DIR = "dashboard"  # under the stack's state directory: the demo's drawing of the template's dashboard
RECEIPT_QUEUE_NAME = f"{DEFAULT_STACK_NAME}-tenant-{RECEIPTS_TENANT}-receipts"  # as templates/tenant.yaml names it
RECEIPT_QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{RECEIPT_QUEUE_NAME}"
INDEXING_LAG_MS = 2000  # the emulator's delay before a write is visible to queries
NEW_ID = "paddle-board#0"  # written with the question's own vector: its best match once the index has it
STALE_ID = DELETED_ID  # its upsert at version 1 again, after the delete at version 2: stale
PLAIN_QUERY_ID = "q-plain"
FRESH_QUERY_ID = "q-after-receipt"


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
    receipts: dict[str, Receipt] = field(default_factory=dict)  # the receipts part's, by what was sent: "new" ...
    fresh_replies: dict[str, QueryReplyOk | QueryReplyError] = field(default_factory=dict)  # by correlation id
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
    began = time.time()  # the traces of this run: the journal keeps those of earlier ones too
    result = DemoResult()
    dataset = load_dataset(dataset_path)

    def step(text: str) -> None:
        out(f"[{time.monotonic() - started:5.1f}s] {text}")

    def on_batch(outcome: BatchOutcome) -> None:
        step("  " + outcome.describe())

    options = with_receipt_queue(options or StackOptions())
    step("starting the local stack from template.yaml")
    with LocalStack(options, progress=lambda line: step("  " + line), on_batch=on_batch) as stack:
        info = stack.info
        assert info is not None
        sqs = stack.sqs()
        tenants = info.tenants
        assert stack.provisioner is not None
        # acme's receipt queue, which its registry entry names (with_receipt_queue), made before any write
        stack.provisioner.create_queue(RECEIPT_QUEUE_NAME, {"MessageRetentionPeriod": "86400"})
        step(f"created {RECEIPT_QUEUE_NAME}, the receipt queue {RECEIPTS_TENANT}'s registry entry names")

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

        # ---------------------------------------------------------------- write receipts, read-your-writes
        show_receipts_and_read_your_writes(stack, dataset, result, step, out, timeout=drain_timeout)

        # ---------------------------------------------------------------- the dashboard, drawn
        draw_dashboard(stack, result, step, out, options.state_dir / DASHBOARD_DIR)
        step("stopping the local stack")
    if info.traces_file:  # read once the stack stopped: every segment sent is in the journal
        show_traces(Path(info.traces_file), began, result, out)
    result.seconds = time.monotonic() - started
    failed = [c for c in result.checks if not c.passed]
    out("")
    for c in result.checks:
        out(f"  {'ok  ' if c.passed else 'FAIL'} {c.what}" + (f": {c.detail}" if not c.passed and c.detail else ""))
    verdict = "everything landed where it should" if not failed else f"{len(failed)} check(s) failed"
    out(f"demo finished in {result.seconds:.1f} s: {verdict}")
    return result


def show_traces(journal: Path, since: float, result: DemoResult, out: Callable[[str], None]) -> None:
    """What the run's traces hold: how many per function, and the last ingest invocation's tree."""
    traces = [trace for trace in last_traces(read_documents(journal), 10_000) if trace.start >= since]
    by_function: dict[str, int] = {}
    for trace in traces:
        for root in trace.roots:
            by_function[root.name] = by_function.get(root.name, 0) + 1
    counted = ", ".join(f"{count} {name}" for name, count in sorted(by_function.items()))
    out(f"traces of this run in {journal}: {len(traces)} ({counted or 'none'})")
    result.check("traces collected", bool(traces), f"none in {journal}")
    ingest: list[Trace] = [t for t in traces if any(r.name.endswith("-IngestFunction") for r in t.roots)]
    if ingest:
        out("  the last ingest invocation's (python -m relay_local traces shows more):")
        for line in render_trace(ingest[-1], "    "):
            out(line)


def draw_dashboard(
    stack: LocalStack, result: DemoResult, step: Callable[[str], None], out: Callable[[str], None], directory: Path
) -> None:
    """The template's dashboard drawn from moto's CloudWatch after the demo's traffic, as an operator would draw it.

    ``vector-relay dashboard --png`` runs as a user runs it, with the stack's environment; the
    queues' figures are taken once more first (they are otherwise sampled every 15 s) and every
    metric the stack has taken is put into moto before it reads them.
    """
    info, feed = stack.info, stack.metrics_feed
    assert info is not None
    if feed is None:
        result.check("dashboard drawn", False, "the stack was started without its CloudWatch metrics")
        return
    if stack.queue_metrics is not None:
        feed.publish(stack.queue_metrics.sample())
    result.check("metrics in moto's CloudWatch", feed.flush(), "the metrics feed did not flush")
    step(f"drawing the dashboard (vector-relay dashboard --png {directory})")
    with tempfile.TemporaryDirectory() as scratch:  # the stack's outputs, as `make up` writes them for vector-relay
        outputs = Path(scratch) / "outputs.json"
        outputs.write_text(json.dumps(info.outputs))
        command = [str(Path(sys.executable).parent / "vector-relay"), "--outputs", str(outputs), "dashboard"]
        drawn = subprocess.run(  # noqa: S603 - the project's own command
            [*command, "--png", str(directory), "--since", "15m", "--json"],
            env={**os.environ, **info.upstream_environment()},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if drawn.returncode != 0:
        result.check("dashboard drawn", False, f"exit {drawn.returncode}: {_short(drawn.stderr.strip())}")
        return
    report = json.loads(drawn.stdout)
    graphs = [w for w in report["widgets"] if w["kind"] == "metric"]
    with_data = [w["title"] for w in graphs if w["status"] == "data"]
    out(f"  {len(with_data)} of {len(graphs)} graphs have data after the demo's traffic; open {report['overview']}")
    result.check(
        "dashboard drawn with the demo's traffic in it",
        {"Queue depth", "Records upserted per tenant", "Dead-lettered messages by error code"} <= set(with_data),
        f"graphs with data: {with_data}",
    )


def with_receipt_queue(options: StackOptions) -> StackOptions:
    """The options with acme's registry entry naming its receipt queue, in the registry the stack deploys.

    Deployed with it (template parameter ``InitialTenantRegistry``, the SSM parameter's first
    value), the workers read it on their first invocation. Written into the running stack's
    parameter (``vector-relay tenant add``'s way), it would reach a worker that has already read
    the registry only after ``TENANT_REGISTRY_TTL_SECONDS`` (60 s).
    """
    registry = registry_entries(options.tenants, options.schemas)
    entry = registry[RECEIPTS_TENANT]
    registry[RECEIPTS_TENANT] = {
        **(entry if isinstance(entry, dict) else {"namespace": entry}),
        "receipts": RECEIPT_QUEUE_URL,
    }
    parameters = {**options.parameters, "InitialTenantRegistry": json.dumps(registry)}
    return dataclasses.replace(options, parameters=parameters)


def show_receipts_and_read_your_writes(
    stack: LocalStack,
    dataset: dict[str, Any],
    result: DemoResult,
    step: Callable[[str], None],
    out: Callable[[str], None],
    *,
    timeout: float,
) -> None:
    """Three writes for acme and their receipts; then a plain query and a read-your-writes one, sent at once."""
    info = stack.info
    assert info is not None
    sqs = stack.sqs()
    emulator = EmulatorControl(info.pinecone_url)
    transport = str(info.functions["ingest"]["environment"].get("PINECONE_TRANSPORT", "rest"))
    step(f"write receipts and read-your-writes: {RECEIPTS_TENANT}'s receipts go to {RECEIPT_QUEUE_NAME}")
    earlier = [Receipt.model_validate_json(m["Body"]) for m in drain_messages(sqs, RECEIPT_QUEUE_URL)]
    fates = ", ".join(f"{sum(r.fate == fate for r in earlier)} {fate}" for fate in sorted({r.fate for r in earlier}))
    others = sorted(set(info.tenants) - {RECEIPTS_TENANT})
    none_for = f"; {', '.join(others)}'s registry entry names no receipt queue: it gets none" if others else ""
    out(f"  the writes above left {len(earlier)} receipts there ({fates or 'none'}){none_for}")
    result.check(
        f"{RECEIPTS_TENANT}'s receipt queue holds only {RECEIPTS_TENANT}'s receipts",
        bool(earlier) and all(r.tenant == RECEIPTS_TENANT for r in earlier),
        f"tenants {sorted({r.tenant for r in earlier})}",
    )

    question = next(q for q in dataset["queries"] if q["expected_top_id"] == "kayak#0")
    stale_document = next(d for d in dataset["documents"] if d["id"] == STALE_ID)
    new_record = {
        "id": NEW_ID,
        "version": 1,
        "values": question["vector"],
        "metadata": {"doc_id": NEW_ID.split("#")[0], "category": "water", "year": 2025, "text": "A paddle board."},
    }
    sent = {  # what is sent -> (the message, how the demo names it)
        "new": (upsert(RECEIPTS_TENANT, [new_record]), f"upsert {NEW_ID} v1, a new record"),
        "stale": (
            upsert(RECEIPTS_TENANT, [{**_record_of(stale_document), "version": 1}]),
            f"upsert {STALE_ID} v1 again (deleted at v2 above)",
        ),
        "poison": (
            upsert(RECEIPTS_TENANT, [{"id": "short#1", "version": 1, "values": [0.1, 0.2, 0.3]}]),
            "upsert short#1 with 3 dimensions",
        ),
    }
    emulator.set_indexing_lag(INDEXING_LAG_MS)
    try:
        step(f"indexing lag {INDEXING_LAG_MS / 1000:.0f} s; publishing {len(sent)} messages for {RECEIPTS_TENANT}:")
        for what, (_, name) in sent.items():
            out(f"  {what:6} {name}")
        published = Publisher(info.queues["IngestQueue"], sqs=sqs).publish(message for message, _ in sent.values())
        if published.failed:
            raise RuntimeError(f"SQS refused messages: {[(f.code, f.reason) for f in published.failed]}")
        message_ids = {what: published.message_ids_of(index)[0] for index, what in enumerate(sent)}
        waited = ReceiptReader(sqs, RECEIPT_QUEUE_URL).wait(message_ids.values(), timeout=timeout)  # a ceiling
        step("their receipts (ReceiptReader.wait on the message ids publish returned):")
        for what, message_id in message_ids.items():
            receipt = waited.latest(message_id)
            if receipt is not None:
                result.receipts[what] = receipt
            described = describe_receipt(receipt) if receipt is not None else "(no receipt)"
            out(f"  {what:6} {described}; message {message_id[:8]}…")
        outcomes = {what: (r.fate, r.error_code) for what, r in result.receipts.items()}
        expected = {
            "new": ("applied", None),
            "stale": ("stale", None),
            "poison": ("dead_lettered", "dimension_mismatch"),
        }
        result.check(
            "receipts: the new record applied, the old version stale, the poison dead_lettered (dimension_mismatch)",
            waited.complete and outcomes == expected,
            f"found {outcomes}, missing {waited.missing}",
        )
        applied = result.receipts.get("new")
        if applied is None:
            return
        result.check(
            f"the applied receipt names {NEW_ID} v1",
            [(r.id, r.version) for r in applied.records] == [(NEW_ID, 1)],
            str(applied.records),
        )
        if applied.lsn is None:  # the SDK's gRPC transport reads no LSN: nothing to wait for
            out(f"  the applied receipt has no lsn: over {transport} Pinecone's SDK reads none, so no query can")
            out("  wait for it; read-your-writes needs PineconeTransport=rest (the default): its queries are skipped")
            result.check("an applied receipt without an LSN only over gRPC", transport == "grpc", transport)
            return
        ask_plain_and_fresh(stack, question, applied, result, step, out, timeout=timeout)
    finally:
        emulator.set_indexing_lag(0)


def ask_plain_and_fresh(
    stack: LocalStack,
    question: dict[str, Any],
    applied: Receipt,
    result: DemoResult,
    step: Callable[[str], None],
    out: Callable[[str], None],
    *,
    timeout: float,
) -> None:
    """The same question twice, at once: plainly, and after the applied receipt; what each answer saw."""
    info = stack.info
    assert info is not None
    sqs = stack.sqs()
    reply_to = info.queues["ExampleReplyQueue"]
    common: dict[str, Any] = {"reply_to": reply_to, "vector": question["vector"], "top_k": 3}
    plain = query(RECEIPTS_TENANT, **common, correlation_id=PLAIN_QUERY_ID)
    fresh = query(RECEIPTS_TENANT, **common, correlation_id=FRESH_QUERY_ID, after=[applied])
    step(
        f'publishing "{question["question"]}" twice to QueryQueue at once: plain ({PLAIN_QUERY_ID}), and '
        f"after=[the applied receipt] ({FRESH_QUERY_ID}: min_lsn {fresh.min_lsn})"
    )
    published = Publisher(info.queues["QueryQueue"], sqs=sqs).publish([plain, fresh])
    if published.failed:
        raise RuntimeError(f"SQS refused messages: {[(f.code, f.reason) for f in published.failed]}")
    for correlation_id in (PLAIN_QUERY_ID, FRESH_QUERY_ID):
        reply = wait_for_reply(sqs, reply_to, correlation_id, timeout=timeout)  # a ceiling
        if reply is not None:
            result.fresh_replies[correlation_id] = reply
    step("their replies:")
    for correlation_id, name in ((PLAIN_QUERY_ID, "plain"), (FRESH_QUERY_ID, "read-your-writes")):
        out(f"  {name:16} {describe_fresh_reply(result.fresh_replies.get(correlation_id))}")
    if (fresh_answer := result.fresh_replies.get(FRESH_QUERY_ID)) is not None and getattr(fresh_answer, "fresh", None):
        visible = time.time() - applied.first_sent_at / 1000  # an upper bound: the reply was read after it was sent
        out(
            f"  {NEW_ID} visible to queries at most {visible:.1f} s after it was sent (applied after "
            f"{(applied.at - applied.first_sent_at) / 1000:.1f} s; per tenant in the metric WritesIndexedAfter)"
        )
    plain_reply = result.fresh_replies.get(PLAIN_QUERY_ID)
    fresh_reply = result.fresh_replies.get(FRESH_QUERY_ID)
    result.check(
        f"{PLAIN_QUERY_ID} answered (whatever the index had then)",
        isinstance(plain_reply, QueryReplyOk),
        describe_fresh_reply(plain_reply),
    )
    result.check(
        f"{FRESH_QUERY_ID} saw {NEW_ID}: fresh, at an lsn at or past the receipt's",
        isinstance(fresh_reply, QueryReplyOk)
        and fresh_reply.fresh is True
        and fresh_reply.lsn is not None
        and applied.lsn is not None
        and fresh_reply.lsn >= applied.lsn
        and NEW_ID in [m.id for m in fresh_reply.matches or []],
        describe_fresh_reply(fresh_reply),
    )


def _record_of(document: dict[str, Any]) -> dict[str, Any]:
    return {"id": document["id"], "values": document["values"], "metadata": document["metadata"]}


def describe_receipt(receipt: Receipt) -> str:
    """One line: fate, op, the records written or dropped, lsn (of an applied one), error_code, time since sent."""
    parts = [f"{receipt.fate:13} {receipt.op or '-'}"]
    if receipt.records:
        parts.append("wrote " + _record_list(receipt.records, receipt.record_count))
    if receipt.stale:
        parts.append("dropped " + _record_list(receipt.stale, receipt.stale_count) + " (a newer version is recorded)")
    if receipt.fate == "applied":
        parts.append(f"lsn {receipt.lsn if receipt.lsn is not None else 'null'}")
    if receipt.error_code:
        parts.append(f"error_code {receipt.error_code}")
    parts.append(f"{(receipt.at - receipt.first_sent_at) / 1000:.1f} s after sending")
    return ", ".join(parts)


def _record_list(records: list[Any], count: int) -> str:
    listed = ", ".join(f"{r.id} v{r.version}" for r in records)
    return listed + (f" and {count - len(records)} more" if count > len(records) else "")


def describe_fresh_reply(reply: QueryReplyOk | QueryReplyError | None) -> str:
    """lsn, fresh, and whether the new record is among the matches (and where)."""
    if reply is None:
        return "(no reply)"
    if isinstance(reply, QueryReplyError):
        return f"error {reply.error.code}"
    ids = [m.id for m in reply.matches or []]
    fresh = "no fresh field (not asked)" if reply.fresh is None else f"fresh: {str(reply.fresh).lower()}"
    lsn = "null" if reply.lsn is None else str(reply.lsn)
    if NEW_ID in ids:
        match = (reply.matches or [])[ids.index(NEW_ID)]
        seen = f"{NEW_ID} is match {ids.index(NEW_ID) + 1} ({match.score:.3f})"
    else:
        seen = f"{NEW_ID} not among its {len(ids)} matches ({', '.join(ids)})"
    return f"lsn {lsn}, {fresh}: {seen}"


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
