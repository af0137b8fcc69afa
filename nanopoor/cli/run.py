"""`nanopoor run`: run a frozen record under the harness, one run folder per seed."""
from __future__ import annotations

from pathlib import Path

import typer

from nanopoor.cli.options import (as_t4_option, format_option, no_isolation_option, runs_option, say_note,
                                  seeds_option, timeout_option)
from nanopoor.errors import UserError
from nanopoor.output import Format, Scale


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    record: Path = typer.Argument(..., help="record folder or name, e.g. records/muon_3xlr or muon_3xlr"),
    seed: int = typer.Option(None, help="seed for a single run (default: harness-assigned, fresh each run)"),
    seeds: int = seeds_option(1, "number of runs, each with its own harness-assigned seed"),
    scale: Scale = typer.Option(Scale.smoke, help="smoke: minutes on a cpu; full: the record's real budget (needs a gpu)"),
    data: Path = typer.Option(None, help="dataset folder (default data/<track dataset>)"),
    track: str = typer.Option(None, help="run on another track than the scale's, e.g. docs"),
    timeout: float = timeout_option("stop the run after this many seconds (status killed)"),
    runs: Path = runs_option(None, "folder that receives one new folder per run [default: runs/ for a full-scale "
                                   "run on a gpu, else dev-runs/ (ignored by git, never ranked)]"),
    nproc: int = typer.Option(1, min=1, help="processes (gpus) through torchrun"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours)"),
    as_t4: bool = as_t4_option(),
    no_isolation: bool = no_isolation_option(),
    fmt: Format = format_option(),
) -> None:
    """Run a frozen record under the harness and write one run folder per run."""
    from nanopoor.runner import run_seeds
    from nanopoor.summary import print_summaries, summary

    if seed is not None and seeds > 1:
        raise UserError("--seed fixes one run's seed; with --seeds N the harness assigns N distinct seeds: drop --seed")
    dirs = run_seeds(record, seeds, scale=scale.value, seed=seed, data_dir=data, runs_dir=runs, timeout_s=timeout,
                     track=track, nproc=nproc, quiet=fmt == Format.json, as_t4=as_t4, allow_cpu=allow_cpu,
                     isolated=not no_isolation, on_note=say_note)
    rows = [summary(d) for d in dirs]
    print_summaries(rows, fmt.value)
    if any(r["status"] != "completed" for r in rows):
        raise typer.Exit(2)
