"""Translate template.yaml to plain CloudFormation offline, so cfn-lint checks what AWS will really deploy.

cfn-lint no longer runs the SAM transform itself; on the SAM source it misses rules such as a
queue visibility timeout below the function timeout or an out-of-range batch size. This runs the
transform with samtranslator (in the SAM CLI's venv: it pins its own pydantic), with local code
paths replaced by S3 locations and no IAM lookups, and writes the result as JSON.

Usage: python tools/sam_to_cfn.py template.yaml out.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

LOCAL_CODE_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}


class OfflinePolicyLoader:
    """Answers samtranslator's managed-policy lookup without calling IAM (the template names no managed policy)."""

    def load(self) -> dict[str, str]:
        return {}


def with_s3_code(template: dict[str, Any]) -> dict[str, Any]:
    for name, resource in template.get("Resources", {}).items():
        prop = LOCAL_CODE_PROPERTIES.get(resource.get("Type"))
        if prop and isinstance(resource.get("Properties", {}).get(prop), str):
            resource["Properties"][prop] = f"s3://offline-translation/{name}.zip"
    return template


def main(source: str, target: str) -> None:
    template = with_s3_code(yaml_parse(Path(source).read_text()))
    translated = transform(template, {}, OfflinePolicyLoader())  # type: ignore[arg-type]
    Path(target).write_text(json.dumps(translated, indent=1, sort_keys=True))
    print(f"{source} -> {target}: {len(translated['Resources'])} CloudFormation resources")


if __name__ == "__main__":
    main(*sys.argv[1:3])
