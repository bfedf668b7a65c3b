"""What `sam build` produces imports the way Lambda imports it: each function with only the built layers.

`make test` runs `make build` first. The import runs in a separate Python 3.13 (Lambda's runtime
version) with no site-packages at all, so a layer layout mistake (a `python/` folder in the layer
source, a missing package) fails here instead of in a deploy.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from relay_local.cloudformation import load_template
from tests.conftest import ROOT
from tools.prune_botocore import KEEP, LAYER_DATA

BUILD = ROOT / ".aws-sam" / "build"
TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTIONS = sorted(name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function")
LAYERS = sorted(name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion")

IMPORT_LIKE_LAMBDA = """
import importlib, json, sys
function_dir, *layer_dirs = sys.argv[1:]
sys.path[:0] = [function_dir, *layer_dirs]
module_name, handler_name = {handler!r}.rsplit(".", 1)
module = importlib.import_module(module_name)
handler = getattr(module, handler_name)
top_level = {{name.split(".")[0] for name in sys.modules}}
loaded = sorted(top_level & {{"vector_relay", "pinecone", "pydantic", "boto3", "aws_lambda_powertools"}})
origin = sys.modules["vector_relay"].__file__
print(json.dumps({{"callable": callable(handler), "loaded": loaded, "vector_relay": origin}}))
"""


def lambda_python() -> str:
    return subprocess.run(
        [str(ROOT / "tools" / "find-python.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def built() -> Path:
    if not (BUILD / "template.yaml").exists():
        pytest.fail("no build output: run `make build` (make test does it first)")
    return BUILD


def test_layers_are_built_with_a_python_folder_holding_packages(built: Path) -> None:
    for layer in LAYERS:
        python_dir = built / layer / "python"
        assert python_dir.is_dir(), layer
        assert not (python_dir / "python").exists(), f"{layer}: python/python would not be importable"
    assert (built / "SharedCodeLayer" / "python" / "vector_relay" / "__init__.py").is_file()
    assert (built / "DependenciesLayer" / "python" / "pinecone").is_dir()


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_handler_imports_from_the_built_artifacts_alone(built: Path, function: str) -> None:
    handler = TEMPLATE["Resources"][function]["Properties"]["Handler"]
    layer_dirs = [str(built / layer / "python") for layer in LAYERS]
    result = subprocess.run(
        [
            lambda_python(),
            "-I",
            "-S",
            "-c",
            IMPORT_LIKE_LAMBDA.format(handler=handler),
            str(built / function),
            *layer_dirs,
        ],
        capture_output=True,
        text=True,
        env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["callable"] is True
    assert "vector_relay" in report["loaded"]
    assert report["vector_relay"].startswith(str(built / "SharedCodeLayer"))


@pytest.mark.parametrize("artifact", [*LAYERS, *FUNCTIONS])
def test_every_built_module_has_bytecode_lambda_can_use(built: Path, artifact: str) -> None:
    """Lambda cannot write __pycache__; a module without bytecode is compiled on every cold start."""
    sources = [path for path in (built / artifact).rglob("*.py") if "__pycache__" not in path.parts]
    assert sources, artifact
    tag = "cpython-313"  # the runtime's, python3.13
    missing = [
        str(path.relative_to(built))
        for path in sources
        if not (path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").is_file()
    ]
    assert not missing, f"{len(missing)} modules without bytecode, e.g. {missing[:3]}"


def test_the_sdks_grpc_client_loads_from_the_built_layer(built: Path) -> None:
    """PINECONE_TRANSPORT=grpc needs the SDK's Rust extension; the layer carries it (manylinux x86_64 wheel)."""
    script = (
        "import sys; sys.path[:0] = sys.argv[1:]; "
        "from pinecone._grpc import GrpcChannel; import pinecone; "
        "print(pinecone.__file__, GrpcChannel.__name__)"
    )
    layer_dirs = [str(built / layer / "python") for layer in LAYERS]
    result = subprocess.run(
        [lambda_python(), "-I", "-S", "-c", script, *layer_dirs],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(built / "DependenciesLayer") in result.stdout
    wheel = next((built / "DependenciesLayer" / "python").glob("pinecone-*.dist-info")) / "WHEEL"
    assert "manylinux" in wheel.read_text()  # glibc-based: Lambda's Amazon Linux 2023 runtimes


def test_the_built_layer_keeps_the_botocore_models_the_functions_use_and_only_those(built: Path) -> None:
    """`make build` drops the others (tools/prune_botocore.py); each kept one still makes a client from the layer."""
    data = built / LAYER_DATA
    assert {folder.name for folder in data.iterdir() if folder.is_dir()} == KEEP
    script = (
        "import sys; sys.path[:0] = sys.argv[2:]; import boto3; "
        "session = boto3.session.Session(region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='y'); "
        "[session.client(name) for name in sys.argv[1].split(',')]; print(boto3.__file__)"
    )
    layer_dirs = [str(built / layer / "python") for layer in LAYERS]
    result = subprocess.run(
        [lambda_python(), "-I", "-S", "-c", script, ",".join(sorted(KEEP)), *layer_dirs],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(built / "DependenciesLayer") in result.stdout


ENDPOINTS_OF = """
import json, sys
sys.path[:0] = sys.argv[2:]
import boto3, botocore.config
found = {"botocore": boto3.__version__ and __import__("botocore").__version__}
for name in sys.argv[1].split(","):
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "eu-isoe-west-1"):
        for fips in (False, True):
            config = botocore.config.Config(use_fips_endpoint=fips)
            try:
                client = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y").client(
                    name, region_name=region, config=config
                )
                found[f"{name} {region} fips={fips}"] = client.meta.endpoint_url
            except Exception as error:
                found[f"{name} {region} fips={fips}"] = type(error).__name__
print(json.dumps(found))
"""


def test_the_pruned_endpoints_resolve_every_kept_service_as_the_full_botocore_does(built: Path) -> None:
    """`make build` keeps only the kept services in botocore's endpoints.json (parsed by a process's first
    client: ~16 ms for the whole file) and drops h2, which nothing uses (the SDK's httpx runs HTTP/1.1)."""
    layer = built / "DependenciesLayer" / "python"
    assert not [path.name for path in layer.iterdir() if path.name.split("-")[0] in ("h2", "hpack", "hyperframe")]
    services = ",".join(sorted(KEEP - {"sso", "sso-oidc"}))
    layer_dirs = [str(built / name / "python") for name in LAYERS]
    pruned = subprocess.run(
        [lambda_python(), "-I", "-S", "-c", ENDPOINTS_OF, services, *layer_dirs],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    full = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", ENDPOINTS_OF, services],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pruned.returncode == 0, pruned.stderr
    assert full.returncode == 0, full.stderr
    pruned_endpoints, full_endpoints = json.loads(pruned.stdout), json.loads(full.stdout)
    if pruned_endpoints["botocore"] != full_endpoints["botocore"]:
        pytest.skip(
            f"the layer's botocore {pruned_endpoints['botocore']} is not the venv's {full_endpoints['botocore']}"
        )
    assert pruned_endpoints == full_endpoints
