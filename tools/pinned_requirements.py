"""Print the pinned requirements of pyproject.toml (runtime + dev), one per line, for pip -r."""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
extras = sys.argv[1:]
lines = list(project["dependencies"])
for extra in extras:
    lines.extend(project["optional-dependencies"][extra])
print("\n".join(lines))
