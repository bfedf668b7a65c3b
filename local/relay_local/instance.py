"""One ``make up`` per checkout: its process file, the ports it needs, and ``make down``.

``make up`` claims ``<state dir>/up.json`` before it binds a port: its process id, the ports, and
the processes it starts in sessions of their own (the Pinecone emulator), so that

* a second ``make up`` finds the first (running, or still starting) and says how to reach or stop
  it, instead of failing on a port;
* a port some other program holds is named before anything starts;
* ``make down`` stops the running ``make up`` by its recorded process id (SIGTERM: the same clean
  stop as Ctrl-C), and stops what a ``make up`` that was killed left running.

A recorded process id counts only while that process is still the one recorded (its command line
names the module), so a reused id is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROCESS_FILE = "up.json"
UP_MODULE = "relay_local"  # what a `make up` process's command line names
CHILD_MODULES = {"pinecone-emulator": "pinecone_emulator"}


class StartRefused(Exception):
    """``make up`` cannot start here; the message says why and what to do."""


@dataclass
class UpProcess:
    pid: int
    started_at: float  # epoch seconds
    aws_port: int
    pinecone_port: int
    children: dict[str, int] = field(default_factory=dict)  # name -> pid, processes in sessions of their own

    @classmethod
    def read(cls, path: Path) -> UpProcess | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        return process_runs(self.pid, UP_MODULE)

    def live_children(self) -> dict[str, int]:
        return {name: pid for name, pid in self.children.items() if process_runs(pid, CHILD_MODULES.get(name, name))}


def process_runs(pid: int, module: str) -> bool:
    """Whether ``pid`` is alive and its command line names ``module`` (a reused id is another program)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's: not ours
        return False
    return module in _command_line(pid)


def _command_line(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    with contextlib.suppress(OSError):
        return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    try:  # no /proc (macOS)
        return subprocess.run(  # noqa: S603 - ps with a number
            ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 - ps from PATH
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def port_in_use(port: int) -> bool:
    """Whether binding 127.0.0.1:``port`` fails, as it would for the server (which reuses the address too)."""
    if port == 0:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


class Claim:
    """This process's hold on the checkout's ``make up``: written before any port is bound, removed at exit."""

    def __init__(self, path: Path, up: UpProcess) -> None:
        self.path = path
        self.up = up

    def record_child(self, name: str, pid: int) -> None:
        self.up.children[name] = pid
        _write(self.path, self.up)

    def release(self) -> None:
        current = UpProcess.read(self.path)
        if current is not None and current.pid == self.up.pid:
            self.path.unlink(missing_ok=True)


def claim(state_dir: Path, aws_port: int, pinecone_port: int, *, describe_running: Callable[[], str]) -> Claim:
    """Take the checkout's ``make up``, or raise :class:`StartRefused` saying who has it or which port is taken.

    ``describe_running`` says how to reach the stack that is running (its endpoints, once it is up).
    """
    path = state_dir / PROCESS_FILE
    up = UpProcess(os.getpid(), time.time(), aws_port, pinecone_port)
    for _ in range(2):
        existing = UpProcess.read(path)
        if existing is not None and existing.alive:
            since = time.strftime("%H:%M:%S", time.localtime(existing.started_at))
            raise StartRefused(
                f"a local stack is already running in this checkout (make up, pid {existing.pid}, since {since}).\n"
                f"{describe_running()}\n"
                "Stop it with `make down` (or Ctrl-C in its terminal), then start again."
            )
        if existing is not None:
            left = existing.live_children()
            if left:
                running = ", ".join(f"{name} (pid {pid})" for name, pid in left.items())
                raise StartRefused(
                    f"a `make up` that did not stop cleanly (pid {existing.pid}) left {running} running.\n"
                    "Stop it with `make down`, then start again."
                )
            path.unlink(missing_ok=True)  # stale: its process is gone and left nothing behind
        for port, what, variable in ((aws_port, "moto", "AWS_PORT"), (pinecone_port, "the emulator", "PINECONE_PORT")):
            if port_in_use(port):
                raise StartRefused(
                    f"port {port} ({what}'s) is in use by another program, not by a local stack of this checkout "
                    f"(another checkout's `make up`? `lsof -i :{port}` names it).\n"
                    f"Stop that program, or use other ports: make up {variable}=<port> (the printed export lines "
                    "then name them)."
                )
        try:
            _write(path, up, exclusive=True)
        except FileExistsError:
            continue  # another `make up` claimed it a moment ago: report that one
        return Claim(path, up)
    raise StartRefused(f"another `make up` is starting in this checkout ({path})")


def _write(path: Path, up: UpProcess, *, exclusive: bool = False) -> None:
    text = json.dumps(asdict(up), indent=2) + "\n"
    if exclusive:
        with path.open("x") as created:
            created.write(text)
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def stop_running(state_dir: Path, *, timeout: float, say: Callable[[str], None] = print) -> int:
    """``make down``: stop the checkout's ``make up`` (SIGTERM, as Ctrl-C), and what a killed one left behind.

    Waits up to ``timeout`` for a clean stop (running invocations end, the emulator and the AWS
    state are saved); then signals again (stop without waiting for invocations), and at last kills.
    Exit 0 when nothing of it runs any more, 1 when something could not be stopped.
    """
    path = state_dir / PROCESS_FILE
    up = UpProcess.read(path)
    if up is None:
        say(f"no `make up` is running in this checkout (no {path})")
        return 0
    if up.alive:
        say(f"stopping make up (pid {up.pid}): running invocations finish, the data is saved")
        _signal(up.pid, signal.SIGTERM)
        if not _wait_gone(up.pid, UP_MODULE, timeout):
            say(f"still stopping after {timeout:.0f} s: asking it to stop without waiting for invocations")
            _signal(up.pid, signal.SIGTERM)
            if not _wait_gone(up.pid, UP_MODULE, 15):
                say(f"make up (pid {up.pid}) does not stop: killing it")
                _signal(up.pid, signal.SIGKILL)
                _wait_gone(up.pid, UP_MODULE, 5)
    left = up.live_children()
    for name, pid in left.items():
        say(f"stopping {name} (pid {pid}), left running by a `make up` that did not stop cleanly")
        _signal(pid, signal.SIGTERM)
        if not _wait_gone(pid, CHILD_MODULES.get(name, name), 15):
            _signal(pid, signal.SIGKILL)
            _wait_gone(pid, CHILD_MODULES.get(name, name), 5)
    if process_runs(up.pid, UP_MODULE) or up.live_children():
        say("could not stop everything; see the process ids above")
        return 1
    path.unlink(missing_ok=True)
    for name in ("stack.json", "outputs.json", "env"):  # left behind only by a `make up` that was killed
        (state_dir / name).unlink(missing_ok=True)
    say("stopped")
    return 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(pid: int, module: str, seconds: float) -> bool:
    """Wait until ``pid`` no longer runs ``module`` (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + seconds
    while process_runs(pid, module):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
