"""The local stack: moto's server, the Pinecone emulator, the template's resources, and the functions' pollers.

:class:`LocalStack` starts everything on loopback ports, creates the resources of template.yaml
in moto (:mod:`relay_local.provisioning`), creates the index in the emulator, puts the emulator's
API key into the template's secret and the tenants into its registry parameter, and (unless told
not to) starts one :class:`~relay_local.event_source.EventSourcePoller` per SQS event of the
template, each running the function under ``awslambdaric`` in its own processes. Unless told not
to, it also puts into moto's CloudWatch what CloudWatch would hold in AWS: the metrics in the
functions' EMF lines (:mod:`relay_local.metrics_feed`), and Lambda's and SQS's own
(:mod:`relay_local.aws_metrics`). With ``StackOptions(tracing=True)`` (or the template parameter
``Tracing=true`` among its parameters) it does what X-Ray active tracing does in AWS: the functions
trace, each invocation gets Lambda's sampled trace header (:mod:`relay_local.active_tracing`), and the
segments they send to the X-Ray daemon's address are collected on loopback
(:mod:`relay_local.xray_collector`) into ``<state dir>/traces.jsonl``.

It writes ``<state dir>/stack.json`` (endpoints, queue URLs, the functions' environments; never the
API key) so ``status`` and ``invoke`` can find a running stack. With a data directory the emulator
keeps its indexes there, and the stack keeps the tenant registry, the version guard's table and the
results bucket beside them (:mod:`relay_local.aws_state`); it says at start what it kept and what
starts empty.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from pinecone_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_PROJECT_ID
from pinecone_emulator.control import EmulatorControl
from relay_local.aws_metrics import DEFAULT_QUEUE_PERIOD_SECONDS, QueueMetrics, invocation_metrics
from relay_local.aws_state import AwsState, registry_tenants
from relay_local.cloudformation import ROOT, FunctionSpec, LocalTemplate, PhysicalResource
from relay_local.event_source import BatchOutcome, EnvironmentPool, EventSourceConfig, EventSourcePoller
from relay_local.inspection import namespace_counts
from relay_local.metrics_feed import MetricsFeed
from relay_local.moto_server import MotoServer, MotoServerError
from relay_local.provisioning import CreatedResource, Provisioner, aws_client
from relay_local.runtime import FunctionRuntimeConfig, RuntimeEnvironment
from relay_local.sample_deployment import (
    INDEX_NAME,
    SAMPLE_DIMENSION,
    SAMPLE_METRIC,
    SAMPLE_REPLY_QUEUE_NAME,
    SAMPLE_SCHEMAS,
    SAMPLE_TENANTS,
    local_parameters,
)
from relay_local.state_file import (
    DEFAULT_STATE_DIR,
    OUTPUTS_FILE,
    STATE_FILE,
    TRACES_FILE,
    StackInfo,
    ensure_state_dir,
)
from relay_local.xray_collector import XRayCollector

DEFAULT_AWS_PORT = 4566
DEFAULT_PINECONE_PORT = 5080


def oauth_url(pinecone_url: str) -> str:
    """The emulator's OAuth token endpoint: where the rotation function signs in to the Admin API."""
    return f"{pinecone_url}/oauth/token"


def mask(secret: str) -> str:
    """Enough of a secret to tell two apart, never the secret."""
    return f"{secret[:4]}…({len(secret)} chars)"


@dataclass
class StackOptions:
    aws_port: int = 0  # 0 = a free port
    pinecone_port: int = 0
    state_dir: Path = DEFAULT_STATE_DIR
    data_dir: Path | None = None  # the emulator keeps its indexes here across restarts
    index_name: str = INDEX_NAME
    index_ready_after: float = 2.0  # seconds a new index stays Initializing in the emulator, as Pinecone's do
    dimension: int = SAMPLE_DIMENSION
    metric: str = SAMPLE_METRIC
    tenants: dict[str, str] = field(default_factory=lambda: dict(SAMPLE_TENANTS))
    schemas: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(SAMPLE_SCHEMAS))
    parameters: dict[str, str] = field(default_factory=dict)  # more template parameter overrides
    pollers: bool = True
    poll_wait_seconds: int = 1
    function_logs: str = "file"  # "file" (<state dir>/logs/<function>.log) or "stderr"
    write_state_file: bool = True
    # Into moto's CloudWatch: the functions' EMF metrics, AWS/Lambda per invocation, AWS/SQS (docs/local-stack.md).
    cloudwatch_metrics: bool = True
    queue_metrics_seconds: float = DEFAULT_QUEUE_PERIOD_SECONDS  # AWS/SQS every this many seconds (AWS: 60)
    # X-Ray as with active tracing: deploy with Tracing=true, collect the segments in <state dir>/traces.jsonl.
    tracing: bool = False


