"""Pinecone's wire format: an upsert body byte for byte the SDK's, each record carrying its version."""

from __future__ import annotations

import json
from typing import Any

import orjson

from vector_relay.contract.fields import ValidationContext
from vector_relay.contract.messages import UpsertMessage, WriteMessage
from vector_relay.contract.parsing import parse_write_message
from vector_relay.pinecone.wire import encode_record, upsert_body, wire_record

CONTEXT = ValidationContext()


def msg(op: str, tenant: str = "acme", **fields: Any) -> WriteMessage:
    return parse_write_message(json.dumps({"schema_version": 1, "op": op, "tenant": tenant} | fields), CONTEXT)


def test_the_upsert_body_is_byte_for_byte_what_the_sdk_would_send() -> None:
    from pinecone._internal.data_plane_helpers import _vector_to_dict
    from pinecone._internal.http_client import _encode_json
    from pinecone._internal.vector_factory import VectorFactory

    message = msg(
        "upsert",
        records=[
            {"id": "a", "version": 3, "values": [0.1, 2.0, 1e-07], "metadata": {"k": "é", "n": 12, "tags": ["x"]}},
            {
                "id": "b",
                "version": 4,
                "values": [1.5, -0.25, 3],
                "sparse_values": {"indices": [7, 1], "values": [0.5, 2]},
            },
        ],
    )
    assert isinstance(message, UpsertMessage)
    wires = [wire_record(record) for record in message.records]
    sdk_form = [
        {k if k != "sparseValues" else "sparse_values": v for k, v in wire.items()} for wire in wires
    ]  # what a caller of Index.upsert(vectors=[...]) passes
    sdk_body = _encode_json(
        {"vectors": [_vector_to_dict(VectorFactory.build(v)) for v in sdk_form], "namespace": "ns-1"}
    )
    encoded = [encode_record(record).encoded for record in message.records]
    assert upsert_body("ns-1", encoded) == sdk_body
    assert upsert_body("", encoded[:1]) == _encode_json(
        {"vectors": [_vector_to_dict(VectorFactory.build(sdk_form[0]))]}
    )


def test_every_upserted_record_carries_its_version_in_its_metadata() -> None:
    from vector_relay.contract.fields import (
        MAX_METADATA_BYTES,
        MAX_VERSION,
        VERSION_METADATA_KEY,
        VERSION_METADATA_ROOM,
    )
    from vector_relay.contract.messages import UpsertRecord

    plain = UpsertRecord(id="a", version=MAX_VERSION, values=[1.0, 0.0])
    tagged = UpsertRecord(id="b", version=7, values=[1.0, 0.0], metadata={"k": "v"})

    assert wire_record(plain)["metadata"] == {VERSION_METADATA_KEY: str(MAX_VERSION)}  # exact, as a string
    assert wire_record(tagged)["metadata"] == {"k": "v", VERSION_METADATA_KEY: "7"}
    assert tagged.metadata == {"k": "v"}  # the message itself is not changed
    # the largest metadata a producer may send still fits Pinecone's limit with the key added
    biggest = {"t": "x" * (MAX_METADATA_BYTES - VERSION_METADATA_ROOM - len('{"t":""}'))}
    record = UpsertRecord(id="c", version=MAX_VERSION, values=[1.0, 0.0], metadata=biggest)
    assert len(orjson.dumps(wire_record(record)["metadata"])) <= MAX_METADATA_BYTES
