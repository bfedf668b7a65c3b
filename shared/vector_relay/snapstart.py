"""Lambda SnapStart: what a worker does before its snapshot is taken and after each restore.

With SnapStart (template parameter ``SnapStart=PublishedVersions``) Lambda runs a function's init
once, snapshots the memory, and starts later environments from that snapshot. Before the
snapshot, :func:`prime` does the expensive, connection-free work the first invocation would
otherwise pay (the SDK's async client and HTTP transport imported, the AWS service models loaded
into the shared botocore session, the X-Ray SDK imported when tracing is on). After every restore,
:func:`refresh` makes sure nothing from the snapshot is trusted that may have changed or been cloned:

* the worker's dependencies are dropped: their HTTP connection pools (Pinecone, AWS) point at
  sockets that did not survive the snapshot, and their event loop is closed;
* the AWS clients are built again (the session, with its loaded service models, is kept);
* the API key is read again on first use (it may have been rotated since the snapshot);
* the random generators are reseeded, so restored environments do not share back-off jitter.

The hooks are registered with ``snapshot_restore_py``, which Lambda's Python 3.12+ runtimes provide
and ``awslambdaric`` (a dev dependency here) installs; :func:`simulate_restore` runs its registries
the way the runtime does around a snapshot. Where the module is absent the hooks are kept here.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from typing import Any

Hook = Callable[[], None]
_before_snapshot: list[Hook] = []
_after_restore: list[Hook] = []


def _runtime() -> Any:
    try:
        return importlib.import_module("snapshot_restore_py")
    except ImportError:
        return None


def register(*, before_snapshot: Hook, after_restore: Hook) -> None:
    """Register hooks with the runtime's ``snapshot_restore_py`` (or here, where it is absent)."""
    runtime = _runtime()
    if runtime is None:
        _before_snapshot.append(before_snapshot)
        _after_restore.append(after_restore)
    else:
        runtime.register_before_snapshot(before_snapshot)
        runtime.register_after_restore(after_restore)


def prime() -> None:
    """Load what the first invocation needs without opening a connection (run before the snapshot)."""
    from vector_relay.aws_clients import load_service_models
    from vector_relay.pinecone.data_plane import load_transport
    from vector_relay.tracing import active_tracer

    load_transport()
    load_service_models(("secretsmanager", "sqs", "ssm", "dynamodb"))
    active_tracer()  # the X-Ray SDK, when tracing is on (docs/operating.md, tracing)


def refresh() -> None:
    """Forget connections, clients, the key and random state that came from the snapshot."""
    from vector_relay.aws_clients import forget_clients
    from vector_relay.dependencies import reset_worker_dependencies

    reset_worker_dependencies()
    forget_clients()
    random.seed()


def simulate_restore() -> None:
    """Run the registered hooks as Lambda does around a snapshot: before it, then after a restore."""
    runtime = _runtime()
    if runtime is None:
        for hook in (*_before_snapshot, *_after_restore):
            hook()
        return
    for registry in (runtime.get_before_snapshot(), runtime.get_after_restore()):
        for function, args, kwargs in registry:
            function(*args, **kwargs)


_registered: list[bool] = []


def register_worker() -> None:
    """The hooks of the ingest and query workers (once per process, whichever worker imports first)."""
    if not _registered:
        register(before_snapshot=prime, after_restore=refresh)
        _registered.append(True)
