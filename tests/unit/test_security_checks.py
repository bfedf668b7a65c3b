"""The security gate: a finding nobody accepted fails it, and so does an acceptance that no longer matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.security_checks import Finding, Suppression, load_suppressions, verdict

B101 = Finding("bandit", "B101", "shared/vector_relay/tenancy.py", 105, "Use of assert detected.")
VPC = Finding("checkov", "CKV_AWS_117", "AWS::Lambda::Function.IngestFunction", 0, "Lambda in a VPC")


def test_an_unaccepted_finding_is_open() -> None:
    accepted = [Suppression("bandit", "B101", ("shared/vector_relay/*.py",), "invariants")]
    open_findings, unused = verdict([B101, VPC], accepted)
    assert (open_findings, unused) == ([VPC], [])


def test_an_acceptance_that_matches_nothing_is_reported_for_removal() -> None:
    stale = Suppression("checkov", "CKV_AWS_117", ("AWS::Lambda::Function.GoneFunction",), "was a thing")
    open_findings, unused = verdict([VPC], [stale])
    assert (open_findings, unused) == ([VPC], [stale])


def test_tool_rule_and_place_must_all_match() -> None:
    other_tool = Suppression("checkov", "B101", ("shared/vector_relay/*.py",), "r")
    other_rule = Suppression("bandit", "B311", ("shared/vector_relay/*.py",), "r")
    other_place = Suppression("bandit", "B101", ("local/*",), "r")
    assert not any(s.accepts(B101) for s in (other_tool, other_rule, other_place))


def test_the_project_s_list_gives_a_reason_for_every_entry() -> None:
    entries = load_suppressions()
    assert entries
    assert all(len(entry.reason) > 20 for entry in entries)


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[bandit]]\ntest = "B101"\npaths = ["x"]\nreason = " "\n')
    with pytest.raises(SystemExit, match="has no reason"):
        load_suppressions(path)