class StartupError(RuntimeError):
    """The stack could not start; the message says why (a port taken, a process that did not start)."""


class LocalStack:
    def __init__(
        self,
        options: StackOptions | None = None,
        *,
        progress: Callable[[str], None] = print,
        on_batch: Callable[[BatchOutcome], None] | None = None,
        on_child: Callable[[str, int], None] | None = None,
    ) -> None:
        self.options = options or StackOptions()
        self.progress = progress
        self.on_batch = on_batch
        self.on_child = on_child  # told of each process started in a session of its own (make down's record)
        self.api_key = "pclocal-" + secrets.token_urlsafe(18)
        self.moto: MotoServer | None = None
        self.aws_state: AwsState | None = None
        self.emulator: subprocess.Popen[str] | None = None
        self.template: LocalTemplate | None = None
        self.provisioner: Provisioner | None = None
        self.info: StackInfo | None = None
        self.pollers: dict[str, EventSourcePoller] = {}
        self.metrics_feed: MetricsFeed | None = None
        self.queue_metrics: QueueMetrics | None = None
        self.xray: XRayCollector | None = None  # the X-Ray daemon's stand-in, when the functions trace
        self.created: list[CreatedResource] = []
        self._logs: list[IO[str]] = []
        self._state_file: Path | None = None
        self._grpc_host = ""

    # ------------------------------------------------------------------ start
    def start(self) -> LocalStack:
        options = self.options
        state_dir = ensure_state_dir(options.state_dir)
        try:
            aws_endpoint = self._start_moto()
            pinecone_url = self._start_emulator(state_dir)
            index_host = self._provision(aws_endpoint, pinecone_url)
            self._grpc_host = EmulatorControl(pinecone_url).grpc_host(options.index_name)
            if self.traces:
                self._start_xray(state_dir)
            self.info = self._describe(aws_endpoint, pinecone_url, index_host)
            self._keep_aws_state()
            if options.cloudwatch_metrics:
                self._start_metrics()
            if options.pollers:
                self._start_pollers(state_dir)
            if self.aws_state is not None:
                self.aws_state.start_saving(on_error=self.progress)
            if options.write_state_file:
                self._state_file = state_dir / STATE_FILE
                outputs_file = state_dir / OUTPUTS_FILE
                outputs_file.write_text(json.dumps(self.info.outputs, indent=2) + "\n")
                self.info.outputs_file = str(outputs_file)
                self.info.save(self._state_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        started = time.monotonic()
        try:
            self.moto = MotoServer(self.options.aws_port)
        except MotoServerError as error:
            raise StartupError(str(error)) from None
        host, port = self.moto.address
        endpoint = f"http://{host}:{port}"
        self.progress(f"moto's AWS server on {endpoint} ({time.monotonic() - started:.1f} s)")
        return endpoint

    def _start_emulator(self, state_dir: Path) -> str:
        started = time.monotonic()
        command = [
            sys.executable,
            "-m",
            "pinecone_emulator",
            "--port",
            str(self.options.pinecone_port),
            "--api-key",
            self.api_key,
            "--index-ready-after",
            str(self.options.index_ready_after),
        ]
        if self.options.data_dir is not None:
            self.options.data_dir.mkdir(parents=True, exist_ok=True)
            command += ["--data-dir", str(self.options.data_dir)]
        log = self._open_log(state_dir, "pinecone-emulator")
        self.emulator = subprocess.Popen(  # noqa: S603 - our interpreter and the emulator module
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C goes to the stack, which stops the emulator with SIGTERM
        )
        if self.on_child is not None:
            self.on_child("pinecone-emulator", self.emulator.pid)
        assert self.emulator.stdout is not None
        line = self.emulator.stdout.readline().strip()
        if not line.startswith("pinecone-emulator listening on "):
            log.flush()
            last = (Path(log.name).read_text().strip().splitlines() or ["no output"])[-1]
            raise StartupError(f"the Pinecone emulator did not start: {line or last} (log: {log.name})")
        stdout = self.emulator.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()  # keep the pipe drained
        url = line.rsplit(" ", 1)[1]
        where = f", data in {self.options.data_dir}" if self.options.data_dir else ""
        self.progress(
            f"Pinecone emulator on {url} (API key {mask(self.api_key)}{where}; {time.monotonic() - started:.1f} s)"
        )
        return url

    def _create_index(self, pinecone_url: str, logical_id: str) -> str:
        """Custom::PineconeIndex, through the function's own code path: create or adopt, wait until Ready."""
        from vector_relay.operations.index_resource import handle
        from vector_relay.pinecone.control_plane import PineconeIndexAdmin

        t = self.template
        assert t is not None
        properties = t.resolve(t.properties(logical_id))
        answers: list[Mapping[str, Any]] = []
        started = time.monotonic()

        def sleep(seconds: float) -> None:
            self.progress(f"  index {properties['Name']}: Initializing ({time.monotonic() - started:.1f} s), polling")
            time.sleep(seconds)

        def hand_over(event: Any) -> None:
            raise RuntimeError("the local index took longer than the function's own time to get ready")

        event = {
            "RequestType": "Create",
            "ResponseURL": "local://",
            "StackId": f"arn:aws:cloudformation:{t.region}:000000000000:stack/{t.stack_name}/local",
            "RequestId": "local-create",
            "LogicalResourceId": logical_id,
            "ResourceType": "Custom::PineconeIndex",
            "ResourceProperties": properties,
        }
        handle(
            event,
            admin=lambda: PineconeIndexAdmin(api_key=self.api_key, control_host=pinecone_url),
            time_left=lambda: 600.0,
            respond=answers.append,
            reinvoke=hand_over,
            sleep=sleep,
        )
        [answer] = answers
        if answer["Status"] != "SUCCESS":
            raise RuntimeError(f"Custom::PineconeIndex {logical_id} failed: {answer['Reason']}")
        data = answer["Data"]
        t.physical[logical_id] = PhysicalResource(ref=answer["PhysicalResourceId"], attributes=dict(data))
        self.progress(
            f"  {logical_id:24} {data['Name']}: {answer['Reason']}; Ready after {time.monotonic() - started:.1f} s"
        )
        return str(data["Host"])

    def _provision(self, aws_endpoint: str, pinecone_url: str) -> str:
        """Create the template's resources; the index last (it needs the key in its secret). Returns its host."""
        o = self.options
        parameters = {
            **local_parameters("", o.index_name, o.dimension, o.metric, o.tenants, o.schemas),
            **({"Tracing": "true"} if o.tracing else {}),
            **o.parameters,
        }
        self.template = LocalTemplate(parameters=parameters)
        self.provisioner = Provisioner(self.template, aws_endpoint)
        self.created = self.provisioner.provision()
        for resource in self.created:
            self.progress(f"  {resource.logical_id:24} {resource.physical_id.rsplit('/', 1)[-1]}: {resource.summary}")
        self.provisioner.create_queue(SAMPLE_REPLY_QUEUE_NAME, {"MessageRetentionPeriod": "86400"})
        self.progress(f"  {'(sample reply queue)':24} {SAMPLE_REPLY_QUEUE_NAME}: the reply_to of events/query*.json")
        if self.provisioner.skipped:
            kinds = sorted({kind.split("::", 1)[1] for _, kind in self.provisioner.skipped})
            self.progress(f"  not created locally (no local effect): {', '.join(kinds)}")
        for note in self.template.exemptions:
            self.progress(f"  note: {note}")
        self.provisioner.put_secret_value(
            "PineconeApiKeySecret",
            {"api_key": self.api_key, "key_id": "initial-key-0", "project_id": DEFAULT_PROJECT_ID},
        )
        self.provisioner.put_secret_value(
            "PineconeAdminSecret", {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
        )
        self.progress("secret PineconeApiKeySecret holds the emulator's key")
        indexes = self.template.resources_of_type("Custom::PineconeIndex")
        if not indexes:  # a PineconeIndexHost given in o.parameters: the index is the operator's
            return str(self.template.parameters["PineconeIndexHost"])
        return self._create_index(pinecone_url, indexes[0])

    def _keep_aws_state(self) -> None:
        """With a data directory, put back the saved registry, table and bucket; say plainly what starts empty."""
        info, data_dir = self.info, self.options.data_dir
        assert info is not None
        assert self.provisioner is not None
        if data_dir is None:
            self.progress(
                "nothing is kept across restarts (no data directory): the index, the tenant registry, the version "
                "guard's table and the results bucket start as the template makes them"
            )
        else:
            state = AwsState(data_dir / "aws", self.provisioner, self.created)
            restored = state.restore()
            self.aws_state = state  # saved from now on (never a half-restored state)
            if restored is None:
                records = sum(namespace_counts(info.pinecone_url, info.index_name).values())
                kept = f", while the index kept {records:,} records (reconcile warns of them)" if records else ""
                self.progress(
                    f"no AWS state saved in {state.path.parent} yet: the tenant registry is the template's, the "
                    f"version guard's table and the results bucket start empty{kept}"
                )
            else:
                registry = info.outputs.get("TenantRegistryParameterName", "")
                if registry in restored.parameters:
                    info.tenants = registry_tenants(restored.parameters[registry])
                kept_parts = [f"the tenant registry ({', '.join(sorted(info.tenants)) or 'no tenants'})"]
                kept_parts += [f"{count:,} items in table {table}" for table, count in restored.items.items()]
                kept_parts += [f"{count:,} objects in bucket {bucket}" for bucket, count in restored.objects.items()]
                saved = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(restored.saved_at))
                self.progress(f"kept from the last run (saved {saved} in {state.path}): " + "; ".join(kept_parts))
                if restored.not_in_template:
                    self.progress(
                        f"  not put back (the template has them no more): {', '.join(restored.not_in_template)}"
                    )
        self.progress("queues and dead-letter queues start empty (moto keeps no messages across restarts)")
        self.progress(f"tenants registered: {info.tenants}")

    def _describe(self, aws_endpoint: str, pinecone_url: str, index_host: str) -> StackInfo:
        t = self.template
        assert t is not None
        queues = {q: t.physical[q].ref for q in t.resources_of_type("AWS::SQS::Queue")}
        dead_letter_queues = {}
        for q in t.resources_of_type("AWS::SQS::Queue"):
            redrive = t.properties(q).get("RedrivePolicy")
            if redrive:
                target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
                dead_letter_queues[q] = t.physical[target].ref
        functions = {}
        for spec in t.functions():
            config = self.runtime_config(spec, aws_endpoint, pinecone_url)
            functions[spec.short_name] = {
                **asdict(config),
                "code_dir": str(config.code_dir),
                "layer_dirs": [str(p) for p in config.layer_dirs],
            }
            functions[spec.short_name].pop("python")
        return StackInfo(
            aws_endpoint=aws_endpoint,
            pinecone_url=pinecone_url,
            region=t.region,
            index_name=self.options.index_name,
            index_host=index_host,
            queues=queues,
            dead_letter_queues=dead_letter_queues,
            resources={logical_id: r.ref for logical_id, r in t.physical.items()},
            functions=functions,
            tenants=dict(self.options.tenants),
            outputs=t.outputs(),
            pid=os.getpid(),
            grpc_host=self._grpc_host,
            traces_file=str(self.xray.journal) if self.xray is not None else "",
        )

    def runtime_config(self, spec: FunctionSpec, aws_endpoint: str, pinecone_url: str) -> FunctionRuntimeConfig:
        t = self.template
        assert t is not None
        environment = {
            **t.function_environment(spec),
            # What the local stack adds: its endpoints, and fake credentials moto accepts.
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_REGION": t.region,
            "AWS_DEFAULT_REGION": t.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PINECONE_CONTROL_HOST": pinecone_url,
            "PINECONE_OAUTH_URL": oauth_url(pinecone_url),  # the rotation function's Admin API sign-in
        }
        if environment.get("PINECONE_TRANSPORT") == "grpc":  # the index's own host (REST and gRPC), named explicitly
            environment["PINECONE_GRPC_HOST"] = self._grpc_host
        return FunctionRuntimeConfig(
            name=t.function_name(spec),
            arn=t.function_arn(spec),
            code_dir=spec.code_uri,
            handler=spec.handler,
            timeout_seconds=spec.timeout_seconds,
            memory_mb=spec.memory_mb,
            environment=environment,
            layer_dirs=(ROOT / "shared",),
            tracing=spec.tracing,
            xray_daemon_address=self.xray.address if self.xray is not None else "",
        )

    @property
    def traces(self) -> bool:
        """Whether the deployed template traces the functions (its parameter ``Tracing``)."""
        return self.template is not None and self.template.parameters.get("Tracing") == "true"

    def _start_xray(self, state_dir: Path) -> None:
        """The X-Ray daemon's stand-in: every document the functions (and Lambda's part) send, to the journal."""
        journal = state_dir / TRACES_FILE
        self.xray = XRayCollector(journal=journal, keep=False)
        t = self.template
        assert t is not None
        active = [spec.logical_id for spec in t.functions() if spec.tracing == "Active"]
        self.progress(
            f"X-Ray: active tracing of {', '.join(active) or 'no function'} (Lambda samples the first invocation "
            f"each second and 5 % of the others); their segments go to {self.xray.address} (the daemon's UDP "
            f"protocol) and are appended to {journal}"
        )

    def _stop_xray(self) -> None:
        collector, self.xray = self.xray, None
        if collector is None:
            return
        collector.stop()
        said = f"traces: {collector.received:,} trace documents appended to {collector.journal}"
        if collector.rejected_count:
            said += f"; {collector.rejected_count:,} datagrams not in the X-Ray daemon's format"
        if collector.journal_failures:
            said += f"; {collector.journal_failures:,} could not be written"
        self.progress(said)

    def _start_metrics(self) -> None:
        info = self.info
        assert info is not None
        self.metrics_feed = MetricsFeed(info.aws_endpoint, info.region).start()
        sqs = aws_client("sqs", info.aws_endpoint, info.region)
        period = self.options.queue_metrics_seconds
        self.queue_metrics = QueueMetrics(
            self.metrics_feed, sqs, list(info.queues.values()), info.region, period_seconds=period
        ).start()
        self.progress(
            "moto's CloudWatch gets the functions' EMF metrics, AWS/Lambda's per invocation and AWS/SQS's "
            f"every {period:g} s"
        )

    def _batch_done(self, outcome: BatchOutcome) -> None:
        """A poller's batch settled: Lambda's metrics of the invocation, then whoever asked to be told."""
        if self.metrics_feed is not None and self.info is not None:
            poller = self.pollers.get(outcome.function)
            running = poller.running if poller is not None else 1
            name = str(self.info.functions[outcome.function]["name"])
            self.metrics_feed.publish(invocation_metrics(name, outcome.result, concurrent=running))
        if self.on_batch is not None:
            self.on_batch(outcome)

    def _stop_metrics(self) -> None:
        if self.queue_metrics is not None:
            self.queue_metrics.stop()
            self.queue_metrics = None
        feed, self.metrics_feed = self.metrics_feed, None
        if feed is None:
            return
        feed.stop()
        c = feed.counters
        said = [f"{c.points_sent:,} data points sent to moto's CloudWatch ({c.emf_lines:,} EMF lines)"]
        if c.invalid_lines:
            said.append(f"{c.invalid_lines:,} lines with an _aws member gave no metric (the last: {c.last_invalid})")
        if c.dropped:
            said.append(f"{c.dropped:,} lines or data points dropped (the feed was full or stopped)")
        if c.failed_calls:
            said.append(f"{c.failed_calls:,} PutMetricData calls failed (the last: {c.last_failure})")
        self.progress("metrics: " + "; ".join(said))

    def _start_pollers(self, state_dir: Path) -> None:
        t = self.template
        info = self.info
        assert t is not None
        assert info is not None
        for spec in t.functions():
            for event in spec.events:
                if not event.enabled:
                    continue
                config = info.runtime_config(spec.short_name)
                log = self._open_log(state_dir, spec.short_name) if self.options.function_logs == "file" else None

                def factory(config: FunctionRuntimeConfig = config, log: IO[str] | None = log) -> RuntimeEnvironment:
                    feed = self.metrics_feed
                    return RuntimeEnvironment(
                        config,
                        log=log if log is not None else sys.stderr,
                        on_line=feed.log_line if feed is not None else None,
                    )

                source = EventSourceConfig(
                    function=spec.short_name,
                    queue_url=t.physical[event.queue].ref,
                    queue_arn=t.physical[event.queue].attributes["Arn"],
                    batch_size=event.batch_size,
                    batching_window_seconds=event.batching_window_seconds,
                    maximum_concurrency=event.maximum_concurrency or 1000,
                    function_timeout_seconds=spec.timeout_seconds,
                    report_batch_item_failures=event.report_batch_item_failures,
                    poll_wait_seconds=self.options.poll_wait_seconds,
                    region=t.region,
                )
                pool = EnvironmentPool(factory, source.maximum_concurrency)
                sqs = aws_client("sqs", info.aws_endpoint, t.region)
                self.pollers[spec.short_name] = EventSourcePoller(source, pool, sqs, on_batch=self._batch_done).start()
                self.progress(
                    f"poller {spec.short_name} <- {event.queue}: batch size {event.batch_size}, "
                    f"window {event.batching_window_seconds} s, max concurrency {source.maximum_concurrency}, "
                    f"timeout {spec.timeout_seconds} s, awslambdaric environments"
                )

    def _open_log(self, state_dir: Path, name: str) -> IO[str]:
        logs = state_dir / "logs"
        logs.mkdir(exist_ok=True)
        handle = (logs / f"{name}.log").open("a", buffering=1)
        self._logs.append(handle)
        return handle

    # ------------------------------------------------------------------ use
    def sqs(self) -> Any:
        assert self.info is not None
        return aws_client("sqs", self.info.aws_endpoint, self.info.region)

    def queue_depth(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages on a queue."""
        attributes = self.sqs().get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def wait_until_drained(self, queue_ids: list[str], timeout: float, settle_seconds: float = 0.5) -> bool:
        """True once the queues have nothing visible or in flight and their pollers are idle."""
        assert self.info is not None
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            busy = any(sum(self.queue_depth(self.info.queues[q])) for q in queue_ids)
            busy = busy or any(not poller.idle for poller in self.pollers.values())
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle_seconds:
                return True
            time.sleep(0.2)
        return False

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stop pollers (finishing running invocations), the emulator (SIGTERM: it snapshots), and moto."""
        for poller in self.pollers.values():
            poller.stop()
        self.pollers = {}
        self._stop_metrics()  # after the pollers: their environments' last lines and invocations are in it
        self._stop_xray()  # after the pollers too: their last segments are in the journal
        if self.aws_state is not None:
            self.aws_state.stop_saving()
            try:
                self.aws_state.save()
                self.progress(
                    f"saved the tenant registry, the version guard's table and the bucket to {self.aws_state.path}"
                )
            except Exception as error:  # moto gone: the last periodic save stays
                self.progress(f"could not save the AWS state to {self.aws_state.path}: {error}")
            self.aws_state = None
        if self.emulator is not None and self.emulator.poll() is None:
            self.emulator.terminate()
            try:
                self.emulator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait(timeout=5)
        self.emulator = None
        if self.provisioner is not None:
            with contextlib.suppress(Exception):  # moto's Lambda setting is process-wide: put it back
                self.provisioner.restore_moto_config()
        if self.moto is not None:
            with contextlib.suppress(Exception):
                self.moto.stop()
            self.moto = None
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)
            (self._state_file.parent / OUTPUTS_FILE).unlink(missing_ok=True)
            self._state_file = None
        for handle in self._logs:
            handle.close()
        self._logs = []

    def hurry(self) -> None:
        """Stop the functions' environments now, without waiting for their invocations (a second Ctrl-C)."""
        for poller in list(self.pollers.values()):
            poller.pool.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
