"""Progress on stderr, only on a terminal and never with --json: stdout stays the command's answer."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


def spinner(text: str, *, quiet: bool) -> Progress:
    """An open-ended task: a spinner, ``text`` (formatted with the task's fields) and the time elapsed."""
    return _progress(SpinnerColumn(), TextColumn(text), TimeElapsedColumn(), quiet=quiet)


def bar(label: str, *, quiet: bool) -> Progress:
    """A task of known size: ``label``, a bar and done / total."""
    return _progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), quiet=quiet)


def _progress(
    *columns: SpinnerColumn | TextColumn | TimeElapsedColumn | BarColumn | MofNCompleteColumn, quiet: bool
) -> Progress:
    errors = Console(stderr=True)
    return Progress(*columns, console=errors, transient=True, disable=quiet or not errors.is_terminal)
