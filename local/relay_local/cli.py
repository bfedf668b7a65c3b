"""Command line of the local stack: ``demo``, ``up``, ``down``, ``status``, ``traces``, ``invoke``, ``rotate``,
``env-vars``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from relay_local.stack import DEFAULT_AWS_PORT, DEFAULT_PINECONE_PORT, LocalStack, StackOptions, StartupError, mask
from relay_local.state_file import DEFAULT_STATE_DIR, StackInfo, ensure_state_dir, running_stack


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m relay_local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="start the stack, run the demo dataset through it, check, stop")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each queue to drain")
    demo.add_argument("--function-logs", choices=["file", "stderr"], default="file")

    up = commands.add_parser("up", help="run the stack in the foreground until Ctrl-C")
    up.add_argument("--aws-port", type=int, default=DEFAULT_AWS_PORT, help=f"moto's port (default {DEFAULT_AWS_PORT})")
    up.add_argument(
        "--pinecone-port",
        type=int,
        default=DEFAULT_PINECONE_PORT,
        help=f"emulator port (default {DEFAULT_PINECONE_PORT})",
    )
    up.add_argument("--data-dir", type=Path, default=None, help="keep the emulator's indexes here across restarts")
    up.add_argument("--function-logs", choices=["file", "stderr"], default="file")

    down = commands.add_parser("down", help="stop the running `make up` of this checkout (and what a killed one left)")
    down.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for a clean stop before insisting (default 90)"
    )

    status = commands.add_parser("status", help="queue depths, DLQ messages, index stats, emulator counters")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    traces = commands.add_parser(
        "traces", help="the last traces a stack that traces collected (make up TRACING=1), as trees"
    )
    traces.add_argument("--last", type=int, default=5, help="how many traces (default 5)")
    traces.add_argument("--json", action="store_true", help="print the traces as JSON")

    invoke = commands.add_parser("invoke", help="run one event through a function under awslambdaric")
    invoke.add_argument("function", help="ingest, query, receipts, reconcile or rotate_key (or the logical id)")
    invoke.add_argument("event", type=Path, help="an event file, e.g. events/ingest-upsert.json")

    rotate = commands.add_parser(
        "rotate", help="one rotation of the API-key secret of the running `make up`, through the rotation function"
    )
    rotate.add_argument(
        "--token", default=None, help="run the steps again for the unfinished rotation of this version (AWSPENDING)"
    )

    commands.add_parser("env-vars", help="print SAM --env-vars JSON for a `make up` stack (env.local.json)")
    for sub in (demo, up, down, status, traces, invoke, rotate):
        sub.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return command_demo(args)
    if args.command == "up":
        return command_up(args)
    if args.command == "down":
        return command_down(args)
    if args.command == "status":
        from relay_local.status import print_status

        return print_status(args.state_dir, as_json=args.json)
    if args.command == "traces":
        from relay_local.traces import command_traces

        return command_traces(args.state_dir, last=args.last, as_json=args.json)
    if args.command == "invoke":
        from relay_local.invoke import command_invoke

        return command_invoke(args.function, args.event, state_dir=args.state_dir)
    if args.command == "rotate":
        from relay_local.rotation import command_rotate

        return command_rotate(state_dir=args.state_dir, token=args.token)
    if args.command == "env-vars":
        from relay_local.env_vars import sam_env_vars

        print(json.dumps(sam_env_vars(), indent=2))
        return 0
    return 2


def transport_parameter() -> dict[str, str]:
    """PINECONE_TRANSPORT=grpc make up|demo: the template parameter PineconeTransport, as a deploy would set it."""
    transport = os.environ.get("PINECONE_TRANSPORT", "").strip().lower()
    if not transport:
        return {}
    if transport not in ("rest", "grpc"):
        raise SystemExit(f"PINECONE_TRANSPORT must be rest or grpc, not {transport!r}")
    return {"PineconeTransport": transport}


def tracing_requested() -> bool:
    """TRACING=1 make up|demo: deploy with the template parameter Tracing=true and collect the traces locally."""
    value = os.environ.get("TRACING", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"TRACING must be 1 or 0 (true or false), not {value!r}")


def command_demo(args: argparse.Namespace) -> int:
    from relay_local.demo import run_demo

    options = StackOptions(
        state_dir=args.state_dir,
        function_logs=args.function_logs,
        write_state_file=False,
        parameters=transport_parameter(),
        tracing=tracing_requested(),
    )
    result = run_demo(options, drain_timeout=args.timeout)
    return 0 if result.ok else 1


class StopRequested(BaseException):
    """Ctrl-C or SIGTERM: raised where the main thread is, so a start-up that waits stops too."""


ENV_FILE = "env"  # the export lines of a running `make up`, for `source .local-stack/env`


def command_up(args: argparse.Namespace) -> int:
    from relay_local.instance import StartRefused, claim

    parameters, tracing = transport_parameter(), tracing_requested()  # a bad value stops here, before the claim
    state_dir = ensure_state_dir(args.state_dir)
    try:
        held = claim(state_dir, args.aws_port, args.pinecone_port, describe_running=lambda: describe_running(state_dir))
    except StartRefused as refused:
        print(f"make up: {refused}", file=sys.stderr)
        return 1
    options = StackOptions(
        aws_port=args.aws_port,
        pinecone_port=args.pinecone_port,
        state_dir=state_dir,
        data_dir=args.data_dir,
        function_logs=args.function_logs,
        parameters=parameters,
        tracing=tracing,
    )

    def on_batch(outcome: Any) -> None:
        print(f"{time.strftime('%H:%M:%S')} {outcome.describe()}", flush=True)

    stack = LocalStack(options, on_batch=on_batch, on_child=held.record_child)
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if stopping.is_set():  # asked again while stopping: do not wait for running invocations
            print("\nstopping now: the functions' environments are ended", flush=True)
            threading.Thread(target=stack.hurry, daemon=True).start()
            return
        stopping.set()
        raise StopRequested

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env_file = state_dir / ENV_FILE
    try:
        stack.start()
        info = stack.info
        assert info is not None
        lines = export_lines(info)
        env_file.write_text("\n".join(lines) + "\n")
        print()
        print(f"The local stack is up. For an upstream service and `vector-relay` (or: source {env_file}):")
        for line in lines:
            print(f"  {line}")
        print(f"Pinecone emulator: {info.pinecone_url} (index {info.index_name}, data plane {info.index_host})")
        transport = options.parameters.get("PineconeTransport", "rest")
        print(f"  gRPC data plane: {info.grpc_host} (grpc_scheme=http; the workers use {transport})")
        print(f"  API key {mask(stack.api_key)}: in the secret {info.resources['PineconeApiKeySecret']}")
        print("Dead-letter queues:")
        for source, url in info.dead_letter_queues.items():
            print(f"  {source} -> {url}")
        print(
            "Reply queues a query may name as reply_to (REPLY_QUEUE_ALLOW_LIST; a tenant's own reply_queues replace "
            "it; `vector-relay query --reply-queue` picks one):"
        )
        for url in reply_queues(info):
            print(f"  {url}")
        if options.function_logs == "file":
            print(f"Function logs: {options.state_dir / 'logs'}/<function>.log")
        if info.traces_file:
            print(f"Traces: {info.traces_file} (make status shows the last ones; python -m relay_local traces)")
        print(
            "Try: make status | make invoke FN=ingest EVENT=events/ingest-upsert.json | make rotate | "
            "make down (or Ctrl-C) to stop"
        )
        sys.stdout.flush()
        while True:
            time.sleep(0.5)
    except StopRequested:
        print("\nstopping: pollers finish their invocations, the data is saved (Ctrl-C again: do not wait)", flush=True)
    except Exception as error:  # a start-up failure: say it, stop what started, exit
        reason = str(error) if isinstance(error, StartupError) else f"{type(error).__name__}: {error}"
        print(f"make up: could not start: {reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        stopping.set()  # from here on a signal hurries the stop instead of interrupting it
        stack.stop()
        env_file.unlink(missing_ok=True)
        held.release()
    print("stopped", flush=True)
    return 0


def export_lines(info: StackInfo) -> list[str]:
    """Shell lines that point an upstream service, and `vector-relay` on PATH, at this stack."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in info.upstream_environment().items()]
    commands = Path(sys.executable).parent
    if (commands / "vector-relay").exists():
        lines.append(f'export PATH={shlex.quote(str(commands))}:"$PATH"  # vector-relay')
    return lines


def reply_queues(info: StackInfo) -> list[str]:
    """The query function's reply allow-list, as the worker reads it (a tenant's own ``reply_queues`` replace it)."""
    listed = info.functions.get("query", {}).get("environment", {}).get("REPLY_QUEUE_ALLOW_LIST", "")
    return [url.strip() for url in str(listed).split(",") if url.strip()]


def describe_running(state_dir: Path) -> str:
    """How to reach the stack a `make up` in this checkout runs (or that it is still starting)."""
    info = running_stack(state_dir)
    if info is None:
        return "It is still starting (or not answering yet); `make status` shows it once it is up."
    env_file = state_dir / ENV_FILE
    return (
        f"Reach it: AWS {info.aws_endpoint}, Pinecone {info.pinecone_url}; `source {env_file}` sets the "
        "environment (and PATH) for vector-relay and an upstream service; `make status` shows it."
    )


def command_down(args: argparse.Namespace) -> int:
    from relay_local.instance import stop_running

    return stop_running(args.state_dir, timeout=args.timeout)


if __name__ == "__main__":
    sys.exit(main())
