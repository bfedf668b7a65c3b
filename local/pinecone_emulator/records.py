"""Validation of the records a client sends, with the limits and messages of the real service (research §6)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pinecone_emulator.wire import ApiError

MAX_VECTORS_PER_UPSERT = 1000
MAX_UPSERT_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LENGTH = 512
MAX_DIMENSION = 20_000
MAX_SPARSE_VALUES = 2048
MAX_TOP_K = 10_000
MAX_IDS_PER_REQUEST = 1000
MAX_SPARSE_INDEX = 2**32 - 1
MIN_NONZERO = 1e-8


@dataclass(slots=True)
class Sparse:
    indices: np.ndarray  # uint32 as int64, sorted
    values: np.ndarray  # float32

    def to_json(self) -> dict[str, list[Any]]:
        return {"indices": self.indices.tolist(), "values": float32_list(self.values)}


@dataclass(slots=True)
class Record:
    id: str
    values: np.ndarray | None  # float32, None for sparse-only records
    sparse: Sparse | None
    metadata: dict[str, Any] | None


def bad(message: str) -> ApiError:
    return ApiError(400, message)


def float32_list(values: np.ndarray) -> list[float]:
    """Float32 values as the shortest decimals that round-trip, the way the service prints them."""
    if values.size == 0:
        return []
    return values.astype(str).astype(np.float64).tolist()  # type: ignore[no-any-return]


def validate_id(value: object, what: str = "Vector ID") -> str:
    if not isinstance(value, str):
        raise bad(f"{what} must be a string")
    if not value:
        raise bad(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise bad(f"{what} must be {MAX_ID_LENGTH} characters or less, got {len(value)} characters")
    if not value.isascii() or "\x00" in value:
        raise bad(f"{what} must be ASCII and must not contain NUL characters: '{value}'")
    return value


def parse_dense(values: object, vector_id: str) -> np.ndarray:
    if not isinstance(values, list):
        raise bad(f"Vector values for ID '{vector_id}' must be an array of numbers")
    if len(values) > MAX_DIMENSION:
        raise bad(f"Vector dimension {len(values)} exceeds the maximum of {MAX_DIMENSION}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad(f"Vector values for ID '{vector_id}' must be an array of numbers") from None
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise bad(f"Vector values for ID '{vector_id}' must be finite numbers")
    return array.astype(np.float32)


def parse_sparse(payload: object, vector_id: str) -> Sparse:
    if not isinstance(payload, dict):
        raise bad(f"Sparse values for ID '{vector_id}' must be an object with 'indices' and 'values'")
    indices, values = payload.get("indices"), payload.get("values")
    if not isinstance(indices, list) or not isinstance(values, list):
        raise bad(f"Sparse values for ID '{vector_id}' must have 'indices' and 'values' arrays")
    if len(indices) != len(values):
        raise bad(
            f"Sparse vector for ID '{vector_id}' has {len(indices)} indices and {len(values)} values; "
            "they must be the same length"
        )
    if len(indices) > MAX_SPARSE_VALUES:
        raise bad(f"Sparse vector size {len(indices)} exceeds the maximum size of {MAX_SPARSE_VALUES}")
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_SPARSE_INDEX for i in indices):
        raise bad(f"Sparse vector indices for ID '{vector_id}' must be integers between 0 and {MAX_SPARSE_INDEX}")
    if len(set(indices)) != len(indices):
        raise bad(f"Sparse vector for ID '{vector_id}' contains duplicate indices")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise bad(f"Sparse vector values for ID '{vector_id}' must be finite numbers")
    order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")
    return Sparse(
        indices=np.asarray(indices, dtype=np.int64)[order],
        values=np.asarray(values, dtype=np.float32)[order],
    )


def _metadata_value(value: object, key: str) -> object:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise bad(f"Metadata value for field '{key}' must be a finite number")
        return float(value)  # stored as 64-bit floats
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    shown = json.dumps(value, separators=(",", ":"))
    raise bad(f"Metadata value must be a string, number, boolean or list of strings, got '{shown}' for field '{key}'")


def parse_metadata(payload: object, *, strip_nulls: bool = True) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise bad("Metadata must be an object")
    cleaned: dict[str, Any] = {}
    for key, value in payload.items():
        if key.startswith("$"):
            raise bad(f"Metadata field names must not start with '$': '{key}'")
        if value is None:
            if strip_nulls:
                continue
            cleaned[key] = None
            continue
        cleaned[key] = _metadata_value(value, key)
    size = len(json.dumps(cleaned, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise bad(f"metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes per vector")
    return cleaned


def check_dense_nonzero(values: np.ndarray, vector_id: str) -> None:
    if not np.any(np.abs(values) >= MIN_NONZERO):
        raise bad(
            f"Dense vectors must contain at least one non-zero value. Vector ID '{vector_id}' contains only zeros"
        )


def check_dimension(values: np.ndarray, dimension: int) -> None:
    if values.shape[0] != dimension:
        raise bad(f"Vector dimension {values.shape[0]} does not match the dimension of the index {dimension}")


def parse_top_k(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad("topK must be an integer")
    if value < 1 or value > MAX_TOP_K:
        raise bad(f"Invalid value for topK: {value}. topK must be between 1 and {MAX_TOP_K}")
    return value


def dense_block(vectors: list[Any], dimension: int | None) -> np.ndarray | None:
    """Every record's dense values as one float32 matrix, when all of them are valid; else None.

    ``dimension`` is the index's, None for an index without dense values. One numpy conversion for
    the whole request instead of one per record (the emulator's upsert was a third numpy per-record
    overhead). Anything unusual (a missing or ragged array, a wrong dimension, a non-finite or
    all-zero vector) returns None, and :func:`parse_record` finds the record at fault and says what
    Pinecone says.
    """
    if dimension is None:
        return None
    try:
        rows = [raw["values"] for raw in vectors]
        if not all(type(row) is list and len(row) == dimension for row in rows):
            return None
        block = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        return None
    if block.ndim != 2 or not np.isfinite(block).all() or not (np.abs(block) >= MIN_NONZERO).any(axis=1).all():
        return None
    return block.astype(np.float32)


def parse_record(raw: object, *, dimension: int | None, metric: str, dense: np.ndarray | None = None) -> Record:
    """One record of an upsert into an index of ``dimension`` (None: sparse only) and ``metric``;
    ``dense`` is its values already checked by :func:`dense_block`."""
    if not isinstance(raw, dict):
        raise bad("Each vector must be an object with an 'id'")
    vector_id = validate_id(raw.get("id"))
    values_raw = raw.get("values", [])
    sparse_raw = raw.get("sparseValues")
    sparse = parse_sparse(sparse_raw, vector_id) if sparse_raw is not None else None
    values: np.ndarray | None = None
    if dimension is not None:
        if dense is not None:
            values = dense
        else:
            values = parse_dense(values_raw, vector_id)
            check_dimension(values, dimension)
            check_dense_nonzero(values, vector_id)
        if sparse is not None and sparse.indices.size and metric != "dotproduct":  # however the values were read
            raise bad(
                f"Sparse values are only supported for indexes with the dotproduct metric; this index uses {metric}"
            )
    else:
        if isinstance(values_raw, list) and values_raw:
            raise bad(f"Vector ID '{vector_id}' has dense values, but the index is sparse; send sparseValues only")
        if sparse is None or sparse.indices.size == 0:
            raise bad(f"Sparse vector for ID '{vector_id}' must contain at least one value")
        if not np.any(np.abs(sparse.values) >= 1e-8):
            raise bad(
                f"Sparse vectors must contain at least one non-zero value. Vector ID '{vector_id}' contains only zeros"
            )
    metadata_raw = raw.get("metadata")
    metadata = parse_metadata(metadata_raw) if metadata_raw is not None else None
    unknown = set(raw) - {"id", "values", "sparseValues", "metadata"}
    if unknown:
        raise bad(f"Unknown field(s) in vector '{vector_id}': {', '.join(sorted(unknown))}")
    return Record(id=vector_id, values=values, sparse=sparse, metadata=metadata or None)
