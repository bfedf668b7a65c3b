"""In-memory indexes: dense rows in a growable float32 matrix, exact (brute-force) search with numpy.

Writes go through :meth:`IndexState.write`, which stamps the next log sequence number (LSN) of the
write's namespace, as Pinecone's serverless data plane numbers writes per namespace
(docs.pinecone.io/guides/index-data/check-data-freshness). With an indexing lag the write is queued
and applied to the readable state only once the lag has passed, in the order the writes were
committed, so reads see what a lagging Pinecone index would show and a namespace's indexed LSN
(``x-pinecone-max-indexed-lsn``) is the LSN of its last applied write. A namespace's counter
outlives the namespace (a namespace deleted and written again carries on from where it was), so no
receipt is ever issued twice. Each index keeps a journal of what was applied to which record, and
how (:data:`APPLIED_AS`), for tests that diagnose ordering.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from pinecone_emulator.filters import Predicate
from pinecone_emulator.records import Record, Sparse

DEFAULT_NAMESPACE = "__default__"
# Below this many matrix elements scores are computed in float64 (exact for tests); above, in float32 (fast).
EXACT_SCORING_ELEMENTS = 4_000_000

# How the request being carried out reached the store: "direct", "then-fault" (applied, then answered with
# an error or a dropped connection) or "held" (applied later on a timer); kept in each index's journal.
APPLIED_AS: ContextVar[str] = ContextVar("applied_as", default="direct")


def namespace_key(name: object) -> str:
    """The SDK omits the default namespace, sends "" or "__default__": all three are the same namespace."""
    if name is None or name == "":
        return DEFAULT_NAMESPACE
    if not isinstance(name, str):
        raise TypeError("namespace must be a string")
    return name


class NamespaceData:
    """The records of one namespace. Rows are kept dense: a delete moves the last row into the hole."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.vectors = np.zeros((16, dimension), dtype=np.float32)
        self.norms = np.zeros(16, dtype=np.float64)  # L2 norm of each row, kept so cosine needs no pass over rows
        self.ids: list[str] = []
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any] | None] = []
        self.sparse: list[Sparse | None] = []

    def __len__(self) -> int:
        return len(self.ids)

    def _grow(self, needed: int) -> None:
        capacity = self.vectors.shape[0]
        if needed <= capacity:
            return
        new_capacity = max(needed, capacity * 2)
        grown = np.zeros((new_capacity, self.dimension), dtype=np.float32)
        grown[: len(self.ids)] = self.vectors[: len(self.ids)]
        self.vectors = grown
        norms = np.zeros(new_capacity, dtype=np.float64)
        norms[: len(self.ids)] = self.norms[: len(self.ids)]
        self.norms = norms

    def put(self, record: Record) -> None:
        row = self.rows.get(record.id)
        if row is None:
            row = len(self.ids)
            self._grow(row + 1)
            self.ids.append(record.id)
            self.metadata.append(None)
            self.sparse.append(None)
            self.rows[record.id] = row
        if self.dimension:
            self.vectors[row] = record.values if record.values is not None else 0.0
            self.norms[row] = float(np.linalg.norm(self.vectors[row].astype(np.float64)))
        self.metadata[row] = record.metadata or None
        self.sparse[row] = record.sparse

    def put_many(self, records: Iterable[Record]) -> None:
        for record in records:
            self.put(record)

    def get(self, vector_id: str) -> Record | None:
        row = self.rows.get(vector_id)
        if row is None:
            return None
        return Record(
            id=vector_id,
            values=self.vectors[row].copy() if self.dimension else None,
            sparse=self.sparse[row],
            metadata=self.metadata[row],
        )

    def remove(self, vector_id: str) -> bool:
        row = self.rows.pop(vector_id, None)
        if row is None:
            return False
        last = len(self.ids) - 1
        if row != last:
            moved = self.ids[last]
            self.ids[row] = moved
            self.rows[moved] = row
            self.metadata[row] = self.metadata[last]
            self.sparse[row] = self.sparse[last]
            if self.dimension:
                self.vectors[row] = self.vectors[last]
                self.norms[row] = self.norms[last]
        self.ids.pop()
        self.metadata.pop()
        self.sparse.pop()
        return True

    def matching_rows(self, predicate: Predicate | None) -> np.ndarray:
        if predicate is None:
            return np.arange(len(self.ids))
        empty: dict[str, Any] = {}
        return np.fromiter(
            (row for row, md in enumerate(self.metadata) if predicate(md if md is not None else empty)),
            dtype=np.int64,
        )

    def record_bytes(self) -> int:
        """A rough storage size: 4 bytes per dense value plus sparse pairs and metadata."""
        dense = len(self.ids) * self.dimension * 4
        sparse = sum(12 * len(s.indices) for s in self.sparse if s is not None)
        return dense + sparse + 64 * len(self.ids)


