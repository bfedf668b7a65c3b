"""Drop from the built dependencies layer the botocore service models no function uses.

botocore ships a model for every AWS service (about 460 folders). Creating a client lists them all
(``Loader.list_available_services``, a directory scan) before loading its own: measured on this
machine, creating the four clients of a first ingest invocation took 75-81 ms with every model and
61-66 ms with only these (issue 33, cold start), and the layer has 18 MB less to unpack. The
functions make clients for :data:`USED` (``vector_relay.aws_clients``; a test holds the two
together); :data:`CREDENTIALS` are what botocore's credential chain may call (assumed roles, web
identity, SSO) outside Lambda's own environment credentials. Run by ``make build`` after ``sam
build`` and before ``tools/precompile.py``; a ``sam build`` alone keeps every model, which works too.

Usage: ``python3.13 tools/prune_botocore.py .aws-sam/build``
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

USED = frozenset({"dynamodb", "lambda", "s3", "secretsmanager", "sqs", "ssm"})
CREDENTIALS = frozenset({"sts", "sso", "sso-oidc"})
KEEP = USED | CREDENTIALS
LAYER_DATA = Path("DependenciesLayer") / "python" / "botocore" / "data"


# endpoints.json names services by endpoint prefix; these are the prefixes of KEEP's services
# (SSO's portal and OIDC endpoints among them).
ENDPOINT_PREFIXES = KEEP | frozenset({"portal.sso", "oidc"})
# The SDK's httpx is installed with its http2 extra, but the SDK builds its transports with
# http2=False; httpcore imports h2 when it is present (~7 ms of the first Pinecone request).
UNUSED_PACKAGES = ("h2", "hpack", "hyperframe")


def prune(build_dir: Path) -> tuple[int, int]:
    """Remove every service folder not in :data:`KEEP`; the number removed and the bytes freed."""
    data = build_dir / LAYER_DATA
    removed = freed = 0
    for folder in sorted(data.iterdir()) if data.is_dir() else []:
        if folder.is_dir() and folder.name not in KEEP:
            freed += sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
            shutil.rmtree(folder)
            removed += 1
    return removed, freed


def prune_endpoints(build_dir: Path) -> int:
    """Keep in endpoints.json only the kept services' entries (every partition's other fields as they are).

    botocore parses the whole file (1.25 MB) when a process creates its first client: ~16 ms on
    this machine, for the endpoints of ~1,170 services of which the functions use 11. Returns the
    bytes freed."""
    path = build_dir / LAYER_DATA / "endpoints.json"
    if not path.is_file():
        return 0
    before = path.stat().st_size
    endpoints = json.loads(path.read_text())
    for partition in endpoints["partitions"]:
        partition["services"] = {
            name: service for name, service in partition["services"].items() if name in ENDPOINT_PREFIXES
        }
    path.write_text(json.dumps(endpoints, indent=1))
    return before - path.stat().st_size


def drop_unused_packages(build_dir: Path) -> list[str]:
    layer = build_dir / LAYER_DATA.parent.parent
    dropped = []
    for name in UNUSED_PACKAGES:
        for path in [layer / name, *layer.glob(f"{name}-*.dist-info")]:
            if path.is_dir():
                shutil.rmtree(path)
                dropped.append(path.name)
    return dropped


def main(build_dir: str) -> int:
    removed, freed = prune(Path(build_dir))
    print(f"botocore models kept: {', '.join(sorted(KEEP))}; {removed} others removed ({freed / 1e6:.1f} MB)")
    print(f"endpoints.json: only those services ({prune_endpoints(Path(build_dir)) / 1e6:.1f} MB less)")
    print(f"unused packages dropped: {', '.join(drop_unused_packages(Path(build_dir))) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build"))
