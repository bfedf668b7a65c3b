"""Pinecone's wire format for upserts: a record as the request carries it, its size there, the REST body.

**Encoded once.** An upsert's records are encoded to what Pinecone receives as soon as the message
is valid (:func:`encode_upsert`), and their float lists are let go. Over REST that is each record's
JSON, and the request body is those bytes joined (:func:`upsert_body`), byte for byte what the
SDK's ``AsyncIndex.upsert`` would send; over gRPC it is the SDK's dict form of a ``Vector`` message,
with that message's exact protobuf size (:func:`grpc_vector_size`). So the planner
(:mod:`vector_relay.ingest.planning`) measures Pinecone's request limit on exactly the bytes that
are sent, each record is encoded once, and a batch holds bytes rather than millions of Python
floats (a quarter of the memory, nothing for the garbage collector to walk). The data plane
(:mod:`vector_relay.pinecone.data_plane`) sends these encodings as they are.

This module does not import the SDK (a unit test holds :func:`upsert_body` to the SDK's own
encoding, and the gRPC sizes to the protobuf messages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from vector_relay.contract.fields import VERSION_METADATA_KEY
from vector_relay.contract.messages import UpsertMessage, UpsertRecord, WriteMessage

type Transport = Literal["rest", "grpc"]


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """An upsert record ready to send, its version in its metadata, and the bytes it adds to a request.

    Over REST ``encoded`` is its JSON in the request body; over gRPC ``grpc`` is the SDK's dict form
    (the SDK's gRPC client builds the protobuf message) and ``size`` that message's exact size.
    """

    id: str
    version: int
    metadata: dict[str, Any] | None  # the producer's, for the tenant's schema checks
    size: int
    encoded: bytes = b""
    grpc: dict[str, Any] | None = None

    @property
    def transport(self) -> Transport:
        return "grpc" if self.grpc is not None else "rest"


@dataclass(frozen=True, slots=True)
class EncodedUpsert:
    """A valid upsert message whose records are encoded (:func:`encode_upsert`)."""

    tenant: str
    records: tuple[EncodedRecord, ...]
    op: Literal["upsert"] = "upsert"


def wire_record(record: UpsertRecord) -> dict[str, Any]:
    """A record as Pinecone's upsert request carries it (the SDK's wire form), its version in its metadata."""
    wire: dict[str, Any] = {"id": record.id, "values": record.values if record.values is not None else []}
    if record.sparse_values is not None:
        wire["sparseValues"] = {"indices": record.sparse_values.indices, "values": record.sparse_values.values}
    version = str(record.version)
    wire["metadata"] = (
        {**record.metadata, VERSION_METADATA_KEY: version} if record.metadata else {VERSION_METADATA_KEY: version}
    )
    return wire


def encode_record(record: UpsertRecord, transport: Transport = "rest") -> EncodedRecord:
    """``record`` as one vector of an upsert request on ``transport``, and its size there."""
    wire = wire_record(record)
    if transport == "grpc":
        if "sparseValues" in wire:
            wire["sparse_values"] = wire.pop("sparseValues")
        size = _field(1, grpc_vector_size(wire))
        return EncodedRecord(record.id, record.version, record.metadata, size, grpc=wire)
    encoded = orjson.dumps(wire)
    return EncodedRecord(record.id, record.version, record.metadata, len(encoded) + 1, encoded)  # + its comma


def encode_upsert[M: WriteMessage | EncodedUpsert](message: M, transport: Transport = "rest") -> M | EncodedUpsert:
    """An upsert with its records encoded for ``transport``; other messages unchanged.

    Over REST the message's float lists can be freed once encoded; over gRPC the SDK takes them.
    """
    if isinstance(message, UpsertMessage):
        return EncodedUpsert(message.tenant, tuple(encode_record(record, transport) for record in message.records))
    return message


def request_overhead(namespace: str, transport: Transport) -> int:
    """Bytes of an upsert request on ``transport`` before its records."""
    if transport == "grpc":
        return _field(2, len(namespace.encode())) if namespace else 0
    return len(upsert_body(namespace, []))


def upsert_body(namespace: str, encoded: Sequence[bytes]) -> bytes:
    """The body of ``POST /vectors/upsert`` for records encoded by :func:`encode_record`, byte for byte the SDK's."""
    tail = b'],"namespace":' + orjson.dumps(namespace) + b"}" if namespace else b"]}"
    parts = [b'{"vectors":[']
    for record in encoded:
        parts += (record, b",")
    parts[-1 if encoded else len(parts) :] = [tail]  # the last comma becomes the tail
    return b"".join(parts)  # one copy of the records' bytes (a request can hold 2 MB of them)


# Sizes of protobuf encodings (proto3, the UpsertRequest of Pinecone's VectorService): a record's
# message is what the SDK's gRPC client sends, so a request's size is known before it is built.
def _varint(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _field(number: int, length: int) -> int:
    """A length-delimited field: its key, its length, its bytes."""
    return _varint(number << 3) + _varint(length) + length


def _value_size(value: Any) -> int:
    """A google.protobuf.Value holding ``value``."""
    if isinstance(value, bool):
        return 2
    if isinstance(value, int | float):
        return 9
    if isinstance(value, str):
        return _field(3, len(value.encode()))
    if isinstance(value, list):
        return _field(6, sum(_field(1, _value_size(item)) for item in value))
    return 2  # null


def _struct_size(values: dict[str, Any]) -> int:
    return sum(_field(1, _field(1, len(key.encode())) + _field(2, _value_size(value))) for key, value in values.items())


def grpc_vector_size(wire: dict[str, Any]) -> int:
    """Bytes of a Vector message (id 1, values 2, metadata 3, sparse_values 4) for the SDK's dict form."""
    size = _field(1, len(wire["id"].encode()))
    if wire["values"]:
        size += _field(2, 4 * len(wire["values"]))
    if wire.get("metadata"):
        size += _field(3, _struct_size(wire["metadata"]))
    sparse = wire.get("sparse_values")
    if sparse is not None:
        indices = sum(_varint(i) for i in sparse["indices"])
        size += _field(4, _field(1, indices) + _field(2, 4 * len(sparse["values"])))
    return size
