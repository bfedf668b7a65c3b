"""The emulator itself, independent of sockets: ``Emulator.handle(Request) -> Response``.

Routes (one port):

* ``/indexes``, ``/indexes/{name}``                      control plane, ``Api-Key``
* ``/data/{index}/...``                                  that index's data plane, ``Api-Key``
* ``/oauth/token``                                       OAuth client-credentials token
* ``/admin/...``                                         Admin API, ``Authorization: Bearer``
* ``/_emulator/...``                                     test control: faults, counters, reset, state
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pinecone_emulator import control_plane, data_plane
from pinecone_emulator.auth import ROLES, ApiKey, KeyRing, Project, anonymous_label, digest
from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.data_plane import APPLIED_AS
from pinecone_emulator.faults import FaultPlan, FaultRule, FaultSpecError, FaultStep
from pinecone_emulator.generations import Generations, Superseded, Ticket
from pinecone_emulator.store import IndexState
from pinecone_emulator.wire import ApiError, Request, Response, Surface, render_error

log = logging.getLogger("pinecone_emulator")
GRPC_MARKER = "X-Emulator-Transport"  # set by grpc_server on the REST requests it makes of gRPC calls

READ_OPERATIONS = {
    "list_indexes",
    "describe_index",
    "query",
    "fetch",
    "fetch_by_metadata",
    "describe_index_stats",
    "list",
    "describe_namespace",
    "list_namespaces",
}
CONTROL_OPERATIONS = {"create_index", "list_indexes", "describe_index", "configure_index", "delete_index"}
ROLE_GRANTS: dict[str, set[tuple[str, str]]] = {
    "ProjectEditor": {("control", "write"), ("control", "read"), ("data", "write"), ("data", "read")},
    "ProjectViewer": {("control", "read"), ("data", "read")},
    "ControlPlaneEditor": {("control", "write"), ("control", "read")},
    "ControlPlaneViewer": {("control", "read")},
    "DataPlaneEditor": {("data", "write"), ("data", "read")},
    "DataPlaneViewer": {("data", "read")},
}


@dataclass
class Route:
    surface: Surface
    operation: str
    handler: Callable[[], Response]
    index: str | None = None
    needs_key: bool = True


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.port = config.port
        self.lock = threading.RLock()
        self.indexes: dict[str, IndexState] = {}
        self.deleted_version = 0
        self.faults = FaultPlan(seed=config.seed)
        self.counters: Counter[tuple[str, int, str]] = Counter()
        self.transports: Counter[str] = Counter()  # data-plane requests by transport: "rest" or "grpc"
        self.counter_lock = threading.Lock()
        self.generations = Generations()  # a request from before a reset never reaches what follows it
        self.pending_applies = 0  # requests answered with a fault, still to be carried out (apply_after_ms)
        self._delayed: dict[object, tuple[threading.Timer, Route]] = {}
        self.applied_under_faults = 0  # requests carried out although the client was told they failed
        self.max_apply_lateness_ms = 0.0  # how much later than asked a held write landed (timer threads under load)
        self.revoked: dict[str, str] = {}  # key digest -> key id, so counters can name a revoked key
        self.keyring = KeyRing(
            project=Project(config.project_id, config.project_name, config.organization_id),
            client_id=config.client_id,
            client_secret_digest=digest(config.client_secret),
            initial_keys=list(config.api_keys),
            allow_any_key=config.allow_any_key,
        )
        self.keyring.reset()
        self._apply_startup_faults()
        self.on_change: Callable[[], None] | None = None  # persistence hook
        self._grpc: Any = None  # grpc_server.GrpcFrontEnd, made on first use (grpcio loads only then)

    def grpc_endpoint(self, index_name: str) -> str:
        """``http://host:port`` serving the index's data plane over gRPC (see grpc_server)."""
        self._get(index_name)  # 404 for an index that does not exist
        with self.lock:
            if self._grpc is None:
                from pinecone_emulator.grpc_server import GrpcFrontEnd

                self._grpc = GrpcFrontEnd(self, host=self.config.advertise_host or self.config.host)
            front_end = self._grpc
        return str(front_end.endpoint(index_name))

    def close(self) -> None:
        """Stop the gRPC listeners (the HTTP server is stopped by its owner)."""
        with self.lock:
            front_end, self._grpc = self._grpc, None
        if front_end is not None:
            front_end.stop()

    def _apply_startup_faults(self) -> None:
        if self.config.faults:
            self.faults.configure(self.config.faults, replace=True)

    # ----------------------------------------------------------------------------------------- hosts
    @property
    def base_url(self) -> str:
        return f"http://{self.config.advertise_host or self.config.host}:{self.port}"

    def index_host(self, name: str) -> str:
        return f"{self.base_url}/data/{name}"

    # -------------------------------------------------------------------------------------- dispatch
    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        route, label = None, "none"
        try:
            route = self._route(request)
        except ApiError as error:
            response = render_error(Surface.CONTROL, error)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = render_error(Surface.CONTROL, ApiError(500, "Internal error in the emulator"))
        else:
            if route.surface is Surface.EMULATOR:  # test control (a reset among them) is in no generation
                return self._stamp(self._serve(request, route)[0], started)
            with self.generations.request() as ticket:
                response, label = self._serve(request, route, ticket)
                if response is None:  # its generation ended: dropped, as by a restart, and not counted
                    return Response(status=0, drop=True)
                with self.counter_lock:
                    if not ticket.current:
                        return Response(status=0, drop=True)
                    self._count(request, route.operation, route.surface, response, label)
                return self._stamp(response, started)
        with self.counter_lock:
            self._count(request, "unknown", None, response, label)
        return self._stamp(response, started)

    def _serve(self, request: Request, route: Route, ticket: Ticket | None = None) -> tuple[Any, str]:
        """The route's response and the key label it is counted under; None for a superseded request."""
        label = "none"
        try:
            if route.needs_key:
                key = self._authenticate(request, route)
                label = key.id
            response = self._answer(route, ticket)
        except Superseded:
            return None, label
        except ApiError as error:
            response = render_error(route.surface, error)
            if error.status == 401:
                label = self._key_label(request)
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = render_error(route.surface, ApiError(500, "Internal error in the emulator"))
        return response, label

    def _count(self, request: Request, operation: str, surface: Surface | None, response: Response, label: str) -> None:
        """One request in the counters (the caller holds ``counter_lock``)."""
        self.counters[(operation, 0 if response.drop else response.status, label)] += 1
        if surface is Surface.DATA:
            self.transports["grpc" if request.header(GRPC_MARKER) else "rest"] += 1

    @staticmethod
    def _stamp(response: Response, started: float) -> Response:
        response.headers.setdefault("x-pinecone-request-id", str(secrets.randbits(62)))
        response.headers.setdefault("x-pinecone-request-latency-ms", str(int((time.monotonic() - started) * 1000)))
        return response

    def _key_label(self, request: Request) -> str:
        secret = request.header("Api-Key")
        if not secret:
            return "none"
        return self.revoked.get(digest(secret)) or anonymous_label(secret)

    def _authenticate(self, request: Request, route: Route) -> ApiKey:
        if route.surface is Surface.ADMIN:
            if not self.keyring.check_token(request.header("Authorization")):
                raise ApiError(401, "Unauthorized")
            return ApiKey("service-account", self.config.client_id, self.config.project_id, ["ProjectEditor"], "")
        key = self.keyring.identify(request.header("Api-Key"))
        if key is None:
            raise ApiError(401, "Unauthorized")
        plane = "control" if route.operation in CONTROL_OPERATIONS else "data"
        access = "read" if route.operation in READ_OPERATIONS else "write"
        if not any((plane, access) in ROLE_GRANTS.get(role, set()) for role in key.roles):
            raise ApiError(403, f"The API key's roles ({', '.join(key.roles)}) do not allow {route.operation}")
        return key

    def _answer(self, route: Route, ticket: Ticket | None) -> Response:
        """The route's own answer, or the fault in force: before, after or instead of carrying it out.

        With a ``ticket`` (every request but test control), a reset during the fault's latency, or
        before the request is carried out, supersedes it (raises Superseded)."""
        if route.surface is Surface.EMULATOR or ticket is None:
            return route.handler()
        if route.surface is Surface.DATA and route.index is not None:
            self._require_ready(route.index)
        decision = self.faults.decide(route.operation, route.index)
        if decision.latency_ms:
            ticket.wait(decision.latency_ms / 1000.0)
        ticket.check()
        step = decision.answer
        if step is None:
            return route.handler()
        if step.apply_after_ms is not None:
            self._apply_later(route, step.apply_after_ms / 1000.0)
        elif step.apply:
            token = APPLIED_AS.set("then-fault")
            try:
                route.handler()  # an invalid request raises its own error here: the fault answers only what landed
            finally:
                APPLIED_AS.reset(token)
            with self.counter_lock:
                self.applied_under_faults += 1
        return self._fault_response(route, step)

    def _apply_later(self, route: Route, seconds: float) -> None:
        """Carry ``route`` out ``seconds`` from now on a timer thread; its answer goes nowhere."""
        ticket = object()
        due = time.monotonic() + seconds
        scheduled = self.generations.ticket()

        def apply() -> None:
            with self.counter_lock:
                if self._delayed.pop(ticket, None) is None:
                    return  # flushed or dropped by a reset
                late_ms = (time.monotonic() - due) * 1000
                self.max_apply_lateness_ms = max(self.max_apply_lateness_ms, late_ms)
            with self.generations.request() as now:
                if now.generation == scheduled.generation:  # a reset since: it belongs to a test that ended
                    self._carry_out(route)

        timer = threading.Timer(seconds, apply)
        timer.daemon = True
        with self.counter_lock:
            self._delayed[ticket] = (timer, route)
            self.pending_applies = len(self._delayed)
        timer.start()

    def _carry_out(self, route: Route) -> None:
        token = APPLIED_AS.set("held")
        try:
            route.handler()
            landed = True
        except Exception:
            log.warning("a delayed %s was refused when it was carried out", route.operation, exc_info=True)
            landed = False
        finally:
            APPLIED_AS.reset(token)
        with self.counter_lock:
            self.pending_applies = len(self._delayed)
            self.applied_under_faults += landed

    def flush_applies(self) -> int:
        """Carry out every delayed request now, in the order they came; returns how many."""
        with self.counter_lock:
            delayed = list(self._delayed.values())
            self._delayed.clear()
        for timer, route in delayed:
            timer.cancel()
            self._carry_out(route)
        return len(delayed)

    def drop_applies(self) -> None:
        """Forget every delayed request (reset: a late write must not land in the next test's index)."""
        with self.counter_lock:
            for timer, _ in self._delayed.values():
                timer.cancel()
            self._delayed.clear()
            self.pending_applies = 0

    def _fault_response(self, route: Route, step: FaultStep) -> Response:
        if step.drop:
            return Response(status=0, drop=True)
        assert step.status is not None
        headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
        message = step.message or _fault_message(step.status)
        return render_error(route.surface, ApiError(step.status, message, headers=headers))

    def admit(self, operation: str, index: str) -> Callable[[str], None]:
        def check(namespace: str) -> None:
            if self.faults.over_rate_limit(operation, index, namespace):
                limit = self.faults.rate_limit
                headers = {"Retry-After": limit.retry_after} if limit.retry_after is not None else {}
                raise ApiError(
                    429,
                    f"Request failed. You've reached the max {operation} requests per second limit "
                    f"({_rate(limit.requests_per_second, limit.window_seconds)}) for namespace {namespace}. "
                    "Please try again later.",
                    headers=headers,
                )

        return check

    # ---------------------------------------------------------------------------------------- routes
    def _route(self, request: Request) -> Route:
        method, parts = request.method, [unquote(p) for p in request.path.split("/")[1:]]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]
        head = parts[0] if parts else ""
        if head == "_emulator":
            return Route(Surface.EMULATOR, "emulator", lambda: self._emulator(request, parts[1:]), needs_key=False)
        if head == "oauth" and parts[1:] == ["token"] and method == "POST":
            return Route(Surface.OAUTH, "oauth_token", lambda: self._oauth(request), needs_key=False)
        if head == "admin":
            return self._admin_route(request, parts[1:])
        if head == "indexes":
            return self._control_route(request, parts[1:])
        if head == "data" and len(parts) >= 2:
            return self._data_route(request, parts[1], parts[2:])
        raise ApiError(404, f"No route for {method} {request.path}")

    def _control_route(self, request: Request, rest: list[str]) -> Route:
        method = request.method
        if not rest:
            if method == "GET":
                return Route(Surface.CONTROL, "list_indexes", self._list_indexes)
            if method == "POST":
                return Route(Surface.CONTROL, "create_index", lambda: self._create_index(request))
        elif len(rest) == 1:
            name = rest[0]
            if name == "create-for-model" and method == "POST":
                return Route(Surface.CONTROL, "create_index_for_model", lambda: _not_emulated("create_index_for_model"))
            if method == "GET":
                return Route(Surface.CONTROL, "describe_index", lambda: self._describe_index(name), index=name)
            if method == "PATCH":
                return Route(
                    Surface.CONTROL, "configure_index", lambda: self._configure_index(request, name), index=name
                )
            if method == "DELETE":
                return Route(Surface.CONTROL, "delete_index", lambda: self._delete_index(name), index=name)
        raise ApiError(404, f"No route for {method} {request.path}")

    def _data_route(self, request: Request, index_name: str, rest: list[str]) -> Route:
        method, path = request.method, "/".join(rest)
        table: dict[tuple[str, str], tuple[str, Callable[[data_plane.DataContext, Request], Response]]] = {
            ("POST", "vectors/upsert"): ("upsert", data_plane.upsert),
            ("POST", "query"): ("query", data_plane.query),
            ("GET", "vectors/fetch"): ("fetch", data_plane.fetch),
            ("POST", "vectors/fetch_by_metadata"): ("fetch_by_metadata", data_plane.fetch_by_metadata),
            ("POST", "vectors/delete"): ("delete", data_plane.delete),
            ("POST", "vectors/update"): ("update", data_plane.update),
            ("POST", "describe_index_stats"): ("describe_index_stats", data_plane.describe_index_stats),
            ("GET", "describe_index_stats"): ("describe_index_stats", data_plane.describe_index_stats),
            ("GET", "vectors/list"): ("list", data_plane.list_vectors),
            ("POST", "namespaces"): ("create_namespace", data_plane.create_namespace),
            ("GET", "namespaces"): ("list_namespaces", data_plane.list_namespaces),
        }
        if (method, path) in table:
            operation, handler = table[(method, path)]
            return Route(
                Surface.DATA,
                operation,
                lambda: self._on_index(index_name, operation, lambda ctx: handler(ctx, request)),
                index=index_name,
            )
        if len(rest) == 2 and rest[0] == "namespaces" and method in ("GET", "DELETE"):
            name = rest[1]
            if method == "GET":
                return Route(
                    Surface.DATA,
                    "describe_namespace",
                    lambda: self._on_index(
                        index_name, "describe_namespace", lambda ctx: data_plane.describe_namespace(ctx, request, name)
                    ),
                    index=index_name,
                )
            return Route(
                Surface.DATA,
                "delete_namespace",
                lambda: self._on_index(
                    index_name, "delete_namespace", lambda ctx: data_plane.delete_namespace(ctx, request, name)
                ),
                index=index_name,
            )
        if rest and rest[0] in ("records", "bulk", "documents"):
            operation = {"records": "records", "bulk": "bulk_import", "documents": "documents"}[rest[0]]
            return Route(Surface.DATA, operation, lambda: _not_emulated(operation), index=index_name)
        raise ApiError(404, f"No route for {method} {request.path}")

    def _on_index(self, name: str, operation: str, handler: Callable[[data_plane.DataContext], Response]) -> Response:
        with self.lock:
            index = self.indexes.get(name)
        if index is None:
            raise ApiError(404, f"Index {name} not found")
        if not index.serves_vectors:
            raise ApiError(400, "This index has no vector fields; the vectors API cannot be used with it")
        with index.lock:
            response = handler(data_plane.DataContext(index, self.faults.lag_seconds, self.admit(operation, name)))
        if operation not in READ_OPERATIONS:
            self._changed()
        return response

    # --------------------------------------------------------------------------------- control plane
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _list_indexes(self) -> Response:
        with self.lock:
            states = list(self.indexes.values())
        return Response.json(200, {"indexes": [control_plane.index_model(s, self.index_host(s.name)) for s in states]})

    def _require_ready(self, name: str) -> None:
        """A data-plane call to an index that is not Ready gets Pinecone's 503 (the SDK and workers retry it)."""
        with self.lock:
            state = self.indexes.get(name)
        if state is not None and state.status != "Ready":
            raise ApiError(503, f"Index {name} is not ready: its state is {state.status}")

    def set_index_state(self, name: str, state_name: str | None) -> None:
        """Force an index's status.state (InitializationFailed, Terminating, Disabled), or clear it (None)."""
        allowed = {"InitializationFailed", "Terminating", "Disabled", "Ready", "Initializing"}
        if state_name is not None and state_name not in allowed:
            raise ApiError(400, f"state must be one of {sorted(allowed)} or null")
        state = self._get(name)
        if state_name == "Ready":
            state.forced_state, state.ready_at = None, 0.0
        elif state_name == "Initializing":
            state.forced_state, state.ready_at = None, float("inf")
        else:
            state.forced_state = state_name

    def _get(self, name: str) -> IndexState:
        with self.lock:
            state = self.indexes.get(name)
        if state is None:
            raise ApiError(404, f"Resource {name} not found")
        return state

    def _create_index(self, request: Request) -> Response:
        body = request.json_object()
        state = control_plane.new_index(body)
        state.ready_at = time.monotonic() + self.faults.index_ready_after_ms / 1000.0
        with self.lock:
            if state.name in self.indexes:
                raise ApiError(409, f"Resource {state.name} already exists")
            self.indexes[state.name] = state
        self._changed()
        return Response.json(201, control_plane.index_model(state, self.index_host(state.name)))

    def _describe_index(self, name: str) -> Response:
        state = self._get(name)
        return Response.json(200, control_plane.index_model(state, self.index_host(name)))

    def _configure_index(self, request: Request, name: str) -> Response:
        state = self._get(name)
        body = request.json_object()
        with state.lock:
            control_plane.configure_index(state, body)
            state.version += 1
        self._changed()
        return Response.json(200, control_plane.index_model(state, self.index_host(name)))

    def _delete_index(self, name: str) -> Response:
        state = self._get(name)
        if state.deletion_protection == "enabled":
            raise ApiError(
                403,
                f"Deletion protection is enabled for this index. Disable deletion protection before retrying: {name}",
            )
        with self.lock:
            self.indexes.pop(name, None)
            self.deleted_version += 1
        self._changed()
        return Response(status=202, body=b"", content_type=None)

    # ------------------------------------------------------------------------------- oauth and admin
    def _oauth(self, request: Request) -> Response:
        content_type = request.header("Content-Type") or ""
        if "application/x-www-form-urlencoded" in content_type:
            body: dict[str, Any] = {k: v[0] for k, v in Request("POST", "", request.body.decode(), {}).query.items()}
        else:
            try:
                body = request.json_object()
            except ApiError:
                raise ApiError(400, "Malformed token request", code="invalid_request") from None
        if body.get("grant_type") != "client_credentials":
            raise ApiError(400, "Only the client_credentials grant is supported", code="unsupported_grant_type")
        if not self.keyring.check_client(body.get("client_id"), body.get("client_secret")):
            raise ApiError(401, "Unauthorized", code="access_denied")
        token = self.keyring.mint_token()
        from pinecone_emulator.auth import TOKEN_LIFETIME_SECONDS

        return Response.json(200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS})

    def _admin_route(self, request: Request, rest: list[str]) -> Route:
        method = request.method
        project = self.keyring.project

        def route(operation: str, handler: Callable[[], Response]) -> Route:
            return Route(Surface.ADMIN, operation, handler)

        if rest == ["projects"] and method == "GET":
            return route("admin_list_projects", lambda: Response.json(200, {"data": [project.to_json()]}))
        if len(rest) == 2 and rest[0] == "projects" and method == "GET":
            return route("admin_describe_project", lambda: Response.json(200, self._project(rest[1]).to_json()))
        if len(rest) == 3 and rest[0] == "projects" and rest[2] == "api-keys":
            if method == "GET":
                return route("admin_list_api_keys", lambda: self._list_keys(rest[1]))
            if method == "POST":
                return route("admin_create_api_key", lambda: self._create_key(request, rest[1]))
        if len(rest) == 2 and rest[0] == "api-keys":
            key_id = rest[1]
            if method == "GET":
                return route("admin_describe_api_key", lambda: Response.json(200, self._key(key_id).to_json()))
            if method == "PATCH":
                return route("admin_update_api_key", lambda: self._update_key(request, key_id))
            if method == "DELETE":
                return route("admin_delete_api_key", lambda: self._delete_key(key_id))
        if rest == ["organizations"] and method == "GET":
            return route("admin_list_organizations", lambda: Response.json(200, {"data": [self._organization()]}))
        if len(rest) == 2 and rest[0] == "organizations" and method == "GET":
            return route("admin_describe_organization", lambda: self._describe_organization(rest[1]))
        return route("admin_other", lambda: _not_emulated(f"Admin API {method} /admin/{'/'.join(rest)}"))

    def _organization(self) -> dict[str, Any]:
        return {
            "id": self.config.organization_id,
            "name": "emulator",
            "plan": "Standard",
            "payment_status": "Active",
            "created_at": "2026-01-01T00:00:00Z",
            "support_tier": "Free",
        }

    def _describe_organization(self, org_id: str) -> Response:
        if org_id != self.config.organization_id:
            raise ApiError(404, f"Organization {org_id} not found")
        return Response.json(200, self._organization())

    def _project(self, project_id: str) -> Project:
        if project_id != self.keyring.project.id:
            raise ApiError(404, f"Project {project_id} not found")
        return self.keyring.project

    def _key(self, key_id: str) -> ApiKey:
        key = self.keyring.get(key_id)
        if key is None:
            raise ApiError(404, f"API key {key_id} not found")
        return key

    def _list_keys(self, project_id: str) -> Response:
        self._project(project_id)
        return Response.json(200, {"data": [k.to_json() for k in self.keyring.list()]})

    @staticmethod
    def _roles(raw: object) -> list[str]:
        if not isinstance(raw, list) or not raw or not all(r in ROLES for r in raw):
            raise ApiError(400, f"roles must be a non-empty array of: {', '.join(ROLES)}")
        return list(raw)

    @staticmethod
    def _key_name(raw: object) -> str:
        if not isinstance(raw, str) or not 1 <= len(raw) <= 80:
            raise ApiError(400, "name must be a string of 1 to 80 characters")
        return raw

    def _create_key(self, request: Request, project_id: str) -> Response:
        self._project(project_id)
        body = request.json_object()
        name = self._key_name(body.get("name"))
        roles = self._roles(body["roles"]) if body.get("roles") is not None else ["ProjectEditor"]
        key, secret = self.keyring.create_key(name, roles)
        self._changed()
        return Response.json(201, {"key": key.to_json(), "value": secret})

    def _update_key(self, request: Request, key_id: str) -> Response:
        key = self._key(key_id)
        body = request.json_object()
        if body.get("name") is not None:
            key.name = self._key_name(body["name"])
        if body.get("roles") is not None:
            key.roles = self._roles(body["roles"])
        self._changed()
        return Response.json(200, key.to_json())

    def _delete_key(self, key_id: str) -> Response:
        key = self._key(key_id)
        self.keyring.delete(key_id)
        self.revoked[key.secret_digest] = key.id
        self._changed()
        return Response(status=202, body=b"", content_type=None)

    # ------------------------------------------------------------------------------ emulator control
    def _emulator(self, request: Request, rest: list[str]) -> Response:
        method = request.method
        try:
            if rest == ["health"]:
                return Response.json(200, {"status": "ok", "base_url": self.base_url})
            if rest == ["counters"]:
                if method == "DELETE":
                    self.clear_counters()
                    return Response.json(200, {})
                return Response.json(200, self.counter_report())
            if rest == ["faults"]:
                if method == "GET":
                    return Response.json(200, self.faults.to_json())
                if method in ("PUT", "POST"):
                    self.faults.configure(request.json_object(), replace=method == "PUT")
                    return Response.json(200, self.faults.to_json())
                if method == "DELETE":
                    self.faults.clear()
                    return Response.json(200, self.faults.to_json())
            if rest == ["faults", "rules"] and method == "POST":
                rule = FaultRule.from_json(request.json_object())
                self.faults.add_rule(rule)
                return Response.json(201, rule.to_json())
            if len(rest) == 3 and rest[:2] == ["faults", "rules"] and method == "DELETE":
                if not self.faults.remove_rule(rest[2]):
                    raise ApiError(404, f"No fault rule {rest[2]}")
                return Response.json(200, {})
            if rest == ["applies", "flush"] and method == "POST":
                return Response.json(200, {"applied": self.flush_applies()})
            if rest == ["reset"] and method == "POST":
                self.reset(**request.json_object(required=False))
                return Response.json(200, {})
            if rest == ["state"] and method == "GET":
                return Response.json(200, self.state_report())
            if len(rest) == 3 and rest[0] == "indexes" and rest[2] == "state" and method == "PUT":
                self.set_index_state(rest[1], request.json_object().get("state"))
                return Response.json(200, {"state": self._get(rest[1]).status})
            if len(rest) == 3 and rest[0] == "indexes" and rest[2] == "grpc" and method == "GET":
                return Response.json(200, {"host": self.grpc_endpoint(rest[1])})
            if len(rest) == 3 and rest[0] == "journal" and method == "GET":
                return Response.json(
                    200, {"entries": self.journal(rest[1], rest[2], (request.query.get("id") or [None])[0])}
                )
            if rest == ["snapshot"] and method == "POST":
                self._changed()
                return Response.json(200, {})
        except FaultSpecError as error:
            raise ApiError(400, str(error)) from None
        except TypeError as error:
            raise ApiError(400, str(error)) from None
        raise ApiError(404, f"No emulator control route for {method} {request.path}")

    def journal(self, index_name: str, namespace: str, record_id: str | None) -> list[dict[str, Any]]:
        """What was applied to a namespace (or one record of it), oldest first: for diagnosing ordering tests."""
        with self.lock:
            index = self.indexes.get(index_name)
            entries = list(index.journal) if index is not None else []
        return [
            {"at": at, "op": op, "id": rid, "version": version, "how": how}
            for at, op, ns, rid, version, how in entries
            if ns == namespace and (record_id is None or rid == record_id)
        ]

    def clear_counters(self) -> None:
        with self.counter_lock:
            self.counters.clear()
            self.transports.clear()
            self.applied_under_faults = 0
            self.max_apply_lateness_ms = 0.0

    def counter_report(self) -> dict[str, Any]:
        with self.counter_lock:
            items = sorted(self.counters.items())
            transports = dict(self.transports)
            pending, applied, lateness = self.pending_applies, self.applied_under_faults, self.max_apply_lateness_ms
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
            "in_flight": self.generations.in_flight(),
            "generation": self.generations.current,
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

    def reset(self, *, data: bool = True, faults: bool = True, counters: bool = True, keys: bool = True) -> None:
        """Start afresh: requests still inside from before are dropped (generations.py), then the parts asked for."""
        if not self.generations.advance():
            log.warning("requests from before the reset were still running after 30 s; they are dropped when done")
        if data:
            self.drop_applies()
            with self.lock:
                self.indexes.clear()
                self.deleted_version += 1
        if faults:
            self.faults.clear()
            self._apply_startup_faults()
        if counters:
            self.clear_counters()
        if keys:
            self.keyring.reset()
            self.revoked.clear()
        self._changed()

    def state_report(self) -> dict[str, Any]:
        with self.lock:
            states = list(self.indexes.values())
        report = []
        for state in states:
            with state.lock:
                report.append(
                    {
                        "name": state.name,
                        "host": self.index_host(state.name),
                        "dimension": state.dimension or None,
                        "metric": state.metric,
                        "namespaces": {name: len(data) for name, data in state.namespaces.items()},
                        "lsn": state.lsn,
                        "indexed_lsn": state.indexed_lsn,
                        "pending_writes": len(state.pending),
                    }
                )
        return {"indexes": report, "api_keys": [k.to_json() for k in self.keyring.list()]}


def _rate(requests: int, window_seconds: float) -> str:
    if window_seconds == 1.0:
        return f"{requests}/s"
    return f"{requests} per {window_seconds:g} s"


def _fault_message(status: int) -> str:
    return {
        429: "Too many requests. Please retry shortly.",
        500: "Internal server error",
        502: "Bad gateway",
        503: "Service unavailable. Please retry shortly.",
        504: "Upstream request timed out",
    }.get(status, f"Injected fault {status}")


def _not_emulated(what: str) -> Response:
    raise ApiError(501, f"{what} is not emulated by pinecone_emulator")
