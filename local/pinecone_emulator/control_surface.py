"""``/_emulator/``: the tests' control of the emulator (no key): faults, counters, reset, state, journal.

control.py is its client. A request these handlers cannot read (a fault rule, a reset's parts, an
index state) is answered 400.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pinecone_emulator.app import Emulator
from pinecone_emulator.faults import FaultRule, FaultSpecError
from pinecone_emulator.wire import ApiError, Request, Response

FORCED_STATES = {"InitializationFailed", "Terminating", "Disabled", "Ready", "Initializing"}

type Handler = Callable[..., Response]


def _refuses_unreadable(handler: Handler) -> Handler:
    @functools.wraps(handler)
    def answer(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except (FaultSpecError, TypeError) as error:
            raise ApiError(400, str(error)) from None

    return answer


@_refuses_unreadable
def health(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, {"status": "ok", "base_url": emulator.base_url})


# ---------------------------------------------------------------------------------------------- counters
@_refuses_unreadable
def counters(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, _counter_report(emulator))


def _counter_report(emulator: Emulator) -> dict[str, Any]:
    with emulator.counter_lock:
        items = sorted(emulator.counters.items())
        transports = dict(emulator.transports)
        pending, applied = emulator.pending_applies, emulator.applied_under_faults
        lateness = emulator.max_apply_lateness_ms
    by_operation: dict[str, dict[str, int]] = {}
    by_key: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for (operation, status, key), count in items:
        by_operation.setdefault(operation, {})
        by_operation[operation][str(status)] = by_operation[operation].get(str(status), 0) + count
        by_key[key] = by_key.get(key, 0) + count
        by_status[str(status)] = by_status.get(str(status), 0) + count
    return {
        "total": sum(count for _, count in items),
        "in_flight": emulator.generations.in_flight(),
        "generation": emulator.generations.current,
        "pending_applies": pending,
        "applied_under_faults": applied,
        "max_apply_lateness_ms": round(lateness, 1),
        "requests": [
            {"operation": operation, "status": status, "api_key": key, "count": count}
            for (operation, status, key), count in items
        ],
        "by_operation": by_operation,
        "by_status": by_status,
        "by_api_key": by_key,
        "by_transport": transports,
    }


@_refuses_unreadable
def clear_counters(emulator: Emulator, request: Request) -> Response:
    emulator.clear_counters()
    return Response.json(200, {})


# ------------------------------------------------------------------------------------------------ faults
@_refuses_unreadable
def faults(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, emulator.faults.to_json())


@_refuses_unreadable
def configure_faults(emulator: Emulator, request: Request) -> Response:
    """PUT replaces every fault setting; POST changes only those given (rules are appended)."""
    emulator.faults.configure(request.json_object(), replace=request.method == "PUT")
    return Response.json(200, emulator.faults.to_json())


@_refuses_unreadable
def clear_faults(emulator: Emulator, request: Request) -> Response:
    emulator.faults.clear()
    return Response.json(200, emulator.faults.to_json())


@_refuses_unreadable
def add_fault_rule(emulator: Emulator, request: Request) -> Response:
    rule = FaultRule.from_json(request.json_object())
    emulator.faults.add_rule(rule)
    return Response.json(201, rule.to_json())


@_refuses_unreadable
def remove_fault_rule(emulator: Emulator, request: Request, *, rule_id: str) -> Response:
    if not emulator.faults.remove_rule(rule_id):
        raise ApiError(404, f"No fault rule {rule_id}")
    return Response.json(200, {})


@_refuses_unreadable
def flush_applies(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, {"applied": emulator.flush_applies()})


@_refuses_unreadable
def flush_indexing(emulator: Emulator, request: Request) -> Response:
    return Response.json(200, {"applied": emulator.flush_indexing()})


# --------------------------------------------------------------------------------------- state and reset
@_refuses_unreadable
def reset(emulator: Emulator, request: Request) -> Response:
    emulator.reset(**request.json_object(required=False))
    return Response.json(200, {})


@_refuses_unreadable
def snapshot(emulator: Emulator, request: Request) -> Response:
    emulator.changed()
    return Response.json(200, {})


@_refuses_unreadable
def state(emulator: Emulator, request: Request) -> Response:
    with emulator.lock:
        states = list(emulator.indexes.values())
    report = []
    for index in states:
        with index.lock:
            report.append(
                {
                    "name": index.name,
                    "host": emulator.index_host(index.name),
                    "dimension": index.dimension or None,
                    "metric": index.metric,
                    "namespaces": {name: len(data) for name, data in index.namespaces.items()},
                    "lsns": dict(sorted(index.lsns.items())),
                    "indexed_lsns": dict(sorted(index.indexed_lsns.items())),
                    "pending_writes": len(index.pending),
                }
            )
    return Response.json(200, {"indexes": report, "api_keys": [k.to_json() for k in emulator.keyring.list()]})


@_refuses_unreadable
def set_index_state(emulator: Emulator, request: Request, *, index: str) -> Response:
    """Force an index's status.state (InitializationFailed, Terminating, Disabled), or clear it (null)."""
    forced = request.json_object().get("state")
    if forced is not None and forced not in FORCED_STATES:
        raise ApiError(400, f"state must be one of {sorted(FORCED_STATES)} or null")
    state = emulator.get_index(index)
    if forced == "Ready":
        state.forced_state, state.ready_at = None, 0.0
    elif forced == "Initializing":
        state.forced_state, state.ready_at = None, float("inf")
    else:
        state.forced_state = forced
    return Response.json(200, {"state": emulator.get_index(index).status})


@_refuses_unreadable
def grpc_host(emulator: Emulator, request: Request, *, index: str) -> Response:
    """Where the index's data plane answers gRPC: its host, the one ``describe_index`` reports (REST and gRPC).

    Kept for clients written when gRPC had a port of its own."""
    emulator.get_index(index)  # 404 for an index that does not exist
    if emulator.index_endpoint is None:
        raise ApiError(501, "This emulator has no gRPC front end: it is served by pinecone_emulator.EmulatorServer")
    return Response.json(200, {"host": emulator.index_host(index)})


@_refuses_unreadable
def journal(emulator: Emulator, request: Request, *, index: str, namespace: str) -> Response:
    """What was applied to a namespace (or, with ``?id=``, one record of it), oldest first: for ordering tests."""
    ids = request.query.get("id")
    record_id = ids[0] if ids else None
    with emulator.lock:
        state = emulator.indexes.get(index)
        entries = list(state.journal) if state is not None else []
    return Response.json(
        200,
        {
            "entries": [
                entry.to_json()
                for entry in entries
                if entry.namespace == namespace and (record_id is None or entry.id == record_id)
            ]
        },
    )


@_refuses_unreadable
def no_route(emulator: Emulator, request: Request, *, rest: str) -> Response:
    raise ApiError(404, f"No emulator control route for {request.method} {request.path}")
