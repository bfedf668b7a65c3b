"""Pins, layers and tooling agree with each other, so what is tested is what is deployed."""

from __future__ import annotations

import re
import tomllib

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from tools.prune_botocore import USED

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEMPLATE = load_template(ROOT / "template.yaml")


def requirement_lines(path: str) -> list[str]:
    lines = (ROOT / path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dependencies_layer_has_exactly_the_runtime_pins() -> None:
    assert requirement_lines("layers/dependencies/requirements.txt") == PYPROJECT["project"]["dependencies"]


def test_every_dependency_is_pinned_exactly() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    for requirement in [*project["dependencies"], *(r for group in extras.values() for r in group)]:
        assert "==" in requirement, requirement
    assert "pinecone==10.2.0" in project["dependencies"]


def test_each_package_is_pinned_in_one_place() -> None:
    """One pin per package across the runtime and every extra (make venv installs several extras together)."""
    project = PYPROJECT["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    seen: dict[str, str] = {}
    for group, requirements in groups.items():
        for requirement in requirements:
            name = requirement.split("==")[0].split("[")[0].lower()
            assert name not in seen, f"{name} is pinned in {seen[name]} and {group}"
            seen[name] = group


def test_layer_sources_have_no_python_folder() -> None:
    """SAM adds python/ when it builds a layer with a BuildMethod; a source python/ would end up as python/python."""
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            source = ROOT / resource["Properties"]["ContentUri"]
            assert source.is_dir()
            assert not (source / "python").exists(), source
            assert resource["Metadata"]["BuildMethod"] == TEMPLATE["Globals"]["Function"]["Runtime"]


def test_functions_and_layers_share_runtime_and_architecture() -> None:
    runtime = TEMPLATE["Globals"]["Function"]["Runtime"]
    architectures = TEMPLATE["Globals"]["Function"]["Architectures"]
    assert runtime == "python3.13"
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            assert resource["Properties"]["CompatibleRuntimes"] == [runtime]
            assert resource["Properties"]["CompatibleArchitectures"] == architectures
            assert [resource["Metadata"]["BuildArchitecture"]] == architectures


def test_only_the_gateway_may_import_the_pinecone_sdk() -> None:
    banned = PYPROJECT["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert "pinecone" in banned
    assert "TID" in PYPROJECT["tool"]["ruff"]["lint"]["select"]


def test_the_layer_keeps_the_botocore_model_of_every_client_the_code_makes() -> None:
    """tools/prune_botocore.py drops the models of services no function uses: a client made for a dropped
    one would fail in Lambda (UnknownServiceError), so every service named to make a client is kept."""
    named = set()
    for path in (ROOT / "shared").rglob("*.py"):
        named |= set(re.findall(r"""\b_?client\(\s*["']([a-z0-9-]+)["']""", path.read_text()))
    snapstart = (ROOT / "shared" / "vector_relay" / "snapstart.py").read_text()
    [preloaded] = re.findall(r"load_service_models\(\(([^)]*)\)\)", snapstart)
    named |= set(re.findall(r'"([a-z0-9-]+)"', preloaded))
    assert named == USED
