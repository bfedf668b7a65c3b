"""``python -m relay_local demo|up|status|invoke|env-vars`` (the Makefile's demo, up, status and invoke targets)."""

import sys

from relay_local.cli import main

if __name__ == "__main__":
    sys.exit(main())
