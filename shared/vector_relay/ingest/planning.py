"""Turn a batch of valid write messages into as few Pinecone requests as Pinecone allows.

Rules, per namespace:

* **Highest version wins inside the batch.** For each record id, only the write with the highest
  ``version`` is sent (an upsert followed by a later-versioned delete of the same id is a
  delete). On equal versions the later message in the batch wins. A message whose writes were all
  superseded still depends on the winner: it is acknowledged only if the winning request succeeds,
  so a write is never dropped in favour of one that then fails.
* **Filter operations keep their place.** ``delete_by_filter`` and ``purge_tenant`` split the
  namespace's writes into segments; a segment's writes are sent before the operation that follows
  it, and the next segment's after it. A winning write is sent in the segment where it appears.
* **Packing.** Upserts of a segment go into requests of at most 1,000 records and at most
  :data:`MAX_UPSERT_REQUEST_BYTES`, measured on the bytes that are sent; deletes by id
  into requests of at most 1,000 ids.

**Sizes come from the wire.** Records arrive encoded for the transport
(:func:`vector_relay.pinecone.wire.encode_upsert`, as soon as the message is valid); the planner
packs them by the size each adds to a request and the request's own overhead, both from
:mod:`vector_relay.pinecone.wire`, so the limit is measured on the bytes that are sent.

The result is a :class:`WritePlan`: for each namespace, a list of stages run one after another;
the requests of one stage are independent and may run concurrently.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

from vector_relay.contract.messages import (
    DeleteByFilterMessage,
    DeleteMessage,
    PurgeTenantMessage,
    UpsertMessage,
    WriteMessage,
)
from vector_relay.pinecone.wire import EncodedRecord, EncodedUpsert, encode_upsert, request_overhead

# Pinecone's limits on one request, defined here only (docs.pinecone.io/reference/api/database-limits;
# the OpenAPI spec's UpsertRequest.vectors and DeleteRequest.ids maxItems).
MAX_RECORDS_PER_REQUEST = 1000
MAX_IDS_PER_DELETE = 1000
# Pinecone's limit is "2 MB" per upsert request; stay under the decimal reading of it.
MAX_UPSERT_REQUEST_BYTES = 2_000_000

RequestKind = Literal["upsert", "delete_ids", "delete_by_filter", "delete_all"]


type PlannableWrite = WriteMessage | EncodedUpsert


@dataclass(slots=True)
class PlannedRequest:
    """One Pinecone call, with the messages whose fate depends on it.

    ``origins`` maps each message that supplied a record to that record's position(s) here, so a
    rejected request can be split by message. ``dependents`` are messages whose writes were
    superseded by a record of this request: they succeed or fail with it.
    """

    kind: RequestKind
    namespace: str
    records: list[EncodedRecord] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    filter: dict[str, Any] | None = None
    origins: dict[str, list[int]] = field(default_factory=dict)
    dependents: set[str] = field(default_factory=set)
    size_bytes: int = 0

    @property
    def message_ids(self) -> set[str]:
        """Every message whose outcome this request decides."""
        return set(self.origins) | self.dependents

    def split_by_origin(self) -> tuple[PlannedRequest, PlannedRequest]:
        """Two requests, each with about half of the originating messages (used to find a rejected one)."""
        origins = list(self.origins)
        half = len(origins) // 2
        return self._subset(origins[:half]), self._subset(origins[half:])

    def _subset(self, messages: Sequence[str]) -> PlannedRequest:
        part = PlannedRequest(kind=self.kind, namespace=self.namespace, filter=self.filter)
        for message_id in messages:
            positions = self.origins[message_id]
            match self.kind:
                case "upsert":
                    part.origins[message_id] = _take(self.records, positions, part.records)
                case "delete_ids":
                    part.origins[message_id] = _take(self.ids, positions, part.ids)
                case "delete_by_filter" | "delete_all":
                    part.origins[message_id] = []  # one message, no records: never split, nothing to take
                case _:
                    assert_never(self.kind)
        part.dependents = set(self.dependents)  # a superseded message is retried if any part fails
        return part


def _take[T](items: Sequence[T], positions: Iterable[int], into: list[T]) -> list[int]:
    """Append the ``items`` at ``positions`` to ``into``; where they are there."""
    start = len(into)
    into.extend(items[position] for position in positions)
    return list(range(start, len(into)))


@dataclass(slots=True)
class WritePlan:
    """For each namespace, stages in order; the requests in one stage are independent."""

    stages: dict[str, list[list[PlannedRequest]]] = field(default_factory=dict)

    def requests(self) -> Iterable[PlannedRequest]:
        for stages in self.stages.values():
            for stage in stages:
                yield from stage


@dataclass(slots=True)
class Winner:
    """The write of one record id that the batch will send: the highest version, and the messages it supersedes."""

    namespace: str
    segment: int
    order: int
    version: int
    message_id: str
    record: EncodedRecord | None  # None for a delete
    record_id: str
    superseded: set[str] = field(default_factory=set)

    @property
    def operation(self) -> str:
        return "delete" if self.record is None else "upsert"

    @property
    def message_ids(self) -> set[str]:
        return self.superseded | {self.message_id}

    def same_write(self, other: Winner) -> bool:
        """Whether ``other`` is this write (the same message's version and operation of the record)."""
        return (self.message_id, self.version, self.operation) == (other.message_id, other.version, other.operation)


@dataclass(slots=True)
class Coalesced:
    """A batch reduced to one winning write per (namespace, id), plus the filter operations in their places."""

    winners: dict[tuple[str, str], Winner] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    filter_ops: dict[str, list[tuple[int, str, DeleteByFilterMessage | PurgeTenantMessage]]] = field(
        default_factory=dict
    )

    def only(self, namespace: str) -> Coalesced:
        """The part of the batch that writes ``namespace``."""
        return Coalesced(
            winners={key: winner for key, winner in self.winners.items() if key[0] == namespace},
            segments={namespace: self.segments[namespace]} if namespace in self.segments else {},
            filter_ops={namespace: self.filter_ops[namespace]} if namespace in self.filter_ops else {},
        )


def coalesce(messages: Sequence[tuple[str, str, PlannableWrite]]) -> Coalesced:
    """Keep the highest version of each (namespace, id); note where the filter operations fall."""
    batch = Coalesced()
    order = 0
    for message_id, namespace, message in messages:
        segment = batch.segments.setdefault(namespace, 0)
        records: Iterable[tuple[str, int, EncodedRecord | None]]
        match message:
            case DeleteByFilterMessage() | PurgeTenantMessage():
                batch.filter_ops.setdefault(namespace, []).append((segment, message_id, message))
                batch.segments[namespace] = segment + 1
                continue
            case UpsertMessage() | EncodedUpsert():
                encoded = encode_upsert(message)
                assert isinstance(encoded, EncodedUpsert)
                records = ((r.id, r.version, r) for r in encoded.records)
            case DeleteMessage():
                records = ((r.id, r.version, None) for r in message.records)
            case _:
                assert_never(message)
        for record_id, version, record in records:
            order += 1
            key = (namespace, record_id)
            current = batch.winners.get(key)
            candidate = Winner(namespace, segment, order, version, message_id, record, record_id)
            if current is None:
                batch.winners[key] = candidate
            elif version >= current.version:
                candidate.superseded = current.superseded | {current.message_id}
                batch.winners[key] = candidate
            else:
                current.superseded.add(message_id)
    return batch


def pack(batch: Coalesced, *, exclude: Collection[tuple[str, str]] = ()) -> WritePlan:
    """The requests for the winners (except those in ``exclude``) and the filter operations, in stages."""
    plan = WritePlan()
    by_segment: dict[tuple[str, int], list[Winner]] = {}
    for key, winner in batch.winners.items():
        if key not in exclude:
            by_segment.setdefault((winner.namespace, winner.segment), []).append(winner)
    for namespace, last_segment in batch.segments.items():
        stages: list[list[PlannedRequest]] = []
        ops = batch.filter_ops.get(namespace, [])
        for segment in range(last_segment + 1):
            writes = sorted(by_segment.get((namespace, segment), []), key=lambda w: w.order)
            stage = [*_pack_upserts(namespace, writes), *_pack_deletes(namespace, writes)]
            if stage:
                stages.append(stage)
            if segment < len(ops):
                stages.append([_filter_request(namespace, *ops[segment][1:])])
        plan.stages[namespace] = stages
    return plan


def request_keys(request: PlannedRequest) -> list[tuple[str, str]]:
    """The (namespace, id) of every record an upsert or delete-by-id request writes (none for filter ops)."""
    match request.kind:
        case "upsert":
            return [(request.namespace, record.id) for record in request.records]
        case "delete_ids":
            return [(request.namespace, record_id) for record_id in request.ids]
        case "delete_by_filter" | "delete_all":
            return []
        case _:
            assert_never(request.kind)


def narrow(
    request: PlannedRequest, winners: Mapping[tuple[str, str], Winner], keep: Collection[tuple[str, str]]
) -> PlannedRequest | None:
    """``request`` with only the records in ``keep`` (None if that is none of them); filter ops pass unchanged."""
    match request.kind:
        case "upsert":
            repack = _pack_upserts
        case "delete_ids":
            repack = _pack_deletes
        case "delete_by_filter" | "delete_all":
            return request
        case _:
            assert_never(request.kind)
    keys = request_keys(request)
    if all(key in keep for key in keys):
        return request
    chosen = sorted((winners[key] for key in keys if key in keep), key=lambda w: w.order)
    packed = repack(request.namespace, chosen)
    assert len(packed) <= 1, "a part of a planned request fits in one request"
    return packed[0] if packed else None


def one_request(namespace: str, writes: list[Winner]) -> PlannedRequest:
    """The one request carrying ``writes`` (all upserts or all deletes, in batch order), packed as :func:`pack` does.

    For writes chosen to fill exactly one request (:mod:`vector_relay.ingest.early_writes`); more
    than one request's worth is a caller's error.
    """
    deletes = bool(writes) and writes[0].record is None
    packed = _pack_deletes(namespace, writes) if deletes else _pack_upserts(namespace, writes)
    if len(packed) != 1 or sum(len(r.records) + len(r.ids) for r in packed) != len(writes):
        raise ValueError(f"{len(writes)} writes of one kind do not make exactly one request")
    return packed[0]


def _pack_upserts(namespace: str, writes: list[Winner]) -> list[PlannedRequest]:
    first = next((winner.record for winner in writes if winner.record is not None), None)
    overhead = request_overhead(namespace, first.transport if first is not None else "rest")
    requests: list[PlannedRequest] = []
    current: PlannedRequest | None = None
    for winner in writes:
        if winner.record is None:
            continue
        size = winner.record.size
        if (
            current is None
            or len(current.records) >= MAX_RECORDS_PER_REQUEST
            or current.size_bytes + size > MAX_UPSERT_REQUEST_BYTES
        ):
            current = PlannedRequest(kind="upsert", namespace=namespace, size_bytes=overhead)
            requests.append(current)
        current.origins.setdefault(winner.message_id, []).append(len(current.records))
        current.records.append(winner.record)
        current.size_bytes += size
        current.dependents |= winner.superseded - {winner.message_id}
    return requests


def _pack_deletes(namespace: str, writes: list[Winner]) -> list[PlannedRequest]:
    requests: list[PlannedRequest] = []
    for winner in writes:
        if winner.record is not None:
            continue
        if not requests or len(requests[-1].ids) >= MAX_IDS_PER_DELETE:
            requests.append(PlannedRequest(kind="delete_ids", namespace=namespace))
        current = requests[-1]
        current.origins.setdefault(winner.message_id, []).append(len(current.ids))
        current.ids.append(winner.record_id)
        current.dependents |= winner.superseded - {winner.message_id}
    return requests


def _filter_request(
    namespace: str, message_id: str, message: DeleteByFilterMessage | PurgeTenantMessage
) -> PlannedRequest:
    match message:
        case PurgeTenantMessage():
            return PlannedRequest(kind="delete_all", namespace=namespace, origins={message_id: []})
        case DeleteByFilterMessage():
            return PlannedRequest(
                kind="delete_by_filter", namespace=namespace, filter=message.filter, origins={message_id: []}
            )
        case _:
            assert_never(message)
