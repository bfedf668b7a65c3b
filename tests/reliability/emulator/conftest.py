"""Property tests drive the session-wide emulator directly: hypothesis examples cannot share function fixtures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pinecone import Pinecone

from pinecone_emulator.control import EmulatorControl
from pinecone_emulator.pytest_plugin import *  # noqa: F403 - the plugin's fixtures
from pinecone_emulator.server import EmulatorServer


@dataclass
class Emulated:
    pc: Pinecone
    control: EmulatorControl
    names: Iterator[int]

    def fresh_name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.names)}"


@pytest.fixture(scope="module")
def emulated(pinecone_emulator_server: EmulatorServer) -> Iterator[Emulated]:
    control = EmulatorControl(pinecone_emulator_server.url)
    control.reset()
    client = Pinecone(api_key=pinecone_emulator_server.config.api_keys[0], host=pinecone_emulator_server.url)
    yield Emulated(client, control, itertools.count())
    client.close()
    control.reset()
