"""What the local stack keeps of moto's state across restarts, beside the emulator's index (``DATA_DIR``).

moto keeps everything in memory, so without this a restart would forget the tenants added with
``vector-relay tenant add`` and empty the version guard's table while the emulator kept the records
it guards. With a data directory, the stack saves the template's SSM parameters (the tenant
registry, the rotation marker), DynamoDB tables (the version guard's) and S3 buckets (large query
replies) to ``<data dir>/aws/state.json`` every :data:`SAVE_INTERVAL_SECONDS` and when it stops, and
puts them back right after creating the resources on the next start. Queues are not kept: their
messages (and DLQs) start empty, as moto's always do.

Like the emulator's snapshots, a ``kill -9`` loses at most what changed since the last save.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_local.provisioning import CreatedResource, Provisioner

STATE_FILE = "state.json"
SAVE_INTERVAL_SECONDS = 30.0
FORMAT_VERSION = 1
KEPT_TYPES = ("AWS::SSM::Parameter", "AWS::DynamoDB::Table", "AWS::S3::Bucket")


@dataclass
class Restored:
    """What a start found saved and put back."""

    saved_at: float  # epoch seconds
    parameters: dict[str, str] = field(default_factory=dict)  # name -> value
    items: dict[str, int] = field(default_factory=dict)  # table -> items
    objects: dict[str, int] = field(default_factory=dict)  # bucket -> objects
    not_in_template: list[str] = field(default_factory=list)  # saved resources this template no longer has


class AwsState:
    """Saves and restores the kept resources of one provisioned template in moto's server."""

    def __init__(self, directory: Path, provisioner: Provisioner, resources: list[CreatedResource]) -> None:
        self.path = directory / STATE_FILE
        self._provisioner = provisioner
        self._kept = [r for r in resources if r.resource_type in KEPT_TYPES]
        self._lock = threading.Lock()
        self._last_written = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def saved(self) -> bool:
        return self.path.exists()

    # ------------------------------------------------------------------ restore
    def restore(self) -> Restored | None:
        """Put back what was saved (None when nothing was); resources the template no longer has are listed."""
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise RuntimeError(
                f"{self.path} is not readable JSON ({error}); move it away to start without it"
            ) from None
        if saved.get("format") != FORMAT_VERSION:
            raise RuntimeError(f"{self.path} has format {saved.get('format')!r}, not {FORMAT_VERSION}; move it away")
        restored = Restored(saved_at=float(saved["saved_at"]))
        names = {(r.resource_type, r.physical_id) for r in self._kept}
        for name, value in saved["parameters"].items():
            if ("AWS::SSM::Parameter", name) not in names:
                restored.not_in_template.append(f"parameter {name}")
                continue
            self._client("ssm").put_parameter(Name=name, Value=value, Overwrite=True)
            restored.parameters[name] = value
        for table, items in saved["tables"].items():
            if ("AWS::DynamoDB::Table", table) not in names:
                restored.not_in_template.append(f"table {table}")
                continue
            self._put_items(table, items)
            restored.items[table] = len(items)
        for bucket, objects in saved["buckets"].items():
            if ("AWS::S3::Bucket", bucket) not in names:
                restored.not_in_template.append(f"bucket {bucket}")
                continue
            s3 = self._client("s3")
            for key, stored in objects.items():
                s3.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=base64.b64decode(stored["body"]),
                    ContentType=stored.get("content_type") or "binary/octet-stream",
                )
            restored.objects[bucket] = len(objects)
        return restored

    def _put_items(self, table: str, items: list[dict[str, Any]]) -> None:
        dynamodb = self._client("dynamodb")
        for start in range(0, len(items), 25):
            requests: Any = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
            while requests:
                requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or None

    # ------------------------------------------------------------------ save
    def save(self) -> bool:
        """Write the kept resources' state (atomically); False when nothing changed since the last write."""
        with self._lock:
            parameters: dict[str, str] = {}
            tables: dict[str, list[dict[str, Any]]] = {}
            buckets: dict[str, dict[str, dict[str, str]]] = {}
            for resource in self._kept:
                name = resource.physical_id
                if resource.resource_type == "AWS::SSM::Parameter":
                    parameters[name] = self._client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
                elif resource.resource_type == "AWS::DynamoDB::Table":
                    tables[name] = list(self._scan(name))
                else:
                    buckets[name] = dict(self._objects(name))
            state = {"format": FORMAT_VERSION, "parameters": parameters, "tables": tables, "buckets": buckets}
            content = json.dumps(state, sort_keys=True)
            if content == self._last_written:
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps({**state, "saved_at": time.time()}))
            os.replace(temporary, self.path)
            self._last_written = content
            return True

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        dynamodb = self._client("dynamodb")
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = dynamodb.scan(**request)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _objects(self, bucket: str) -> Iterator[tuple[str, dict[str, str]]]:
        s3 = self._client("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                found = s3.get_object(Bucket=bucket, Key=entry["Key"])
                yield (
                    entry["Key"],
                    {
                        "body": base64.b64encode(found["Body"].read()).decode(),
                        "content_type": found.get("ContentType", ""),
                    },
                )

    # ------------------------------------------------------------------ while running
    def start_saving(self, on_error: Callable[[str], None]) -> None:
        """Save every :data:`SAVE_INTERVAL_SECONDS` in a thread until :meth:`stop_saving`."""

        def run() -> None:
            while not self._stop.wait(SAVE_INTERVAL_SECONDS):
                try:
                    self.save()
                except Exception as error:  # moto busy or stopping: the next round or the final save tries again
                    on_error(f"saving the AWS state to {self.path} failed: {error}")

        self._thread = threading.Thread(target=run, name="aws-state", daemon=True)
        self._thread.start()

    def stop_saving(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SAVE_INTERVAL_SECONDS)

    def _client(self, service: str) -> Any:
        return self._provisioner.client(service)


def registry_tenants(value: str) -> dict[str, str]:
    """tenant -> namespace of a tenant registry's JSON (entries as strings or objects)."""
    try:
        raw = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(tenant): str(entry.get("namespace") if isinstance(entry, dict) else entry) for tenant, entry in raw.items()
    }