def _sparse_dot(query: Sparse, stored: Sparse | None) -> float:
    if stored is None or stored.indices.size == 0 or query.indices.size == 0:
        return 0.0
    common, q_pos, s_pos = np.intersect1d(query.indices, stored.indices, assume_unique=True, return_indices=True)
    if common.size == 0:
        return 0.0
    return float(np.dot(query.values[q_pos].astype(np.float64), stored.values[s_pos].astype(np.float64)))


def score_rows(
    data: NamespaceData,
    rows: np.ndarray,
    metric: str,
    dense: np.ndarray | None,
    sparse: Sparse | None,
) -> np.ndarray:
    """Scores of *rows* against the query: cosine similarity, dot product, or squared euclidean distance."""
    scores = np.zeros(rows.shape[0], dtype=np.float64)
    if rows.size == 0:
        return scores
    if dense is not None and data.dimension:
        exact = rows.size * data.dimension <= EXACT_SCORING_ELEMENTS
        whole = rows.size == len(data.ids)
        matrix = data.vectors[: len(data.ids)] if whole else data.vectors[rows]
        norms = data.norms[: len(data.ids)] if whole else data.norms[rows]
        if exact:
            matrix = matrix.astype(np.float64)
            query = dense.astype(np.float64)
        else:
            query = dense.astype(np.float32)
        dots = matrix @ query
        if metric == "cosine":
            query_norm = float(np.linalg.norm(query))
            denominator = norms * query_norm
            with np.errstate(divide="ignore", invalid="ignore"):
                scores = np.where(denominator > 0, dots / np.where(denominator > 0, denominator, 1.0), 0.0)
        elif metric == "euclidean":
            if exact:
                diff = matrix - query
                scores = np.einsum("ij,ij->i", diff, diff)
            else:
                query_sq = float(np.dot(query.astype(np.float64), query.astype(np.float64)))
                scores = np.maximum(norms * norms + query_sq - 2.0 * dots.astype(np.float64), 0.0)
        else:
            scores = dots.astype(np.float64)
    if sparse is not None:
        scores = scores + np.fromiter((_sparse_dot(sparse, data.sparse[row]) for row in rows), dtype=np.float64)
    return scores


def top_k(rows: np.ndarray, scores: np.ndarray, k: int, *, ascending: bool, ids: list[str]) -> list[tuple[int, float]]:
    """The k best rows, best first; equal scores are ordered by id so results are deterministic."""
    if rows.size == 0:
        return []
    keyed = scores if ascending else -scores
    if k < rows.size:
        # take everything tied with the k-th score so the id tie-break is applied over the whole tie
        kth = np.partition(keyed, k - 1)[k - 1]
        candidates = np.nonzero(keyed <= kth)[0]
    else:
        candidates = np.arange(rows.size)
    ordered = sorted(candidates.tolist(), key=lambda i: (keyed[i], ids[rows[i]]))[:k]
    return [(int(rows[i]), float(scores[i])) for i in ordered]


@dataclass
class PendingWrite:
    committed_at: float  # the index's clock when the write was committed; readable once the lag in force has passed
    namespace: str
    lsn: int
    apply: Callable[[], None]


