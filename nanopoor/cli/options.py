"""options that several verbs take, spelt once so that each means one thing everywhere.

--runs DIR   the folder of run folders, in every verb that reads or writes them
--seeds N    the number of runs (`seeds =` in record.toml), in run and submit
--out PATH   an output that is not the runs folder (leaderboard.md, a dataset folder)
--format     table or json (nanopoor.output.Format)
--as-t4      one T4's limits on any gpu
--no-isolation  run the record without its bubblewrap sandbox (the result says isolated: false)
--timeout S  seconds before a run is stopped (more than zero)
"""
from __future__ import annotations

from pathlib import Path

import typer

from nanopoor.errors import UserError
from nanopoor.output import Format

AS_T4_HELP = ("hold the run to one T4's limits on any GPU: 15 GiB, no TF32, bf16 or fp8, no flash/cuDNN "
              "attention; a record that breaks one ends invalid with the limit named")


def _runs_folder(value: Path | None) -> Path | None:
    """--runs was once the number of runs in `run` and `submit`: a bare number is that old habit."""
    if value is not None and value.as_posix().isdigit() and not value.is_dir():
        raise UserError(f"--runs {value.as_posix()} is a number but --runs is the folder of run folders: "
                        f"use --seeds N for the number of runs")
    return value


def runs_option(default: Path | None, help: str):
    return typer.Option(default, "--runs", metavar="DIR", help=help, callback=_runs_folder)


def seeds_option(default: int | None, help: str):
    return typer.Option(default, "--seeds", min=1, metavar="N", help=help)


def _positive_seconds(value: float | None) -> float | None:
    """a timeout of zero or less would stop the run before it starts: refused while parsing."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} is not a number of seconds above 0", param_hint="'--timeout'")
    return value


def timeout_option(help: str):
    return typer.Option(None, "--timeout", metavar="S", help=help, callback=_positive_seconds)


def format_option(help: str = "table or json"):
    return typer.Option(Format.table, "--format", help=help)


def as_t4_option():
    return typer.Option(False, "--as-t4", help=AS_T4_HELP)


def say_note(text: str) -> None:
    """what the preflight wants the user to know before a long run: on stderr, json stays clean."""
    typer.echo(f"note: {text}", err=True)


NO_ISOLATION_HELP = ("run the record without its bubblewrap sandbox, where one cannot start (a notebook's container); "
                     "the result says isolated: false and the board shows it")


def no_isolation_option():
    return typer.Option(False, "--no-isolation", help=NO_ISOLATION_HELP)
