"""The Python snippets in docs/emulator.md run against the emulator, so the guide cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

from pinecone_emulator.pytest_plugin import EmulatorHandle

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "emulator.md"


def test_quick_start_snippet_runs(pinecone_emulator: EmulatorHandle) -> None:
    snippet = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)[0]
    code = snippet.replace("http://127.0.0.1:5080", pinecone_emulator.url)
    namespace: dict[str, object] = {}

    exec(compile(code, str(GUIDE), "exec"), namespace)

    index = namespace["index"]
    grpc_index = namespace["grpc_index"]
    admin = namespace["admin"]
    assert index.describe_index_stats().dimension == 1536  # type: ignore[attr-defined]
    assert grpc_index.describe_index_stats().dimension == 1536  # type: ignore[attr-defined] - over gRPC, same host
    assert [p.id for p in admin.projects.list()] == [pinecone_emulator.project_id]  # type: ignore[attr-defined]


def test_read_your_writes_snippet_runs(pinecone_emulator: EmulatorHandle) -> None:
    snippets = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    snippet = next(s for s in snippets if "is_reconciled" in s)
    code = snippet.replace("http://127.0.0.1:5080", pinecone_emulator.url)
    namespace: dict[str, object] = {}

    exec(compile(code, str(GUIDE), "exec"), namespace)  # its own asserts are the check

    assert namespace["receipt"] == 1  # the first write to the namespace
