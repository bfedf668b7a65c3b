"""bandit on the Python code and checkov on the translated template; every accepted finding is in one file.

Usage: ``python -m tools.security_checks --bandit BANDIT --checkov CHECKOV TEMPLATE...`` (the relay's
template as SAM translates it, and templates/tenant.yaml)

``tools/security_suppressions.toml`` lists each accepted finding with its reason: bandit by test id
and path glob, checkov by check id and resource glob (``Type.LogicalId``). The run fails on any
finding no entry accepts, and on any entry that accepts nothing (a fixed finding's entry must go,
so the file stays the list of what is accepted today). It prints the counts before and after the
suppressions, the figures docs/security.md quotes.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPRESSIONS = Path(__file__).with_name("security_suppressions.toml")
BANDIT_PATHS = ["shared", "functions", "cli", "local", "tools", "bench"]


@dataclass(frozen=True)
class Finding:
    tool: str
    rule: str  # bandit test id or checkov check id
    where: str  # path (bandit) or Type.LogicalId (checkov)
    line: int
    title: str

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
        Finding("bandit", r["test_id"], r["filename"].removeprefix("./"), r["line_number"], r["issue_text"])
        for r in report["results"]
    ]


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
    return 1 if open_findings or unused else 0


if __name__ == "__main__":
    sys.exit(main())
