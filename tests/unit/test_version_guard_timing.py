"""The version guard's claim lock outlasts any DynamoDB call its holder can make (docs/ordering.md)."""

from __future__ import annotations

from vector_relay.aws_clients import GUARD_CONFIG
from vector_relay.ingest.guard_records import LOCK_SECONDS, LOCK_WAIT_SECONDS, LOCK_WRITE_MARGIN_SECONDS, RecordState


def test_a_claim_write_sent_within_the_margin_ends_before_the_lock_does() -> None:
    attempts = GUARD_CONFIG.retries["total_max_attempts"]  # botocore reads "max_attempts" as retries
    assert attempts == 1  # with retries, their backoff (up to 2 s for throttling) would count too
    longest_call = attempts * (GUARD_CONFIG.connect_timeout + GUARD_CONFIG.read_timeout)
    assert 2 * longest_call <= LOCK_WRITE_MARGIN_SECONDS
    assert LOCK_SECONDS > LOCK_WRITE_MARGIN_SECONDS
    assert LOCK_WAIT_SECONDS < LOCK_SECONDS


def test_a_record_state_reads_back_as_written() -> None:
    state = RecordState(2**63 - 1, "delete", 1_795_804_567_464, ("a" * 32, "b" * 32))
    assert RecordState.parse(state.format()) == state
    assert state.format() == f"{2**63 - 1} delete 1795804567464 {'a' * 32} {'b' * 32}"
