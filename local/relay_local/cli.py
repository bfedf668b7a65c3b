"""Command line of the local stack: ``demo``, ``up``, ``status``, ``invoke``, ``env-vars``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from relay_local.stack import (
    DEFAULT_AWS_PORT,
    DEFAULT_PINECONE_PORT,
    DEFAULT_STATE_DIR,
    LocalStack,
    StackOptions,
    mask,
)


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

    status = commands.add_parser("status", help="queue depths, DLQ messages, index stats, emulator counters")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    invoke = commands.add_parser("invoke", help="run one event through a function under awslambdaric")
    invoke.add_argument("function", help="ingest, query or rotate_key (or the logical id)")
    invoke.add_argument("event", type=Path, help="an event file, e.g. events/ingest-upsert.json")

    commands.add_parser("env-vars", help="print SAM --env-vars JSON for a `make up` stack (env.local.json)")
    for sub in (demo, up, status, invoke):
        sub.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return command_demo(args)
    if args.command == "up":
        return command_up(args)
    if args.command == "status":
        from relay_local.status import print_status

        return print_status(args.state_dir, as_json=args.json)
    if args.command == "invoke":
        from relay_local.invoke import command_invoke

        return command_invoke(args.function, args.event, state_dir=args.state_dir)
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


def command_demo(args: argparse.Namespace) -> int:
    from relay_local.demo import run_demo

    options = StackOptions(
        state_dir=args.state_dir,
        function_logs=args.function_logs,
        write_state_file=False,
        parameters=transport_parameter(),
    )
    result = run_demo(options, drain_timeout=args.timeout)
    return 0 if result.ok else 1


def command_up(args: argparse.Namespace) -> int:
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    options = StackOptions(
        aws_port=args.aws_port,
        pinecone_port=args.pinecone_port,
        state_dir=args.state_dir,
        data_dir=args.data_dir,
        function_logs=args.function_logs,
        parameters=transport_parameter(),
    )

    def on_batch(outcome: Any) -> None:
        print(f"{time.strftime('%H:%M:%S')} {outcome.describe()}", flush=True)

    stack = LocalStack(options, on_batch=on_batch)
    try:
        stack.start()
        info = stack.info
        assert info is not None
        print()
        print("The local stack is up. For an upstream service:")
        for name, value in info.upstream_environment().items():
            print(f"  export {name}={value}")
        print(f"Pinecone emulator: {info.pinecone_url} (index {info.index_name}, data plane {info.index_host})")
        transport = options.parameters.get("PineconeTransport", "rest")
        print(f"  gRPC data plane: {info.grpc_host} (grpc_scheme=http; the workers use {transport})")
        print(f"  API key {mask(stack.api_key)}: in the secret {info.resources['PineconeApiKeySecret']}")
        print("Dead-letter queues:")
        for source, url in info.dead_letter_queues.items():
            print(f"  {source} -> {url}")
        if options.function_logs == "file":
            print(f"Function logs: {options.state_dir / 'logs'}/<function>.log")
        print("Try: make status | make invoke FN=ingest EVENT=events/ingest-upsert.json | Ctrl-C to stop", flush=True)
        while not stopping.wait(0.5):
            pass
        print("\nstopping: pollers finish their invocations, the emulator writes its snapshot", flush=True)
    finally:
        stack.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
