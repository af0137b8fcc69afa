"""`nanopoor leaderboard`: regenerate (or --check) leaderboard.md and its .json, .csv and .png."""
from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from nanopoor.cli.options import format_option, runs_option
from nanopoor.errors import UserError
from nanopoor.output import Format, check_writable, print_json


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)


def leaderboard(
    runs: Path = runs_option(None, "folder of run folders [default: runs]"),
    records: Path = typer.Option(Path("records"), help="folder of records (their claims are shown)"),
    out: Path = typer.Option(Path("leaderboard.md"), help="markdown file; .json, .csv and .png go beside it"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 when a file is stale or a run does not verify"),
    fmt: Format = format_option(),
) -> None:
    """Regenerate leaderboard.md (+ .json, .csv, .png) from runs/ and the records' claims."""
    from nanopoor import leaderboard as lb

    if runs is not None and not runs.is_dir():
        raise UserError(f"no runs folder at {runs}: pass --runs DIR with run folders (or leave it out for runs/)")
    runs = runs or Path("runs")
    if not check:
        check_writable(out.parent, "--out PATH")
        unwritable = [p for p in lb.output_paths(out).values() if p.exists() and not os.access(p, os.W_OK)]
        if unwritable:
            raise UserError(f"cannot write {unwritable[0].as_posix()}: it is read-only; pass --out PATH with a file you can write")
    board = lb.build(runs, records, out) if check else lb.generate(runs, records, out)
    stale = [p.as_posix() for p in lb.stale_files(board)] if check else []
    frame = board.frame
    subs = frame[frame["kind"] == "submission"]
    report = {"files": sorted(p.as_posix() for p in board.files), "stale": stale, "problems": board.problems,
              "submissions": int(len(subs)), "verified": int(subs["verified"].sum()),
              "ranked": int(subs["rank"].notna().sum()), "claims": int((frame["kind"] == "claim").sum())}
    if fmt == Format.json:
        print_json(report)
    else:
        err = Console(stderr=True)
        for p in board.problems:
            err.print(f"[red]does not verify[/] {p}", markup=True, highlight=False)
        for p in stale:
            err.print(f"[red]stale[/] {p}", highlight=False)
        verb = "checked" if check else "wrote"
        Console().print(f"{verb} {', '.join(report['files'])}: {report['submissions']} submissions "
                        f"({report['verified']} verified, {report['ranked']} ranked), {report['claims']} claims",
                        highlight=False)
    if check and (stale or board.problems):
        if fmt == Format.table:
            what = []
            if stale:
                what.append(f"{len(stale)} stale file(s): run `nanopoor leaderboard` and commit them")
            if board.problems:
                what.append(f"{len(board.problems)} run problem(s): see `nanopoor verify {runs.as_posix()}`")
            typer.echo("error: leaderboard check failed: " + "; ".join(what), err=True)
        raise typer.Exit(1)
