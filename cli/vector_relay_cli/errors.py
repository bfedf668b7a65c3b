"""Exit codes, as Unix tools use them (like diff): 0 all good, 1 the check found something, 2 it could not run."""

from __future__ import annotations

from typing import Any

import click

EXIT_FOUND = 1  # the command ran and found problems (mismatches, poison left, failed entries)
EXIT_CANNOT_RUN = 2  # bad usage, configuration, or a service that could not be reached (click's usage errors too)


class CannotRun(click.ClickException):
    """The command could not do its work; the message says why (never a secret)."""

    exit_code = EXIT_CANNOT_RUN


class ServiceErrorsExit2(click.Group):
    """A service that failed where no command caught it is exit 2 with one line, never a traceback and exit 1.

    Exit 1 says the command ran and found a problem (``reconcile``: mismatches); a script must not
    read an unreachable table or index as that.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return super().invoke(ctx)
        except (ClientError, BotoCoreError) as error:
            raise CannotRun(f"AWS: {error}") from None
        except Exception as error:
            from vector_relay.pinecone.errors import PineconeRequestError  # imported at the first error, not at start

            if isinstance(error, PineconeRequestError):
                raise CannotRun(f"Pinecone: {error}") from None
            raise
