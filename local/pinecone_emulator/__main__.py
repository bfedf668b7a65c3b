"""``python -m pinecone_emulator --port 5080 [--api-key KEY ...] [--data-dir DIR]`` (see docs/emulator.md)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pinecone_emulator.config import (
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_PROJECT_ID,
    DEFAULT_PROJECT_NAME,
    EmulatorConfig,
)
from pinecone_emulator.faults import FaultPlan, FaultSpecError
from pinecone_emulator.persistence import attach_persistence
from pinecone_emulator.server import EmulatorServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pinecone_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5080, help="port to listen on; 0 picks a free one (default: 5080)")
    parser.add_argument(
        "--advertise-host",
        default=None,
        help="host name put into index hosts (default: --host); the SDK needs a '.' or 'localhost' in it",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted API key; repeat for several (default: {DEFAULT_API_KEY})",
    )
    parser.add_argument("--allow-any-key", action="store_true", help="accept any non-empty Api-Key (no 401s)")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="service-account client id for the Admin API")
    parser.add_argument(
        "--client-secret", default=DEFAULT_CLIENT_SECRET, help="service-account client secret for the Admin API"
    )
    parser.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    parser.add_argument("--project-name", default=DEFAULT_PROJECT_NAME)
    parser.add_argument("--organization-id", default=DEFAULT_ORGANIZATION_ID)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep indexes, data and keys here across restarts")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='a fault rule, e.g. \'{"operation":"query","status":429,"retry_after":0,"rate":0.1}\'; repeatable',
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        help="requests/s per namespace for upsert, query, delete and update (Pinecone: 100); 0 = off (default)",
    )
    parser.add_argument("--indexing-lag-ms", type=float, default=0.0, help="delay before writes become readable")
    parser.add_argument(
        "--index-ready-after",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a new index reports Initializing (data-plane calls get 503) this long, then Ready (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for random fault rates")
    parser.add_argument("--log-requests", action="store_true", help="log one line per request")
    return parser


def config_from_args(argv: list[str] | None = None) -> EmulatorConfig:
    args = build_parser().parse_args(argv)
    faults: dict[str, Any] = {
        "rules": [json.loads(rule) for rule in args.fault],
        "rate_limit": {"requests_per_second": args.rate_limit},
        "indexing_lag_ms": args.indexing_lag_ms,
        "index_ready_after_ms": args.index_ready_after * 1000,
    }
    FaultPlan().configure(faults, replace=True)  # fail at start-up, not at the first request
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        advertise_host=args.advertise_host,
        api_keys=args.api_keys or [DEFAULT_API_KEY],
        allow_any_key=args.allow_any_key,
        client_id=args.client_id,
        client_secret=args.client_secret,
        project_id=args.project_id,
        project_name=args.project_name,
        organization_id=args.organization_id,
        data_dir=args.data_dir,
        faults=faults,
        seed=args.seed,
        log_requests=args.log_requests,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(argv)
    except (FaultSpecError, json.JSONDecodeError) as error:
        print(f"invalid --fault: {error}", file=sys.stderr)
        return 2
    server = EmulatorServer(config)
    persistence = attach_persistence(server.emulator)
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("pinecone_emulator").info(
        "Pinecone emulator on %s (keys: %d, data dir: %s)", server.url, len(config.api_keys), config.data_dir or "none"
    )
    print(f"pinecone-emulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        if persistence is not None:
            persistence.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
