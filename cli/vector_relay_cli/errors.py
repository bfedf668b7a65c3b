"""Exit codes, as Unix tools use them (like diff): 0 all good, 1 the check found something, 2 it could not run."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FOUND = 1  # the command ran and found problems (mismatches, poison left, failed entries)
EXIT_CANNOT_RUN = 2  # bad usage, configuration, or a service that could not be reached (click's usage errors too)


class CannotRun(click.ClickException):
    """The command could not do its work; the message says why (never a secret)."""

    exit_code = EXIT_CANNOT_RUN
