"""Which relay a command acts on: a CloudFormation stack's outputs, or the same outputs from a file.

In AWS, ``--stack NAME`` reads the outputs of the deployed stack. ``--outputs FILE`` reads them
from JSON, either ``{"OutputKey": "value", ...}`` or the list ``aws cloudformation
describe-stacks --query "Stacks[0].Outputs"`` prints; ``make up`` writes such a file for the local
stack and exports ``VECTOR_RELAY_OUTPUTS`` (with ``AWS_ENDPOINT_URL``) for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from vector_relay_cli.errors import CannotRun

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient


@dataclass(frozen=True, slots=True)
class Deployment:
    source: str  # for messages: "stack NAME" or "outputs file PATH"
    outputs: Mapping[str, str]

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise CannotRun(f"{self.source} has no output {key} (is it a vector-relay stack of this version?)")
        return value


def from_stack(cloudformation: CloudFormationClient, name: str) -> Deployment:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except (ClientError, BotoCoreError) as error:
        raise CannotRun(f"cannot read stack {name}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}
    return Deployment(f"stack {name}", outputs)


def from_file(path: Path) -> Deployment:
    try:
        payload: Any = json.loads(path.read_text())
    except OSError as error:
        raise CannotRun(f"cannot read outputs file {path}: {error.strerror}") from None
    except ValueError as error:
        raise CannotRun(f"outputs file {path} is not JSON: {error}") from None
    if isinstance(payload, list):
        payload = {o.get("OutputKey"): o.get("OutputValue") for o in payload if isinstance(o, dict)}
    if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
        raise CannotRun(f"outputs file {path} must map output names to strings")
    return Deployment(f"outputs file {path}", payload)
