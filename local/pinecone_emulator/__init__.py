"""A local Pinecone (API 2026-07) for tests: control plane, data plane, Admin API, keys, limits and faults."""

from pinecone_emulator.app import Emulator
from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.server import EmulatorServer

__all__ = ["Emulator", "EmulatorConfig", "EmulatorServer"]
