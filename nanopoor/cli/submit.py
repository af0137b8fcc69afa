"""`nanopoor submit`: run a record's seeds, verify them, regenerate the leaderboard, say what to commit."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from nanopoor.cli.options import (as_t4_option, format_option, no_isolation_option, runs_option, say_note,
                                  seeds_option, timeout_option)
from nanopoor.errors import UserError
from nanopoor.output import Format, Scale, fmt_loss, print_json


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)


def submit(
    record: Path = typer.Argument(..., help="record folder or name, e.g. records/muon_3xlr or muon_3xlr"),
    seeds: int = seeds_option(None, "number of runs [default: the record's `seeds`, else 3]"),
    data: Path = typer.Option(None, help="dataset folder (default data/<track dataset>)"),
    track: str = typer.Option(None, help="run on another track than the scale's"),
    scale: Scale = typer.Option(Scale.full, help="full (ranked) or smoke (counted, never ranked)"),
    runs: Path = runs_option(None, "folder that receives the run folders [default: runs/ for a full-scale "
                                   "submission on a gpu, else dev-runs/ (ignored by git, never ranked)]"),
    timeout: float = timeout_option("stop each run after this many seconds"),
    out: Path = typer.Option(None, help="leaderboard file to regenerate [default: leaderboard.md for runs/, "
                                        "else leaderboard.md inside the runs folder]"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours per seed)"),
    parallel: bool = typer.Option(False, "--parallel", help="run the seeds at once, one per visible gpu"),
    gpus: str = typer.Option(None, "--gpus", help="with --parallel: the device ids to use, e.g. 0,1,2 [default: CUDA_VISIBLE_DEVICES, else every gpu]"),
    as_t4: bool = as_t4_option(),
    no_isolation: bool = no_isolation_option(),
    fmt: Format = format_option(),
) -> None:
    """Run a record's seeds, verify them, regenerate the leaderboard, print the verdict and the files to commit."""
    from nanopoor.submit import submit as do_submit

    if gpus is not None and not parallel:
        raise UserError("--gpus picks the devices of --parallel runs: add --parallel")
    device_ids = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    outcome = do_submit(record, n_runs=seeds, data_dir=data, track=track, scale=scale.value, runs_dir=runs,
                        timeout_s=timeout, out=out, quiet=fmt == Format.json, parallel=parallel, gpus=device_ids,
                        on_done=_say_done if fmt == Format.table else None, as_t4=as_t4, allow_cpu=allow_cpu,
                        isolated=not no_isolation, on_note=say_note)
    if fmt == Format.json:
        print_json(outcome.to_dict())
    else:
        _print_outcome(outcome)
    if not all(c.ok for c in outcome.checks):
        raise typer.Exit(1)


def _say_done(run_dir: Path, gpu: str) -> None:
    """parallel runs have no live display: one line on stderr as each ends."""
    err = Console(stderr=True, highlight=False)
    try:
        r = json.loads((Path(run_dir) / "result.json").read_text())
        vl = f"val loss {fmt_loss(r['val_loss'])}" if isinstance(r.get("val_loss"), float) else "no val loss"
        err.print(f"gpu {gpu}: {Path(run_dir).name} {r.get('status')} ({vl}, train {(r.get('train_time_ms') or 0) / 1000:.1f} s)")
    except (OSError, ValueError):
        err.print(f"gpu {gpu}: {Path(run_dir).name} wrote no readable result.json")


def _print_outcome(outcome) -> None:
    console = Console(highlight=False)
    for s in outcome.submissions:
        verdict = s["verdict"] + (f" ({s['reasons']})" if s["reasons"] else "")
        console.print(f"[bold]{s['record']}[/] on {s['hardware']}, track {s['track']}, scale {s['scale']}: {verdict}")
        if s["val_loss_mean"] is not None:
            p = f", p={s['p_value']:.2g}" if s["p_value"] is not None else ""
            console.print(f"  val loss {s['val_loss_mean']:.4f} (target {s['target_val_loss']}{p}); "
                          f"train time {s['train_time_ms_mean'] / 60000:.2f} min over {s['n_runs']} run(s)")
    for c in outcome.checks:
        if not c.ok:
            console.print(f"[red]does not verify[/] {c.subject}: {'; '.join(c.problems)}")
    if not outcome.dev:
        console.print("files to commit: git add these, then open a pull request")
        for line in outcome.to_commit:
            console.print(f"  {line}")
    else:
        console.print(f"nothing to commit: {outcome.runs_dir.as_posix()}/ holds dev runs, never ranked "
                      f"(a full-scale submission on a gpu goes to runs/); its board: {outcome.out.as_posix()}")