class Applied(NamedTuple):
    """One journal entry: an upsert or a delete by id, carried out on one record.

    ``metadata`` is the record's metadata as stored, whatever fields the client uses (the store
    never changes a metadata object in place, so the entry shares it rather than copying it).
    """

    at: float  # the emulator's monotonic clock
    op: str
    namespace: str
    id: str
    metadata: dict[str, Any] | None
    how: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "op": self.op, "id": self.id, "metadata": self.metadata, "how": self.how}


@dataclass
class IndexState:
    """One index: its control-plane description and its data."""

    name: str
    schema: dict[str, Any]
    deployment: dict[str, Any]
    deletion_protection: str = "disabled"
    tags: dict[str, str] | None = None
    read_capacity: dict[str, Any] | None = None
    source_collection: str | None = None
    source_backup_id: str | None = None
    cmek_id: str | None = None
    namespaces: dict[str, NamespaceData] = field(default_factory=dict)
    namespace_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    known_namespaces: set[str] = field(default_factory=set)
    lsns: dict[str, int] = field(default_factory=dict)  # namespace -> LSN of its last committed write
    indexed_lsns: dict[str, int] = field(default_factory=dict)  # namespace -> LSN of its last write reads see
    pending: deque[PendingWrite] = field(default_factory=deque)  # committed, not yet readable; oldest first
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)  # when the lag ends
    lock: threading.RLock = field(default_factory=threading.RLock)
    version: int = 0  # bumped on every applied change, for persistence
    ready_at: float = 0.0  # monotonic time from which the index is Ready (Initializing before)
    forced_state: str | None = None  # "InitializationFailed" / "Terminating" / "Disabled", set through the control API
    journal: deque[Applied] = field(default_factory=lambda: deque(maxlen=200_000))  # what was applied, oldest first

    @property
    def status(self) -> str:
        """Pinecone's status.state: Initializing until ``ready_at``, then Ready, unless a state was forced."""
        if self.forced_state is not None:
            return self.forced_state
        return "Ready" if time.monotonic() >= self.ready_at else "Initializing"

    @property
    def dense_field(self) -> dict[str, Any] | None:
        fields = self.schema.get("fields", {})
        value = fields.get("_values")
        return value if isinstance(value, dict) else None

    @property
    def has_sparse(self) -> bool:
        return "_sparse_values" in self.schema.get("fields", {})

    @property
    def dimension(self) -> int:
        dense = self.dense_field
        return int(dense["dimension"]) if dense else 0

    @property
    def metric(self) -> str:
        dense = self.dense_field
        return str(dense["metric"]) if dense else "dotproduct"

    @property
    def vector_type(self) -> str:
        return "dense" if self.dense_field else "sparse"

    @property
    def serves_vectors(self) -> bool:
        return self.dense_field is not None or self.has_sparse

    def namespace(self, name: str, *, create: bool = False) -> NamespaceData | None:
        data = self.namespaces.get(name)
        if data is None and create:
            data = NamespaceData(self.dimension)
            self.namespaces[name] = data
        return data

    def catch_up(self, lag_seconds: float) -> int:
        """Apply queued writes, oldest first, whose lag has passed; returns how many.

        The lag in force now decides, not the one in force when the write came: lowering it makes waiting
        writes readable sooner, and 0 makes them all readable."""
        now = self.clock()
        applied = 0
        while self.pending and (lag_seconds <= 0 or self.pending[0].committed_at + lag_seconds <= now):
            write = self.pending.popleft()
            write.apply()
            self.indexed_lsns[write.namespace] = write.lsn
            self.version += 1
            applied += 1
        return applied

    def write(self, namespace: str, apply: Callable[[], None], lag_seconds: float) -> int:
        """Commit a write to *namespace*; returns its LSN. With a lag it becomes readable only after *lag_seconds*.

        The caller holds the index's lock, so concurrent writes get distinct LSNs, in the order they commit."""
        lsn = self.lsns.get(namespace, 0) + 1
        self.lsns[namespace] = lsn
        self.pending.append(PendingWrite(self.clock(), namespace, lsn, apply))
        if lag_seconds <= 0:
            self.catch_up(0)
        return lsn

    def indexed_lsn(self, namespace: str) -> int:
        """The LSN of *namespace*'s last write that reads see (0 before its first)."""
        return self.indexed_lsns.get(namespace, 0)
