"""The ``vector-relay`` command: one entry point for every operator task (``vector-relay --help``)."""

from __future__ import annotations

from pathlib import Path

import click

from vector_relay_cli.context import Context
from vector_relay_cli.dashboard_command import dashboard
from vector_relay_cli.dlq_commands import dlq
from vector_relay_cli.errors import EXIT_CANNOT_RUN, ServiceErrorsExit2
from vector_relay_cli.index_commands import index
from vector_relay_cli.load_command import load
from vector_relay_cli.query_command import query
from vector_relay_cli.receipt_commands import receipts
from vector_relay_cli.reconcile_command import reconcile
from vector_relay_cli.tenant_commands import tenant
from vector_relay_cli.top_command import top


@click.group(cls=ServiceErrorsExit2, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--stack", envvar="VECTOR_RELAY_STACK", help="The relay's CloudFormation stack [env VECTOR_RELAY_STACK].")
@click.option(
    "--outputs",
    envvar="VECTOR_RELAY_OUTPUTS",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The stack's outputs as JSON instead of --stack (the local stack's: .local-stack/outputs.json) "
    "[env VECTOR_RELAY_OUTPUTS].",
)
@click.option("--region", envvar="AWS_DEFAULT_REGION", help="AWS region [env AWS_DEFAULT_REGION].")
@click.version_option(package_name="vector-relay")
@click.pass_context
def cli(ctx: click.Context, stack: str | None, outputs: Path | None, region: str | None) -> None:
    """Operate a vector-relay deployment: in AWS (--stack) or the local stack (make up; --outputs).

    Exit codes: 0 all good; 1 the command ran and found a problem; 2 it could not run (usage,
    configuration, unreachable service). --json on a command prints one JSON document for scripts.
    """
    ctx.obj = Context(stack, outputs, region)


cli.add_command(dashboard)
cli.add_command(dlq)
cli.add_command(index)
cli.add_command(load)
cli.add_command(query)
cli.add_command(receipts)
cli.add_command(reconcile)
cli.add_command(tenant)
cli.add_command(top)


def main() -> None:
    try:
        cli()
    except Exception:  # a bug: the traceback for the report, and exit 2 (could not run), never 1 (found a problem)
        import traceback

        traceback.print_exc()
        raise SystemExit(EXIT_CANNOT_RUN) from None
