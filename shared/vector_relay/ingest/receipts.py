"""Write receipts: each ingest message's fate, told to its tenant once it is final.

A tenant whose registry entry names a ``receipts`` queue (:meth:`TenantRegistry.receipts_for`) gets one
receipt per message (docs/contract.md, "Write receipts"):

* ``applied``: some of its records were written by this delivery (or its filter operation ran), with
  their ids and versions, the highest LSN Pinecone gave the requests that wrote them (null when any
  is unknown: gRPC, or no header), and the records dropped beside them;
* ``stale``: nothing was written, every record was dropped for a newer version (recorded by the
  version guard, or winning in the same batch);
* ``dead_lettered``: sent to the DLQ with its error code (a redrive may still apply it; an
  ``applied`` receipt then follows).

Receipts are built as the batch's fates are decided and sent together after the batch, so a receipt
is never sent before its write landed. One its tenant's queue does not take (throttled, missing, its
key refused) goes to the relay's own retry queue (``RECEIPT_RETRY_QUEUE_URL``), from which
``ReceiptsFunction`` sends it again (:mod:`vector_relay.sqs.receipt_retry`) until its queue takes
it or its redrive policy moves it to that queue's DLQ: the write is never applied again for a
receipt's sake.

The destination comes from the registry entry of the message's tenant, never from the message; a
dead letter gets a receipt only when its body names a tenant its queue may speak for. A receipt
carries no vector values, metadata or error detail (which may quote input). Its ``message_id`` is
the producer's original message id, carried onto copies
(:data:`~vector_relay.sqs.message_age.FIRST_MESSAGE_ATTRIBUTE`), and ``receipt_id`` is the same for
every copy of the same receipt, so a consumer de-duplicates on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, assert_never

import orjson
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from vector_relay.contract.messages import DeleteByFilterMessage, DeleteMessage, PurgeTenantMessage, UpsertMessage
from vector_relay.contract.receipts import RECEIPT_MAX_LISTED, receipt_id
from vector_relay.errors import OutOfTimeError, PoisonMessageError
from vector_relay.ingest.planning import Coalesced, PlannableWrite
from vector_relay.ingest.runner import WriteOutcome
from vector_relay.pinecone.wire import EncodedUpsert
from vector_relay.sqs.limits import send_batches
from vector_relay.sqs.message_age import first_message_id, first_sent_ms
from vector_relay.tenancy import TenantRegistry

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = Logger(child=True)

WRITE_OPS = frozenset({"upsert", "delete", "delete_by_filter", "purge_tenant"})


@dataclass(frozen=True, slots=True)
class Landed:
    """A valid message of the batch and what the batch wrote (for the receipt of a message dead-lettered after)."""

    namespace: str
    message: PlannableWrite
    coalesced: Coalesced
    outcome: WriteOutcome


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    destination: str
    message_id: str  # the producer's original's
    body: str


@dataclass(slots=True)
class ReceiptBook:
    """The receipts of one batch: added as fates are decided, sent once the batch is done."""

    registry: TenantRegistry
    clock: Callable[[], float] = time.time
    pending: list[PendingReceipt] = field(default_factory=list)
    # ms from each applied message's first send to its fate, by tenant (every tenant's: a metric, not a receipt)
    applied_after: dict[str, list[float]] = field(default_factory=dict)

    def done(
        self, record: SQSRecord, namespace: str, message: PlannableWrite, coalesced: Coalesced, outcome: WriteOutcome
    ) -> None:
        """``record``'s message is done (acknowledged): ``applied`` or ``stale``, from what the batch wrote."""
        written, stale, lsns = _fates(record.message_id, namespace, message, coalesced, outcome)
        fate = "applied" if written or isinstance(message, DeleteByFilterMessage | PurgeTenantMessage) else "stale"
        if fate == "applied":
            after = self.clock() * 1000 - first_sent_ms(record)
            self.applied_after.setdefault(message.tenant, []).append(max(after, 0.0))
        destination = self.registry.receipts_for(message.tenant)
        if destination is None:
            return
        lsn = None if not lsns or None in lsns else max(lsn for lsn in lsns if lsn is not None)
        self._add(
            record,
            destination,
            {
                "tenant": message.tenant,
                "op": message.op,
                "fate": fate,
                "namespace": namespace,
                "records": _listed(written),
                "record_count": len(written),
                "stale": _listed(stale),
                "stale_count": len(stale),
                "lsn": lsn if fate == "applied" else None,
            },
        )

    def dead_lettered(self, record: SQSRecord, poison: PoisonMessageError, landed: Landed | None = None) -> None:
        """``record`` went to the DLQ: ``dead_lettered``, if its body names a tenant its queue may speak for.

        ``landed``: what the batch wrote of it before the rest was refused (a message split across
        requests, one of which Pinecone rejected or which failed on its last delivery); the receipt
        names those records and their LSN, as they are in the index.
        """
        tenant, op = _tenant_and_op(record.body)
        if tenant is None or tenant not in self.registry:
            return
        if self.registry.binding_problem(record.event_source_arn, tenant) is not None:
            return  # a queue may not speak for that tenant: its receipts are not this sender's to write
        destination = self.registry.receipts_for(tenant)
        if destination is None:
            return
        fields: dict[str, Any] = {
            "tenant": tenant,
            "op": op,
            "fate": "dead_lettered",
            "error_code": poison.error_code,
            "error_codes": list(poison.error_codes),
        }
        if landed is not None and tenant == landed.message.tenant:
            written, _, lsns = _fates(
                record.message_id, landed.namespace, landed.message, landed.coalesced, landed.outcome
            )
            if written:
                fields |= {
                    "namespace": landed.namespace,
                    "records": _listed(written),
                    "record_count": len(written),
                    "lsn": None if None in lsns else max(lsn for lsn in lsns if lsn is not None),
                }
        self._add(record, destination, fields)

    def _add(self, record: SQSRecord, destination: str, fields: dict[str, Any]) -> None:
        original = first_message_id(record)
        identity = receipt_id(
            original,
            fields["fate"],
            fields["op"],
            fields.get("records", ()),
            fields.get("stale", ()),
            fields.get("error_code"),
        )
        body = {
            "schema_version": 1,
            "type": "receipt",
            "receipt_id": identity,
            "message_id": original,
            **fields,
            "at": int(self.clock() * 1000),
            "first_sent_at": first_sent_ms(record),
        }
        self.pending.append(PendingReceipt(destination, original, orjson.dumps(body).decode()))

    def send(self, sqs: SQSClient, retry_queue_url: str | None) -> ReceiptsSent:
        """Send every pending receipt (10 per call, per destination); those refused go to ``retry_queue_url``."""
        outcome = ReceiptsSent()
        by_destination: dict[str, list[PendingReceipt]] = {}
        for receipt in self.pending:
            by_destination.setdefault(receipt.destination, []).append(receipt)
        self.pending = []
        refused: list[PendingReceipt] = []
        for destination, receipts in by_destination.items():
            refused += _send_all(sqs, destination, receipts)
        outcome.sent = sum(map(len, by_destination.values())) - len(refused)
        if refused and retry_queue_url:
            outcome.lost = _send_all(sqs, retry_queue_url, refused)
            outcome.retried = len(refused) - len(outcome.lost)
        else:
            outcome.lost = refused
        return outcome


