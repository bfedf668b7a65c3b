"""Poison reasons stay readable and bounded; DLQ attributes always fit SQS's limits and character set."""

from __future__ import annotations

import pytest

from vector_relay.contract.dead_letter_attributes import DeadLetterAttributes
from vector_relay.errors import MAX_DETAIL_CHARS, PoisonMessageError, Problem, join_within
from vector_relay.sqs.dead_letter import attributes_size, fit_attributes, sqs_safe
from vector_relay.sqs.limits import SQS_MAX_MESSAGE_BYTES


def test_detail_lists_every_reason_with_its_code() -> None:
    error = PoisonMessageError(
        [Problem("id_invalid", "records[0].id", "too long"), Problem("zero_vector", "", "zeros")]
    )
    assert error.detail == "[id_invalid] records[0].id: too long\n[zero_vector] zeros"
    assert error.error_code == "id_invalid"
    assert error.error_codes == ("id_invalid", "zero_vector")
    assert str(error) == error.detail


def test_a_poison_error_needs_a_reason() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        PoisonMessageError([])


def test_long_details_keep_whole_lines_and_count_the_rest() -> None:
    lines = [f"[dimension_mismatch] records[{i}].values: vector dimension 2 does not match 3" for i in range(500)]
    text = join_within(lines, MAX_DETAIL_CHARS)
    assert len(text) <= MAX_DETAIL_CHARS
    kept = text.splitlines()
    assert kept[:-1] == lines[: len(kept) - 1]
    assert kept[-1] == f"... and {500 - (len(kept) - 1)} more"


def test_characters_sqs_rejects_are_replaced() -> None:
    assert sqs_safe("key\x00with\x07control\ufffe") == "key\ufffdwith\ufffdcontrol\ufffd"
    assert sqs_safe("tab\tnewline\nemoji \U0001f600") == "tab\tnewline\nemoji \U0001f600"


def _attributes(detail: str) -> DeadLetterAttributes:
    return DeadLetterAttributes(
        error_code="metadata_too_large",
        error_detail=detail,
        source_queue="arn:aws:sqs:us-east-1:123456789012:ingest",
        source_message_id="m-1",
        receive_count=1,
    )


def test_attributes_are_unchanged_when_they_fit() -> None:
    encoded = fit_attributes("{}", _attributes("reason"))
    assert encoded["error_detail"]["StringValue"] == "reason"


def test_detail_is_shortened_so_a_near_limit_body_still_fits() -> None:
    body = "x" * (SQS_MAX_MESSAGE_BYTES - 300)
    encoded = fit_attributes(body, _attributes("é" * 2000))
    assert len(body.encode()) + attributes_size(encoded) <= SQS_MAX_MESSAGE_BYTES
    assert encoded["error_detail"]["StringValue"].endswith("...")
    assert encoded["error_code"]["StringValue"] == "metadata_too_large"
