"""The emulator's core, apart from sockets and from any one API: its state, keys, faults and counters.

:class:`Emulator` holds the indexes, the key ring, the fault plan and the counters, and carries every
request that routes.py has matched to a :class:`Route` through the same steps (:meth:`Emulator.serve`):

* its reset generation (generations.py): a request from before a reset is dropped, neither counted
  nor carried out;
* its key: the ``Api-Key``'s roles (auth.py), or the Admin API's bearer token;
* the faults in force (faults.py): latency, then the route's own answer, or the fault's, before,
  after or instead of carrying the request out; the namespace rate limit (:meth:`Emulator.admit`);
* the counters: by operation, status and key, and data-plane requests by transport.

The surfaces' handlers (control_plane, data_plane, writes, namespaces, admin_api, control_surface)
take the emulator as an argument; this module imports none of them.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pinecone_emulator.auth import ApiKey, KeyRing, Project, anonymous_label, digest, permits
from pinecone_emulator.config import EmulatorConfig
from pinecone_emulator.faults import FaultPlan, FaultStep
from pinecone_emulator.generations import Generations, Superseded, Ticket
from pinecone_emulator.store import APPLIED_AS, IndexState
from pinecone_emulator.wire import GRPC_MARKER, ApiError, Request, Response, Surface, render_error

log = logging.getLogger("pinecone_emulator")


@dataclass(frozen=True)
class Route:
    """A request matched to its handler (routes.py); ``handler`` carries it out and answers it."""

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
        # what an index created from now on reads to tell whether a write's indexing lag has passed; a test
        # replaces it with a clock it advances, so "readable after the lag" is decided without the wall clock
        self.indexing_clock: Callable[[], float] = time.monotonic
        # index name -> "http://host:port", the index's own host (REST and gRPC); set by the server that owns the
        # sockets (server.py). Without one (requests handed to routes.handle in process) an index's host is the
        # emulator's URL with /data/<index>, which every emulator serves too.
        self.index_endpoint: Callable[[str], str] | None = None
        self.index_ports: dict[str, int] = {}  # index name -> its host's port, saved with the indexes (--data-dir)

    def _apply_startup_faults(self) -> None:
        if self.config.faults:
            self.faults.configure(self.config.faults, replace=True)

    # ----------------------------------------------------------------------------------- hosts, indexes
    @property
    def base_url(self) -> str:
        return f"http://{self.config.advertise_host or self.config.host}:{self.port}"

    def index_host(self, name: str) -> str:
        """What ``describe_index`` reports as the index's ``host``."""
        if self.index_endpoint is not None:
            return self.index_endpoint(name)
        return f"{self.base_url}/data/{name}"

    def get_index(self, name: str) -> IndexState:
        with self.lock:
            state = self.indexes.get(name)
        if state is None:
            raise ApiError(404, f"Resource {name} not found")
        return state

    def require_ready(self, name: str) -> None:
        """A data-plane call to an index that is not Ready gets Pinecone's 503 (the SDK and workers retry it)."""
        with self.lock:
            state = self.indexes.get(name)
        if state is not None and state.status != "Ready":
            raise ApiError(503, f"Index {name} is not ready: its state is {state.status}")

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # ----------------------------------------------------------------------------------------- serving
    def serve(self, request: Request, route: Route) -> Response:
        """``route``'s answer to ``request``: key, faults, counters (test control: none of them)."""
        started = time.monotonic()
        if route.surface is Surface.EMULATOR:  # test control (a reset among them) is in no generation
            response, _ = self._serve(request, route)
            assert response is not None  # only a request with a ticket can be superseded
            return _stamp(response, started)
        with self.generations.request() as ticket:
            response, label = self._serve(request, route, ticket)
            if response is None:  # its generation ended: dropped, as by a restart, and not counted
                return Response(status=0, drop=True)
            with self.counter_lock:
                if not ticket.current:
                    return Response(status=0, drop=True)
                self._count(request, route.operation, route.surface, response, label)
            return _stamp(response, started)

    def refuse(self, request: Request, error: ApiError) -> Response:
        """The answer to a request that matches no route, counted as the operation "unknown"."""
        started = time.monotonic()
        response = render_error(Surface.CONTROL, error)
        with self.counter_lock:
            self._count(request, "unknown", None, response, "none")
        return _stamp(response, started)

    def _serve(self, request: Request, route: Route, ticket: Ticket | None = None) -> tuple[Response | None, str]:
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

    # -------------------------------------------------------------------------------------------- keys
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
        if not permits(key.roles, route.operation):
            raise ApiError(403, f"The API key's roles ({', '.join(key.roles)}) do not allow {route.operation}")
        return key

    # ------------------------------------------------------------------------------------------ faults
    def _answer(self, route: Route, ticket: Ticket | None) -> Response:
        """The route's own answer, or the fault in force: before, after or instead of carrying it out.

        With a ``ticket`` (every request but test control), a reset during the fault's latency, or
        before the request is carried out, supersedes it (raises Superseded)."""
        if route.surface is Surface.EMULATOR or ticket is None:
            return route.handler()
        if route.surface is Surface.DATA and route.index is not None:
            self.require_ready(route.index)
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
        return _fault_response(route, step)

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

    def flush_indexing(self) -> int:
        """Make every committed write readable now, whatever the indexing lag; returns how many were waiting.

        A test that must see a write indexed calls this instead of waiting out the lag on the wall clock."""
        with self.lock:
            indexes = list(self.indexes.values())
        applied = 0
        for index in indexes:
            with index.lock:
                applied += index.catch_up(0)
        if applied:
            self.changed()
        return applied

    def drop_applies(self) -> None:
        """Forget every delayed request (reset: a late write must not land in the next test's index)."""
        with self.counter_lock:
            for timer, _ in self._delayed.values():
                timer.cancel()
            self._delayed.clear()
            self.pending_applies = 0

    def admit(self, operation: str, index: str) -> Callable[[str], None]:
        """A check for the data plane: raises Pinecone's 429 when a namespace is over the rate limit."""

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

    # ---------------------------------------------------------------------------------- counters, reset
    def clear_counters(self) -> None:
        with self.counter_lock:
            self.counters.clear()
            self.transports.clear()
            self.applied_under_faults = 0
            self.max_apply_lateness_ms = 0.0

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
        self.changed()


def _stamp(response: Response, started: float) -> Response:
    response.headers.setdefault("x-pinecone-request-id", str(secrets.randbits(62)))
    response.headers.setdefault("x-pinecone-request-latency-ms", str(int((time.monotonic() - started) * 1000)))
    return response


def _fault_response(route: Route, step: FaultStep) -> Response:
    if step.drop:
        return Response(status=0, drop=True)
    assert step.status is not None
    headers = {"Retry-After": step.retry_after} if step.retry_after is not None else {}
    message = step.message or _fault_message(step.status)
    return render_error(route.surface, ApiError(step.status, message, headers=headers))


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
