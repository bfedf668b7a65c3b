"""pytest fixtures: one in-process emulator per session on an ephemeral port, reset before every test.

Load it with ``-p pinecone_emulator.pytest_plugin``, ``pytest_plugins`` in the root conftest, or by
importing the fixtures into a conftest: ``from pinecone_emulator.pytest_plugin import *``.

``pinecone_emulator`` yields a :class:`EmulatorHandle` with ``url`` (control plane and Admin host),
``api_key``, ``client_id``/``client_secret``/``oauth_url``/``project_id`` (Admin API),
``index_host(name)`` and ``control`` (:class:`~pinecone_emulator.control.EmulatorControl`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.control import EmulatorControl
from pinecone_emulator.server import EmulatorServer

__all__ = ["EmulatorHandle", "pinecone_emulator", "pinecone_emulator_server"]


@dataclass(frozen=True)
class EmulatorHandle:
    url: str
    api_key: str
    client_id: str
    client_secret: str
    project_id: str
    control: EmulatorControl
    server: EmulatorServer

    @property
    def oauth_url(self) -> str:
        return f"{self.url}/oauth/token"

    def index_host(self, name: str) -> str:
        return self.server.emulator.index_host(name)


def reset_sdk_retry_state() -> None:
    """Forget the SDK's process-global retry budget and admission gates (keyed by host name, so every
    emulator on 127.0.0.1 shares them): injected 5xx/429s in one test must not disable retries in the next."""
    with contextlib.suppress(Exception):  # private SDK internals; absent or renamed → nothing to reset
        from pinecone._internal.http_client import get_budget_registry

        get_budget_registry()._reset()
    with contextlib.suppress(Exception):
        from pinecone._internal.bulk import get_registry

        registry = get_registry()
        reset = getattr(registry, "_reset", None)
        if callable(reset):
            reset()


@pytest.fixture(scope="session")
def pinecone_emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer(EmulatorConfig(port=0, seed=1234)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pinecone_emulator(pinecone_emulator_server: EmulatorServer) -> Iterator[EmulatorHandle]:
    server = pinecone_emulator_server
    config = server.config
    control = EmulatorControl(server.url)
    control.reset()
    reset_sdk_retry_state()
    yield EmulatorHandle(
        url=server.url,
        api_key=config.api_keys[0],
        client_id=config.client_id,
        client_secret=config.client_secret,
        project_id=config.project_id,
        control=control,
        server=server,
    )
    control.clear_faults()
