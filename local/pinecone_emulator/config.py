"""Settings of one emulator instance (command-line flags map onto these fields one to one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_API_KEY = "pclocal"
DEFAULT_CLIENT_ID = "emulator-client"
DEFAULT_CLIENT_SECRET = "emulator-secret"  # noqa: S105 - a documented local default, not a secret
DEFAULT_PROJECT_ID = "emulator-project"
DEFAULT_PROJECT_NAME = "emulator"
DEFAULT_ORGANIZATION_ID = "emulator-org"


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 5080
    advertise_host: str | None = None  # host name put into index hosts; defaults to ``host``
    api_keys: list[str] = field(default_factory=lambda: [DEFAULT_API_KEY])
    allow_any_key: bool = False
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    project_id: str = DEFAULT_PROJECT_ID
    project_name: str = DEFAULT_PROJECT_NAME
    organization_id: str = DEFAULT_ORGANIZATION_ID
    data_dir: Path | None = None
    faults: dict[str, Any] = field(default_factory=dict)  # same shape as PUT /_emulator/faults
    seed: int | None = None
    max_request_line: int = 8 * 1024 * 1024
    snapshot_interval_s: float = 1.0
    log_requests: bool = False
