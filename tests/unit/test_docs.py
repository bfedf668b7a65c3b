"""The docs say what the code does: every error code and contract field is explained, the schema is current."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT
from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.contract.json_schema import render
from vector_relay.contract.messages import QueryMessage, UpsertRecord
from vector_relay.contract.parsing import ERROR_CODES

CONTRACT_DOC = (ROOT / "docs" / "contract.md").read_text()


def test_committed_json_schema_matches_the_models() -> None:
    committed = (ROOT / "docs" / "contract.schema.json").read_text()
    assert committed == render(), "the contract models changed: run `make schema`"


def test_schema_covers_every_message_kind() -> None:
    schema = json.loads(render())
    assert {"UpsertMessage", "DeleteMessage", "DeleteByFilterMessage", "PurgeTenantMessage", "QueryMessage"} <= set(
        schema["$defs"]
    )
    assert schema["$defs"]["UpsertRecord"]["additionalProperties"] is False


def test_every_error_code_is_explained_with_an_example() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (.+) \|$", CONTRACT_DOC, flags=re.MULTILINE))
    for code in ERROR_CODES:
        assert code in rows, f"docs/contract.md has no row for {code}"
        meaning, example = rows[code].split(" | ", 1)
        assert meaning.strip()
        assert example.strip()


def test_every_contract_field_is_documented() -> None:
    for model in (UpsertRecord, QueryMessage, DeadLetterAttributes):
        for name in model.model_fields:
            assert f"`{name}`" in CONTRACT_DOC or f"`records[].{name}`" in CONTRACT_DOC, f"{model.__name__}.{name}"
