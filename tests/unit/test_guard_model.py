"""tools/guard_model.py: the version guard's protocol, checked over every interleaving of a small model (issue 32).

Each exploration of the default bound takes about a second; ``python -m tools.guard_model --deep`` runs
the larger bounds by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tools.guard_model import DEFAULT, NO_DYNAMODB_DELAY, explore, main

# The shortest counterexample to the unconditional claim (docs/ordering.md quotes it).
OLD_PROTOCOL_TRACE = (
    "[clock 0] w0 receives m0 (a v1 upsert): invocation t0, lease until 2 (w0's clock reads -1)",
    "[clock 0] w1 receives m1 (a v2 delete): invocation t1, lease until 4 (w1's clock reads 1)",
    "[clock 0] w0 takes the claim lock until 1",
    "[clock 0] w0 reads a: absent; decides to claim it: v1 upsert (lease until 2 for t0)",
    "[clock 0] w0 writes its claim of a unconditionally: DynamoDB holds it (to apply later, or never); "
    "w0 times out: m0 back to the queue, the claim lock left to expire",
    "[clock 0] the clock ticks to 1",
    "[clock 1] w1 takes the claim lock until 4 (the one until 1 has expired by w1's clock, 2)",
    "[clock 1] w1 reads a: absent; decides to claim it: v2 delete (lease until 4 for t1)",
    "[clock 1] w1 writes its claim of a unconditionally: applied; w1 drops the claim lock",
    "[clock 1] DynamoDB applies the held claim of a, v1 upsert (lease until 2 for t0), "
    "over v2 delete (lease until 4 for t1)",
)


def test_the_compare_and_set_claim_keeps_both_invariants_in_the_default_bound() -> None:
    result = explore(DEFAULT)
    assert result.complete
    assert (result.invariant, result.violation) == (None, None)
    assert result.quiescent > 0  # runs in which every message was acknowledged were checked against the index
    assert result.states > 1_000


def test_the_compare_and_set_claim_needs_no_claim_lock() -> None:
    result = explore(dataclasses.replace(DEFAULT, lock=False))
    assert (result.invariant, result.violation) == (None, None)
    assert result.quiescent > 0


def test_an_unconditional_claim_applied_late_lowers_the_recorded_version() -> None:
    result = explore(dataclasses.replace(DEFAULT, protocol="old"))
    assert result.invariant == "I1"
    assert result.violation == (
        "I1: the recorded version of a went down, from v2 delete (lease until 4 for t1) "
        "to v1 upsert (lease until 2 for t0)"
    )
    assert result.trace == OLD_PROTOCOL_TRACE


def test_an_unconditional_claim_applied_late_brings_a_deleted_record_back_into_the_index() -> None:
    result = explore(dataclasses.replace(DEFAULT, protocol="old", check_recorded=False))
    assert result.invariant == "I2"
    assert result.violation == (
        "I2: every message is acknowledged and the index holds a v1, but the highest write of a is v2 delete"
    )
    assert any(
        step.endswith(
            "DynamoDB holds it (to apply later, or never); w0 times out: m0 back to the queue, "
            "the claim lock left to expire"
        )
        for step in result.trace
    )
    assert any("DynamoDB applies the held claim of a, v1 upsert" in step for step in result.trace)
    assert result.trace[-1].endswith("acknowledges m0")


def test_the_unconditional_claim_was_safe_only_under_the_lock_and_with_dynamodb_applying_claims_at_once() -> None:
    bounded = explore(dataclasses.replace(DEFAULT, protocol="old", faults=NO_DYNAMODB_DELAY))
    assert (bounded.invariant, bounded.violation) == (None, None)
    assert bounded.quiescent > 0
    unlocked = explore(dataclasses.replace(DEFAULT, protocol="old", lock=False, faults=NO_DYNAMODB_DELAY))
    assert unlocked.invariant == "I1"  # two workers read the same item, the older claim is written last


@pytest.mark.parametrize(
    ("mutation", "invariant", "last_step"),
    [
        # an older write claims the record after a newer one: the recorded version goes down
        ({"stale_check": False}, "I1", "w0 writes its claim of a if it is still v2 delete"),
        # a newer write claims the record under a live lease; the older one, held by Pinecone, lands last
        ({"lease_check": False}, "I2", "Pinecone applies the held write a v1 upsert"),
        # Pinecone applies a write until the sender's clock passes the lease, a faster clock claims before that
        ({"lease_covers_skew": False}, "I2", "Pinecone applies the held write a v1 upsert"),
    ],
)
def test_the_checker_finds_the_new_protocol_broken_without_each_of_its_rules(
    mutation: dict[str, bool], invariant: str, last_step: str
) -> None:
    result = explore(dataclasses.replace(DEFAULT, **mutation))  # type: ignore[arg-type]
    assert result.invariant == invariant
    assert last_step in result.trace[-1]


@pytest.mark.parametrize("lock", [True, False])
def test_a_blind_claim_first_then_compare_and_set_keeps_both_invariants(lock: bool) -> None:
    result = explore(dataclasses.replace(DEFAULT, protocol="blind", lock=lock))
    assert result.complete
    assert (result.invariant, result.violation) == (None, None)
    assert result.quiescent > 0
    # more behaviours than the compare-and-set alone: a blind claim may be applied, refused, late or twice
    assert result.states > explore(dataclasses.replace(DEFAULT, lock=lock)).states


@pytest.mark.parametrize(
    ("mutation", "invariant"),
    [
        # the blind claim's "no higher version" dropped: an older write claims over a newer one
        ({"stale_check": False}, "I1"),
        # its "lease ended" dropped: a newer write claims under a live lease, the older one lands last
        ({"lease_check": False}, "I2"),
    ],
)
def test_the_checker_finds_the_blind_claim_broken_without_each_of_its_conditions(
    mutation: dict[str, bool], invariant: str
) -> None:
    result = explore(dataclasses.replace(DEFAULT, protocol="blind", **mutation))  # type: ignore[arg-type]
    assert result.invariant == invariant
    blind_claims_applied = [step for step in result.trace if "without reading" in step and step.endswith(": applied")]
    assert blind_claims_applied  # the counterexample goes through a blind claim the condition should have refused


def test_the_command_prints_the_counterexample_and_fails_for_the_old_protocol(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--protocol", "old"]) == 1
    printed = capsys.readouterr().out
    assert "violation after 10 steps: I1: the recorded version of a went down" in printed
    assert f" 10. {OLD_PROTOCOL_TRACE[-1]}" in printed


@pytest.mark.parametrize("protocol", ["new", "blind"])
def test_the_command_succeeds_for_the_new_protocols_without_the_lock(
    protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--protocol", protocol, "--no-lock"]) == 0
    assert "no violation" in capsys.readouterr().out


def test_docs_ordering_shows_the_old_protocols_counterexample_as_the_checker_prints_it() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ordering.md").read_text()
    for number, step in enumerate(OLD_PROTOCOL_TRACE, start=1):
        assert f"{number:3}. {step}" in doc
