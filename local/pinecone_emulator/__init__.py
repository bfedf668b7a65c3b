"""A local Pinecone (API 2026-07) for tests: control plane, data plane, Admin API, keys, limits and faults.

``Emulator`` is the state (app.py), ``handle(emulator, request)`` answers one request (routes.py), and
``EmulatorServer`` puts an emulator on a port, and each index on a port of its own that answers REST and gRPC
(server.py).
"""

from pinecone_emulator.app import Emulator
from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.routes import handle
from pinecone_emulator.server import EmulatorServer

__all__ = ["Emulator", "EmulatorConfig", "EmulatorServer", "handle"]
