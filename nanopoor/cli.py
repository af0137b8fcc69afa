"""the `nanopoor` command. every verb lives in a cli_* module that registers itself here;
a UserError anywhere below becomes one line on stderr and exit code 1."""
from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from nanopoor.errors import UserError


class _Group(TyperGroup):
    """turns user errors (and the harness's own one-line errors) into one line and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as e:
            # imported only on the error path: every command's start-up stays light
            from harness.shards import ShardError
            from harness.tracks import UnknownTrack

            if not isinstance(e, (UserError, ShardError, UnknownTrack)) or os.environ.get("NANOPOOR_DEBUG") == "1":
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="nanopoor: run frozen speedrun records under the harness, review logs, keep the leaderboard.")

from nanopoor import cli_board, cli_data, cli_logs, cli_run  # noqa: E402

for _verbs in (cli_run, cli_data, cli_logs, cli_board):
    _verbs.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
