"""the `nanopoor` command. every verb lives in a module of this package (nanopoor/cli/<verb>.py)
that holds its options and its printing and calls the module that does the work; options that
several verbs take are spelt once in options.py, and json and formats come from nanopoor/output.py.
a UserError anywhere below, a usage error that click finds while parsing (an unknown option,
a bad choice, a missing argument), and a file-system refusal (a read-only folder, a full disk)
become one line on stderr and exit code 1."""
from __future__ import annotations

import os
import sys

import typer
from typer._click import exceptions as click  # typer carries its own click: its errors are these
from typer.core import TyperGroup

from nanopoor.errors import UserError


class _Group(TyperGroup):
    """turns user errors (and the harness's own one-line errors) into one line and exit 1."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.NoArgsIsHelpError as e:
            typer.echo(e.ctx.get_help())
            sys.exit(0)
        except click.ClickException as e:
            # typer would draw a box and exit 2; the project's promise is one line and exit 1
            typer.echo(_one_line(e), err=True)
            sys.exit(1)
        except typer.Abort:
            typer.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            # imported only on the error path: every command's start-up stays light
            from supervisor.shards import ShardError
            from supervisor.tracks import UnknownTrack

            from nanopoor.output import os_error_line

            if os.environ.get("NANOPOOR_DEBUG") == "1":
                raise
            if isinstance(e, OSError) and os_error_line(e):
                typer.echo(f"error: {os_error_line(e)}", err=True)
                raise typer.Exit(1) from None
            if not isinstance(e, (UserError, ShardError, UnknownTrack)):
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None


def _one_line(e: click.ClickException) -> str:
    """'error: <click's message, on one line>; see `nanopoor <verb> --help`'."""
    text = " ".join(e.format_message().replace("Value error, ", "").split()).rstrip(".")
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None:
        text += f"; see `{ctx.command_path} --help`"
    return f"error: {text}"


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="nanopoor: run frozen speedrun records under the harness, review logs, keep the leaderboard.")

from nanopoor.cli import (  # noqa: E402
    compare, data, demo, freeze, leaderboard, records, reproduce, review, run, sign, submit, verify,
)

# the order of `nanopoor --help`
for _verb in (run, freeze, demo, data, review, reproduce, sign, leaderboard, verify, submit, compare, records):
    _verb.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
