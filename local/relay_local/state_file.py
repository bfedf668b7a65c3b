"""How a running local stack is found: its state file (endpoints, queue URLs, the functions' environments).

A ``make up`` writes ``<state dir>/stack.json`` (never the API key) so ``status``, ``invoke``,
``rotate`` and ``down`` can find it, and ``outputs.json`` for ``vector-relay --outputs``.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from relay_local.cloudformation import ROOT
from relay_local.provisioning import aws_client
from relay_local.runtime import FunctionRuntimeConfig

DEFAULT_STATE_DIR = ROOT / ".local-stack"
STATE_FILE = "stack.json"
OUTPUTS_FILE = "outputs.json"  # the stack's Outputs for `vector-relay --outputs` (VECTOR_RELAY_OUTPUTS)
TRACES_FILE = "traces.jsonl"  # the X-Ray documents a stack that traces collected, one JSON line each


def ensure_state_dir(path: Path) -> Path:
    """Create the state directory with a .gitignore of its own (as pytest does for its cache)."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by the local stack (relay_local); nothing here belongs in git\n*\n")
    return path


@dataclass
class StackInfo:
    """What an upstream service, ``status`` and ``invoke`` need to know about a running stack."""

    aws_endpoint: str
    pinecone_url: str
    region: str
    index_name: str
    index_host: str
    queues: dict[str, str]  # logical id -> URL
    dead_letter_queues: dict[str, str]  # source logical id -> DLQ URL
    resources: dict[str, str]  # logical id -> physical id
    functions: dict[str, dict[str, Any]]  # short name -> FunctionRuntimeConfig fields (JSON-able)
    tenants: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)  # the template's Outputs, as `vector-relay` reads them
    outputs_file: str = ""  # those outputs as a JSON file (written with the state file)
    pid: int = 0
    grpc_host: str = ""  # the index's gRPC endpoint in the emulator (PINECONE_TRANSPORT=grpc)
    traces_file: str = ""  # where the collected X-Ray documents go (a stack that traces); "" = not tracing

    def upstream_environment(self) -> dict[str, str]:
        """The environment an upstream service needs to publish to this stack."""
        env = {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        for logical_id, url in self.queues.items():
            env[_env_name(logical_id) + "_URL"] = url
        if self.outputs_file:
            env["VECTOR_RELAY_OUTPUTS"] = self.outputs_file  # where `vector-relay` finds this stack
        env["PINECONE_CONTROL_HOST"] = self.pinecone_url  # `vector-relay index` talks to the emulator
        return env

    def runtime_config(self, name: str) -> FunctionRuntimeConfig:
        fields = dict(self.functions[name])
        fields["code_dir"] = Path(fields["code_dir"])
        fields["layer_dirs"] = tuple(Path(p) for p in fields["layer_dirs"])
        fields["python"] = sys.executable
        return FunctionRuntimeConfig(**fields)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> StackInfo:
        return cls(**json.loads(path.read_text()))


def _env_name(logical_id: str) -> str:
    """``IngestDeadLetterQueue`` -> ``INGEST_DEAD_LETTER_QUEUE``."""
    out = ""
    for i, char in enumerate(logical_id):
        if char.isupper() and i and not logical_id[i - 1].isupper():
            out += "_"
        out += char.upper()
    return out


def running_stack(state_dir: Path = DEFAULT_STATE_DIR) -> StackInfo | None:
    """The stack a ``make up`` in this checkout is running, if it answers."""
    path = state_dir / STATE_FILE
    try:
        info = StackInfo.load(path)
    except (OSError, ValueError, TypeError):  # none, or one being written
        return None
    try:
        with urllib.request.urlopen(f"{info.pinecone_url}/_emulator/health", timeout=2):  # noqa: S310 - loopback
            pass
        aws_client("sqs", info.aws_endpoint, info.region).list_queues()
    except Exception:
        return None
    return info
