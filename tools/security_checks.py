"""bandit on the Python code and checkov on the translated template; every accepted finding is in one file.

Usage: ``python -m tools.security_checks --bandit BANDIT --checkov CHECKOV TEMPLATE...`` (the relay's
template as SAM translates it, and templates/tenant.yaml)

``tools/security_suppressions.toml`` lists each accepted finding with its reason: bandit by test id
and path glob, checkov by check id and resource glob (``Type.LogicalId``). The run fails on any
finding no entry accepts, and on any entry that accepts nothing (a fixed finding's entry must go,
so the file stays the list of what is accepted today). It prints the counts before and after the
suppressions; with ``--figures docs/security.md`` it also writes them into that page, between its
``security-figures`` markers, so the page's figures are always the last run's and never typed by hand.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPRESSIONS = Path(__file__).with_name("security_suppressions.toml")
BANDIT_PATHS = ["shared", "functions", "cli", "local", "tools", "bench"]
SHIPPED_PATHS = ("shared/", "functions/")  # what Lambda runs (the layer and the handlers)
FIGURES_BEGIN = "<!-- security-figures: written by `make security` (tools/security_checks.py); do not edit -->"
FIGURES_END = "<!-- security-figures: end -->"


@dataclass(frozen=True)
class Finding:
    tool: str
    rule: str  # bandit test id or checkov check id
    where: str  # path (bandit) or Type.LogicalId (checkov)
    line: int
    title: str
    severity: str = ""  # bandit's LOW / MEDIUM / HIGH; checkov reports none

    def __str__(self) -> str:
        at = f"{self.where}:{self.line}" if self.line else self.where
        return f"{self.tool} {self.rule} {at}: {self.title}"


@dataclass(frozen=True)
class Suppression:
    tool: str
    rule: str
    patterns: tuple[str, ...]
    reason: str

    def accepts(self, finding: Finding) -> bool:
        return (
            finding.tool == self.tool
            and finding.rule == self.rule
            and any(fnmatch.fnmatchcase(finding.where, p) for p in self.patterns)
        )


def load_suppressions(path: Path = SUPPRESSIONS) -> list[Suppression]:
    data = tomllib.loads(path.read_text())
    entries: list[Suppression] = []
    for tool, key, where in (("bandit", "test", "paths"), ("checkov", "check", "resources")):
        for entry in data.get(tool, []):
            if not str(entry.get("reason", "")).strip():
                raise SystemExit(f"{path}: {tool} {entry.get(key)} has no reason")
            entries.append(Suppression(tool, entry[key], tuple(entry[where]), entry["reason"]))
    return entries


def bandit_findings(bandit: str) -> list[Finding]:
    run = subprocess.run([bandit, "-q", "-r", *BANDIT_PATHS, "-f", "json"], capture_output=True, text=True)
    if run.returncode not in (0, 1):
        raise SystemExit(f"bandit failed:\n{run.stderr}")
    report: dict[str, Any] = json.loads(run.stdout)
    if report.get("errors"):
        raise SystemExit(f"bandit could not read: {report['errors']}")
    return [
        Finding(
            "bandit",
            r["test_id"],
            r["filename"].removeprefix("./"),
            r["line_number"],
            r["issue_text"],
            r["issue_severity"],
        )
        for r in report["results"]
    ]


def tool_version(command: str) -> str:
    """``bandit 1.9.4`` / ``3.3.30``: the first line a tool's ``--version`` prints, its last word."""
    run = subprocess.run([command, "--version"], capture_output=True, text=True)
    return run.stdout.strip().splitlines()[0].split()[-1] if run.stdout.strip() else "?"


