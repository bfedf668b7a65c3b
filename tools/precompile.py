"""Compile every module of the built functions and layers to bytecode, next to its source.

Lambda's file system is read-only, so a module without a ``.pyc`` in the deployment package is
compiled again on every cold start. ``sam build`` leaves the layers without bytecode when
``PYTHONDONTWRITEBYTECODE`` is set (as on this machine) or pip was told not to compile;
``bench/cold_start.py`` measured import + first invocation of the ingest handler at 1,127 ms
without and 389 ms with. ``unchecked-hash`` bytecode is used as is, whatever the files' times
after the zip is unpacked. Run by ``make build`` with the Lambda runtime's Python (3.13).

Usage: ``python3.13 tools/precompile.py .aws-sam/build``
"""

from __future__ import annotations

import compileall
import py_compile
import sys
from pathlib import Path


def main(build_dir: str) -> int:
    root = Path(build_dir)
    folders = [path for path in sorted(root.iterdir()) if path.is_dir()]
    ok = all(
        compileall.compile_dir(
            folder,
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        for folder in folders
    )
    print(f"bytecode compiled for {len(folders)} built artifacts in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build"))
