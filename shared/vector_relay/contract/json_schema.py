"""The contract's JSON Schema, generated from the models: ``python -m vector_relay.contract.json_schema``.

``make schema`` writes it to ``docs/contract.schema.json``; a test fails when the committed file and
the models differ. The schema states the structure; the rules that need the deployment (tenant
registry, index dimension and metric, reply allow-list) and the value checks (finite numbers,
non-zero vectors, metadata types and size, the filter language) are enforced by validation and
listed in docs/contract.md.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.contract.messages import QueryMessage, WriteMessage
from vector_relay.contract.receipts import Receipt
from vector_relay.contract.replies import QueryReply


def contract_schema() -> dict[str, Any]:
    """One JSON Schema document with a definition per message kind of contract v1."""
    parts = {
        "WriteMessage": TypeAdapter(WriteMessage).json_schema(),
        "QueryMessage": QueryMessage.model_json_schema(),
        "QueryReply": TypeAdapter(QueryReply).json_schema(),
        "DeadLetterAttributes": DeadLetterAttributes.model_json_schema(),
        "Receipt": Receipt.model_json_schema(),
    }
    definitions: dict[str, Any] = {}
    for name, schema in parts.items():
        definitions.update(schema.pop("$defs", {}))
        definitions[name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:vector-relay:contract:v1",
        "title": "vector-relay message contract v1",
        "oneOf": [{"$ref": "#/$defs/WriteMessage"}, {"$ref": "#/$defs/QueryMessage"}],
        "$defs": definitions,
    }


def render() -> str:
    return json.dumps(contract_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")  # noqa: T201