@dataclass(frozen=True)
class Figures:
    """What docs/security.md quotes from a run."""

    bandit_version: str
    checkov_version: str
    bandit: list[Finding]
    checkov_passed: int
    checkov_failed: int
    templates: list[str]
    accepted: int
    open: int

    def render(self) -> str:
        severities = {level: sum(f.severity == level for f in self.bandit) for level in ("HIGH", "MEDIUM", "LOW")}
        shipped = sum(f.where.startswith(SHIPPED_PATHS) for f in self.bandit)
        return "\n".join(
            [
                FIGURES_BEGIN,
                "",
                "| tool | result of the last `make security` |",
                "|---|---|",
                f"| bandit {self.bandit_version} | {len(self.bandit)} findings: {severities['HIGH']} high, "
                f"{severities['MEDIUM']} medium, {severities['LOW']} low; {shipped} in the shipped code "
                f"({', '.join(SHIPPED_PATHS)}) |",
                f"| checkov {self.checkov_version} | {self.checkov_passed} passed, {self.checkov_failed} failed "
                f"({', '.join(self.templates)}) |",
                f"| verdict | {self.accepted} accepted with a reason in `{SUPPRESSIONS.name}`, {self.open} open |",
                "",
                FIGURES_END,
            ]
        )


def write_figures(page: Path, figures: Figures) -> bool:
    """Put ``figures`` between the page's markers; True when that changed the page."""
    text = page.read_text()
    pattern = re.compile(re.escape(FIGURES_BEGIN) + ".*?" + re.escape(FIGURES_END), flags=re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{page}: needs exactly one block from {FIGURES_BEGIN!r} to {FIGURES_END!r}")
    updated = pattern.sub(lambda _: figures.render(), text)
    if updated != text:
        page.write_text(updated)
    return updated != text


def checkov_findings(checkov: str, template: Path) -> tuple[list[Finding], int]:
    run = subprocess.run(
        [checkov, "-f", str(template), "--framework", "cloudformation", "--skip-download", "-o", "json", "--quiet"],
        capture_output=True,
        text=True,
    )
    if run.returncode not in (0, 1) or not run.stdout.strip():
        raise SystemExit(f"checkov failed:\n{run.stderr}")
    report: dict[str, Any] = json.loads(run.stdout)
    if report["summary"].get("parsing_errors"):
        raise SystemExit(f"checkov could not parse {template}")
    failed = [
        Finding("checkov", r["check_id"], r["resource"], 0, r["check_name"]) for r in report["results"]["failed_checks"]
    ]
    return failed, int(report["summary"]["passed"])


def verdict(findings: list[Finding], suppressions: list[Suppression]) -> tuple[list[Finding], list[Suppression]]:
    """The findings nothing accepts, and the suppressions that accept nothing."""
    open_findings = [f for f in findings if not any(s.accepts(f) for s in suppressions)]
    unused = [s for s in suppressions if not any(s.accepts(f) for f in findings)]
    return open_findings, unused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bandit", required=True)
    parser.add_argument("--checkov", required=True)
    parser.add_argument("--figures", type=Path, help="A page with security-figures markers to write the figures into.")
    parser.add_argument("templates", type=Path, nargs="+")
    args = parser.parse_args(argv)
    suppressions = load_suppressions()
    bandit = bandit_findings(args.bandit)
    checkov: list[Finding] = []
    passed = 0
    for template in args.templates:
        failed, passed_here = checkov_findings(args.checkov, template)
        checkov += failed
        passed += passed_here
    open_findings, unused = verdict(bandit + checkov, suppressions)
    accepted = len(bandit) + len(checkov) - len(open_findings)
    print(
        f"bandit: {len(bandit)} findings; checkov: {passed} passed, {len(checkov)} failed; "
        f"{accepted} accepted in {SUPPRESSIONS.name}, {len(open_findings)} open"
    )
    for finding in open_findings:
        print(f"  open: {finding}")
    for suppression in unused:
        print(f"  unused suppression (remove it): {suppression.tool} {suppression.rule} {list(suppression.patterns)}")
    if args.figures is not None:
        figures = Figures(
            bandit_version=tool_version(args.bandit),
            checkov_version=tool_version(args.checkov),
            bandit=bandit,
            checkov_passed=passed,
            checkov_failed=len(checkov),
            templates=[str(template) for template in args.templates],
            accepted=accepted,
            open=len(open_findings),
        )
        changed = write_figures(args.figures, figures)
        print(f"{args.figures}: figures {'updated (commit the change)' if changed else 'unchanged'}")
    return 1 if open_findings or unused else 0


if __name__ == "__main__":
    sys.exit(main())
