"""A small stdlib client for ``/_emulator/``: works against the in-process fixture and a separate process alike."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class EmulatorControl:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: object | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - an http:// URL built from base_url
            f"{self.base_url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - scheme checked
                body = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"emulator control {method} {path} failed: {error.code} {error.read()!r}") from None
        return json.loads(body) if body else None

    # faults -------------------------------------------------------------------------------------
    def add_fault(self, operation: str = "*", **rule: Any) -> str:
        """Add one rule (see pinecone_emulator.faults); returns its id."""
        created = self._call("POST", "faults/rules", {"operation": operation, **rule})
        return str(created["id"])

    def script(self, operation: str, *steps: object, index: str | None = None) -> str:
        """Answer the next requests for *operation* with *steps* (429, 503, "ok", "drop", {...}), in order."""
        rule: dict[str, Any] = {"sequence": list(steps)}
        if index is not None:
            rule["index"] = index
        return self.add_fault(operation, **rule)

    def remove_fault(self, rule_id: str) -> None:
        self._call("DELETE", f"faults/rules/{rule_id}")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace every fault setting: rules=[...], rate_limit={...}, indexing_lag_ms=n."""
        return dict(self._call("PUT", "faults", settings))

    def update_faults(self, **settings: Any) -> dict[str, Any]:
        """Change only the given settings; rules are appended."""
        return dict(self._call("POST", "faults", settings))

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "faults"))

    def set_rate_limit(self, requests_per_second: int, **options: Any) -> None:
        self.update_faults(rate_limit={"requests_per_second": requests_per_second, **options})

    def set_indexing_lag(self, milliseconds: float) -> None:
        self.update_faults(indexing_lag_ms=milliseconds)

    # counters, state, reset ---------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "counters"))

    def pending_applies(self) -> int:
        """Requests answered with a fault that the emulator has yet to carry out (``apply_after_ms``)."""
        return int(self.counters()["pending_applies"])

    def flush_applies(self) -> int:
        """Carry out every delayed request now (tests that must not wait for the delay); returns how many."""
        return int(self._call("POST", "applies/flush")["applied"])

    def flush_indexing(self) -> int:
        """Make every committed write readable now, whatever the indexing lag (tests that must not wait it
        out); returns how many writes were still waiting. Each namespace's indexed LSN reaches its last write."""
        return int(self._call("POST", "indexing/flush")["applied"])

    def wait_for_applies(self, ceiling: float = 120.0) -> None:
        """Block until every delayed apply has landed; fail after ``ceiling`` seconds."""
        deadline = time.monotonic() + ceiling
        while self.pending_applies():
            if time.monotonic() > deadline:
                raise TimeoutError(f"delayed applies still pending after {ceiling:.0f} s")
            time.sleep(0.05)

    def count(self, operation: str | None = None, status: int | None = None, api_key: str | None = None) -> int:
        """Requests seen that match every given criterion."""
        return sum(
            item["count"]
            for item in self.counters()["requests"]
            if (operation is None or item["operation"] == operation)
            and (status is None or item["status"] == status)
            and (api_key is None or item["api_key"] == api_key)
        )

    def clear_counters(self) -> None:
        self._call("DELETE", "counters")

    def set_index_ready_after(self, seconds: float) -> None:
        """New indexes stay Initializing this long (0: Ready at once, the default)."""
        self.update_faults(index_ready_after_ms=seconds * 1000)

    def set_index_state(self, index: str, state: str | None) -> str:
        """Force an index into InitializationFailed / Terminating / Disabled / Initializing / Ready, or clear (None)."""
        return str(self._call("PUT", f"indexes/{urllib.parse.quote(index)}/state", {"state": state})["state"])

    def grpc_host(self, index: str) -> str:
        """Where the index answers gRPC: its host, as ``describe_index`` reports it (``grpc_scheme="http"``)."""
        return str(self._call("GET", f"indexes/{index}/grpc")["host"])

    def journal(self, index: str, namespace: str, record_id: str | None = None) -> list[dict[str, Any]]:
        """What was applied to ``namespace`` (or one record), oldest first: op (upsert, delete), id, the
        record's metadata as stored (None for a delete), how ("direct", "then-fault", "held") and when
        ("at", the emulator's monotonic clock)."""
        query = f"?id={urllib.parse.quote(record_id)}" if record_id is not None else ""
        path = f"journal/{urllib.parse.quote(index)}/{urllib.parse.quote(namespace)}{query}"
        return list(self._call("GET", path)["entries"])

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "state"))

    def reset(self, **parts: bool) -> None:
        """Forget indexes, faults, counters and created keys (pass e.g. keys=False to keep some)."""
        self._call("POST", "reset", parts)

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "health"))
