"""``--data-dir``: indexes, records and API keys survive a restart.

The emulator marks itself dirty on every change; a background thread writes a snapshot at most once
per ``snapshot_interval_s`` (only the indexes that changed), and a clean shutdown writes a final one.
A ``kill -9`` loses at most the last interval. Layout::

    DIR/state.json                      indexes (control-plane fields, LSNs, their hosts' ports), API keys
                                        (SHA-256 digests only)
    DIR/namespaces/<index>/<sha1>.npz   one namespace: vectors, ids, metadata, sparse values
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pinecone_emulator.app import Emulator
from pinecone_emulator.auth import ApiKey, digest
from pinecone_emulator.records import Record, Sparse
from pinecone_emulator.store import IndexState, NamespaceData

log = logging.getLogger("pinecone_emulator")
FORMAT_VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _namespace_file(index_dir: Path, name: str) -> Path:
    return index_dir / (hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest() + ".npz")


def _save_namespace(path: Path, name: str, data: NamespaceData) -> None:
    count = len(data)
    sparse = [None if s is None else [s.indices.tolist(), s.values.tolist()] for s in data.sparse]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(
        temporary,
        vectors=data.vectors[:count],
        meta=np.frombuffer(
            json.dumps({"name": name, "ids": data.ids, "metadata": data.metadata, "sparse": sparse}).encode(),
            dtype=np.uint8,
        ),
    )
    os.replace(temporary, path)


def _load_namespace(path: Path, dimension: int) -> tuple[str, NamespaceData]:
    with np.load(path) as archive:
        vectors = archive["vectors"]
        meta = json.loads(archive["meta"].tobytes())
    data = NamespaceData(dimension)
    for row, vector_id in enumerate(meta["ids"]):
        sparse_raw = meta["sparse"][row]
        sparse = (
            None
            if sparse_raw is None
            else Sparse(np.asarray(sparse_raw[0], dtype=np.int64), np.asarray(sparse_raw[1], dtype=np.float32))
        )
        values = vectors[row] if dimension else None
        data.put(Record(vector_id, values, sparse, meta["metadata"][row]))
    return meta["name"], data


class Persistence:
    def __init__(self, emulator: Emulator, directory: Path, interval_s: float) -> None:
        self.emulator = emulator
        self.directory = directory
        self.interval_s = interval_s
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._save_lock = threading.Lock()
        self._saved_versions: dict[str, tuple[int, int]] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.load()
        emulator.on_change = self._dirty.set
        self._thread = threading.Thread(target=self._run, name="pinecone-emulator-snapshots", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ load
    def load(self) -> None:
        state_file = self.directory / "state.json"
        if not state_file.exists():
            return
        state = json.loads(state_file.read_text())
        if state.get("format") != FORMAT_VERSION:
            raise RuntimeError(f"{state_file} has an unknown format; delete the data dir or use a matching emulator")
        emulator = self.emulator
        for raw in state["indexes"]:
            index = IndexState(
                name=raw["name"],
                schema=raw["schema"],
                deployment=raw["deployment"],
                deletion_protection=raw["deletion_protection"],
                tags=raw["tags"],
                read_capacity=raw["read_capacity"],
                source_collection=raw.get("source_collection"),
                source_backup_id=raw.get("source_backup_id"),
                cmek_id=raw.get("cmek_id"),
                namespace_schemas=raw.get("namespace_schemas", {}),
                clock=emulator.indexing_clock,
            )
            index_dir = self.directory / "namespaces" / index.name
            for path in sorted(index_dir.glob("*.npz")) if index_dir.exists() else []:
                name, data = _load_namespace(path, index.dimension)
                index.namespaces[name] = data
            index.known_namespaces = set(index.namespaces)
            # Each namespace's counter as committed, deleted namespaces' too, so no LSN is issued twice. Writes
            # still waiting for the lag when a snapshot was taken are not in it: after a kill -9 they are lost, and
            # their LSNs count as indexed. A data dir from before per-namespace LSNs has one counter per index.
            lsns = raw.get("namespace_lsns") or dict.fromkeys(index.namespaces, int(raw.get("lsn", 0)))
            index.lsns = {name: int(lsn) for name, lsn in lsns.items()}
            index.indexed_lsns = dict(index.lsns)
            emulator.indexes[index.name] = index
            self._saved_versions[index.name] = (id(index), index.version)
        # each index's host keeps its port across a restart (when it is free), as Pinecone keeps an index's host
        emulator.index_ports.update({name: int(port) for name, port in state.get("index_ports", {}).items()})
        keyring = emulator.keyring
        revoked = {entry["digest"]: entry["id"] for entry in state.get("revoked", [])}
        emulator.revoked.update(revoked)
        persisted = [ApiKey(**entry) for entry in state.get("api_keys", [])]
        with keyring.lock:
            keyring.keys.clear()
            keyring.by_digest.clear()
        keyring.restore(persisted)
        for position, secret in enumerate(keyring.initial_keys):
            secret_digest = digest(secret)
            if secret_digest not in keyring.by_digest and secret_digest not in revoked:
                keyring.restore(
                    [
                        ApiKey(
                            f"initial-key-{position}",
                            f"initial-key-{position}",
                            keyring.project.id,
                            ["ProjectEditor"],
                            secret_digest,
                        )
                    ]
                )
        for name in emulator.indexes:
            emulator.index_host(name)  # opens the index's port now: a client that kept its host needs no describe
        log.info("loaded %d index(es) from %s", len(emulator.indexes), self.directory)

    # ------------------------------------------------------------------------------------------ save
    def save(self, *, final: bool = False) -> None:
        with self._save_lock:
            emulator = self.emulator
            with emulator.lock:
                indexes = list(emulator.indexes.values())
            entries: list[dict[str, Any]] = []
            namespaces_root = self.directory / "namespaces"
            for index in indexes:
                with index.lock:
                    if final:
                        index.catch_up(0)
                    entries.append(
                        {
                            "name": index.name,
                            "schema": index.schema,
                            "deployment": index.deployment,
                            "deletion_protection": index.deletion_protection,
                            "tags": index.tags,
                            "read_capacity": index.read_capacity,
                            "source_collection": index.source_collection,
                            "source_backup_id": index.source_backup_id,
                            "cmek_id": index.cmek_id,
                            "namespace_schemas": index.namespace_schemas,
                            "namespace_lsns": dict(sorted(index.lsns.items())),
                            "lsn": max(index.lsns.values(), default=0),  # what an older emulator reads
                        }
                    )
                    if self._saved_versions.get(index.name) == (id(index), index.version):
                        continue
                    index_dir = namespaces_root / index.name
                    keep = set()
                    for name, data in index.namespaces.items():
                        path = _namespace_file(index_dir, name)
                        _save_namespace(path, name, data)
                        keep.add(path.name)
                    for stale in index_dir.glob("*.npz") if index_dir.exists() else []:
                        if stale.name not in keep:
                            stale.unlink()
                    self._saved_versions[index.name] = (id(index), index.version)
            live = {index.name for index in indexes}
            if namespaces_root.exists():
                for index_dir in namespaces_root.iterdir():
                    if index_dir.name not in live:
                        for path in index_dir.glob("*"):
                            path.unlink()
                        index_dir.rmdir()
                        self._saved_versions.pop(index_dir.name, None)
            state = {
                "format": FORMAT_VERSION,
                "indexes": entries,
                "api_keys": [
                    {
                        "id": k.id,
                        "name": k.name,
                        "project_id": k.project_id,
                        "roles": k.roles,
                        "secret_digest": k.secret_digest,
                    }
                    for k in emulator.keyring.list()
                ],
                "revoked": [{"digest": d, "id": i} for d, i in emulator.revoked.items()],
                "index_ports": {name: port for name, port in dict(emulator.index_ports).items() if name in live},
            }
            _atomic_write(self.directory / "state.json", json.dumps(state, indent=1).encode())

    def _run(self) -> None:
        while not self._closed.is_set():
            if self._dirty.wait(timeout=0.5) and not self._closed.is_set():
                self._closed.wait(self.interval_s)
                self._dirty.clear()
                try:
                    self.save()
                except Exception:
                    log.exception("snapshot to %s failed", self.directory)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)
        self.save(final=True)


def attach_persistence(emulator: Emulator) -> Persistence | None:
    directory = emulator.config.data_dir
    if directory is None:
        return None
    return Persistence(emulator, Path(directory), emulator.config.snapshot_interval_s)
