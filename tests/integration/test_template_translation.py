"""What AWS deploys, not only what the SAM source says: SAM's policy templates expand to no wildcard action."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tools.template_rules import check_translated


def translate(tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "translated.json"
    subprocess.run(
        [str(ROOT / ".venv-sam" / "bin" / "python"), "tools/sam_to_cfn.py", "template.yaml", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.read_text())


def test_generated_iam_policies_have_no_wildcard_actions(tmp_path: Path) -> None:
    translated = translate(tmp_path)
    assert check_translated(translated) == []
    roles = [r for r in translated["Resources"].values() if r["Type"] == "AWS::IAM::Role"]  # type: ignore[attr-defined]
    assert len(roles) == 5  # one per function


def test_the_translated_check_catches_a_sam_policy_template_wildcard() -> None:
    policy = {"Statement": [{"Effect": "Allow", "Action": ["sqs:SendMessage*"], "Resource": "arn:aws:sqs:::q"}]}
    role = {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyDocument": policy}]}}
    assert [v.rule for v in check_translated({"Resources": {"Role": role}})] == ["no_wildcard_actions"]