@dataclass(slots=True)
class ReceiptsSent:
    sent: int = 0  # taken by their tenant's queue
    retried: int = 0  # refused there, taken by the relay's retry queue
    lost: list[PendingReceipt] = field(default_factory=list)  # taken by neither: logged


def _send_all(sqs: SQSClient, destination: str, receipts: Sequence[PendingReceipt]) -> list[PendingReceipt]:
    """Send ``receipts`` to ``destination`` in batch calls; those not taken."""
    refused: list[PendingReceipt] = []
    for group in send_batches(receipts, lambda receipt: len(receipt.body.encode())):
        refused += _send_group(sqs, destination, group)
    return refused


def _send_group(sqs: SQSClient, destination: str, group: Sequence[PendingReceipt]) -> list[PendingReceipt]:
    entries: list[SendMessageBatchRequestEntryTypeDef] = [
        {"Id": str(i), "MessageBody": receipt.body} for i, receipt in enumerate(group)
    ]
    try:
        response = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
    except (ClientError, BotoCoreError, OutOfTimeError) as error:
        logger.warning("could not send write receipts", extra={"receipts": len(group), "error": type(error).__name__})
        return list(group)
    failed = [group[int(entry["Id"])] for entry in response.get("Failed", [])]
    if failed:
        codes = sorted({entry.get("Code", "") for entry in response.get("Failed", [])})
        logger.warning("write receipts refused by their queue", extra={"receipts": len(failed), "codes": codes})
    return failed


def _fates(
    message_id: str, namespace: str, message: PlannableWrite, coalesced: Coalesced, outcome: WriteOutcome
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[int | None]]:
    """The message's records written by this batch and those dropped, and the LSNs of the writes."""
    records: Iterable[tuple[str, int]]
    operation: str
    match message:
        case UpsertMessage() | EncodedUpsert():
            records, operation = ((r.id, r.version) for r in message.records), "upsert"
        case DeleteMessage():
            records, operation = ((r.id, r.version) for r in message.records), "delete"
        case DeleteByFilterMessage() | PurgeTenantMessage():
            return [], [], [outcome.filter_lsns.get(message_id)]
        case _:
            assert_never(message)
    written: list[tuple[str, int]] = []
    stale: list[tuple[str, int]] = []
    lsns: list[int | None] = []
    for record_id, version in records:
        key = (namespace, record_id)
        winner = coalesced.winners.get(key)
        if (
            key in outcome.written
            and winner is not None
            and winner.version == version
            and winner.operation == operation
        ):
            written.append((record_id, version))
            lsns.append(outcome.written[key])
        else:
            stale.append((record_id, version))
    return written, stale, lsns


def _listed(records: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"id": record_id, "version": version} for record_id, version in records[:RECEIPT_MAX_LISTED]]


def _tenant_and_op(body: str) -> tuple[str | None, str | None]:
    """The tenant and op a dead letter's body names, if it is a JSON object that names them as strings."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    tenant, op = parsed.get("tenant"), parsed.get("op")
    return (tenant if isinstance(tenant, str) else None), (op if isinstance(op, str) and op in WRITE_OPS else None)
