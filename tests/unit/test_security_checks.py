"""The security gate: a finding nobody accepted fails it, and so does an acceptance that no longer matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.security_checks import (
    FIGURES_BEGIN,
    FIGURES_END,
    Figures,
    Finding,
    Suppression,
    load_suppressions,
    verdict,
    write_figures,
)

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


FIGURES = Figures(
    bandit_version="1.9.4",
    checkov_version="3.3.30",
    bandit=[
        Finding("bandit", "B101", "shared/vector_relay/tenancy.py", 105, "Use of assert detected.", "LOW"),
        Finding("bandit", "B310", "local/relay_local/stack.py", 9, "Audit url open.", "MEDIUM"),
    ],
    checkov_passed=100,
    checkov_failed=15,
    templates=[".aws-sam/translated.json", "templates/tenant.yaml"],
    accepted=17,
    open=0,
)


def test_the_figures_are_written_between_the_markers_and_nowhere_else(tmp_path: Path) -> None:
    page = tmp_path / "security.md"
    page.write_text(f"before\n\n{FIGURES_BEGIN}\n| bandit | 60 findings |\n{FIGURES_END}\n\nafter\n")

    assert write_figures(page, FIGURES) is True

    text = page.read_text()
    assert text.startswith("before\n\n")
    assert text.endswith("\n\nafter\n")
    assert "60 findings" not in text
    assert "| bandit 1.9.4 | 2 findings: 0 high, 1 medium, 1 low; 1 in the shipped code (shared/, functions/) |" in text
    assert "| checkov 3.3.30 | 100 passed, 15 failed (.aws-sam/translated.json, templates/tenant.yaml) |" in text
    assert write_figures(page, FIGURES) is False  # the same run writes the same figures


def test_the_security_page_has_one_figures_block_and_a_page_without_one_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    assert text.count(FIGURES_BEGIN) == 1
    assert text.count(FIGURES_END) == 1
    page = tmp_path / "other.md"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs exactly one block"):
        write_figures(page, FIGURES)
