"""Run the tests N times and report every failure with its test id.

A suite that fails one run in ten looks green most days and teaches people to ignore red; this
finds such tests. Each run is a fresh pytest process (fresh moto server, emulator and ports), so
runs do not share state. ``--burn K`` keeps K CPU burners busy for the whole time, to play a busy
CI machine. The log of every failing run is kept in ``--logs`` for diagnosis.

    .venv/bin/python -m tools.repeat_tests --runs 20 --burn 1            # integration + reliability
    .venv/bin/python -m tools.repeat_tests --runs 5 --burn 2 --scope all  # unit too: the whole suite
    make test-repeat N=20 BURN=1
    make test-repeat N=5 BURN=2 SCOPE=all

Two burners beside a run on a 2-core machine is what a busy laptop or CI box looks like.

Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCOPES = {
    "integration": ("tests/integration", "tests/reliability"),  # everything that runs servers or processes
    "all": ("tests",),  # the whole pytest suite, as `make test` runs it
}
DEFAULT_PATHS = SCOPES["integration"]
# pytest's short summary (-rfE): "FAILED tests/x.py::test_y[case] - AssertionError: ..."
_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+?)(?: - .*)?$")


@dataclass(frozen=True, slots=True)
class RunResult:
    number: int
    exit_code: int
    failed: tuple[str, ...]  # test ids, "ERROR " prefixed when setup or teardown broke
    seconds: float
    log: Path

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


def failures_in(output: str) -> tuple[str, ...]:
    """The ids of the tests pytest reported failed or errored in its short summary."""
    found = []
    for line in output.splitlines():
        match = _SUMMARY.match(line.strip())
        if match:
            kind, test_id = match.groups()
            found.append(test_id if kind == "FAILED" else f"ERROR {test_id}")
    return tuple(found)


def _burn() -> None:
    while True:
        pass


@contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """``count`` processes spinning a core each, stopped on exit."""
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(count)]
    for burner in burners:
        burner.start()
    try:
        yield
    finally:
        for burner in burners:
            burner.terminate()
            burner.join()


def run_once(number: int, paths: Sequence[str], extra: Sequence[str], logs: Path, timeout: float) -> RunResult:
    """One pytest process over ``paths``; a run that outlives ``timeout`` counts as failed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *extra, *paths]
    log = logs / f"run-{number:03d}.log"
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        output, exit_code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
        output, exit_code = out + f"\n(run stopped after {timeout:.0f} s)\n", -1
    seconds = time.monotonic() - started
    failed = failures_in(output)
    if exit_code != 0 and not failed:  # collection error, interrupted, hung: still a failure to report
        failed = (f"run exited {exit_code} with no test failures listed (see {log})",)
    if exit_code != 0:
        logs.mkdir(parents=True, exist_ok=True)
        log.write_text(output)
    return RunResult(number, exit_code, failed, seconds, log)


def report(results: Sequence[RunResult]) -> str:
    """A summary: runs passed, then each failing test id with how many runs it failed in."""
    green = sum(result.passed for result in results)
    lines = [f"{green}/{len(results)} runs passed"]
    counts = collections.Counter(test for result in results for test in result.failed)
    for test, times in counts.most_common():
        runs = ", ".join(str(result.number) for result in results if test in result.failed)
        lines.append(f"  {times}/{len(results)}  {test}  (runs {runs})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="how many times to run the tests (default 20)")
    parser.add_argument("--burn", type=int, default=0, help="CPU burner processes to run meanwhile (default 0)")
    parser.add_argument("--logs", type=Path, default=Path(".test-repeat"), help="where failing runs' logs go")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before a run counts as hung")
    parser.add_argument(
        "--scope",
        choices=sorted(SCOPES),
        default="integration",
        help="integration: tests/integration and tests/reliability (default); all: the whole suite",
    )
    parser.add_argument("paths", nargs="*", help="test paths instead of a scope")
    args, extra = parser.parse_known_args(argv)  # anything else goes to pytest, e.g. -k or -x
    if args.runs < 1 or args.burn < 0:
        parser.error("--runs must be at least 1 and --burn at least 0")

    paths = args.paths or list(SCOPES[args.scope])
    print(f"{args.runs} runs of {' '.join(paths)} with {args.burn} CPU burners", flush=True)
    results = []
    with cpu_burners(args.burn):
        for number in range(1, args.runs + 1):
            result = run_once(number, paths, extra, args.logs, args.timeout)
            results.append(result)
            verdict = "passed" if result.passed else "FAILED: " + "; ".join(result.failed)
            print(f"run {number}/{args.runs}: {verdict} ({result.seconds:.0f} s)", flush=True)
    print(report(results))
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
