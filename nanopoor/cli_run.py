"""verbs that run records: run, freeze, demo."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from nanopoor.errors import UserError
from nanopoor.outputs import DEV_RUNS


class Format(str, Enum):
    table = "table"
    json = "json"


class Scale(str, Enum):
    smoke = "smoke"
    full = "full"


DEMO_RECORD = Path("records/demo_gpt")


def say_notes(notes: list[str]) -> None:
    """what the preflight wants the user to know before a long run: on stderr, json stays clean."""
    for n in notes:
        typer.echo(f"note: {n}", err=True)


AS_T4_HELP = ("hold the run to one T4's limits on any GPU: 15 GiB, no TF32, bf16 or fp8, no flash/cuDNN "
              "attention; a record that breaks one ends invalid with the limit named")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("freeze")(freeze)
    app.command("demo")(demo)


def run(
    record: Path = typer.Argument(..., help="record folder or name, e.g. records/muon_3xlr or muon_3xlr"),
    seed: int = typer.Option(None, help="seed for a single run (default: harness-assigned, fresh each run)"),
    runs: int = typer.Option(1, min=1, help="number of runs, each with its own harness-assigned seed"),
    scale: Scale = typer.Option(Scale.smoke, help="smoke: minutes on a cpu; full: the record's real budget (needs a gpu)"),
    data: Path = typer.Option(None, help="dataset folder (default data/<track dataset>)"),
    track: str = typer.Option(None, help="run on another track than the scale's, e.g. docs"),
    timeout: float = typer.Option(None, help="stop the run after this many seconds (status killed)"),
    out: Path = typer.Option(None, help="folder that receives one new folder per run [default: runs/ for a full-scale "
                                        "run on a gpu, else dev-runs/ (ignored by git, never ranked)]"),
    nproc: int = typer.Option(1, min=1, help="processes (gpus) through torchrun"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours)"),
    as_t4: bool = typer.Option(False, "--as-t4", help=AS_T4_HELP),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """Run a frozen record under the harness and write one run folder per run."""
    from nanopoor.outputs import default_runs_dir
    from nanopoor.runner import has_gpu, preflight, run_record
    from nanopoor.summary import print_summaries, summary

    if seed is not None and runs > 1:
        raise UserError("--seed fixes one run's seed; with --runs N the harness assigns N distinct seeds: drop --seed")
    say_notes(preflight(record, scale.value, track=track, data_dir=data, n_runs=runs, allow_cpu=allow_cpu))
    out = out or default_runs_dir(scale.value, has_gpu())
    dirs = [run_record(record, scale=scale.value, seed=seed, data_dir=data, out_root=out, timeout_s=timeout,
                       track=track, nproc=nproc, quiet=fmt == Format.json, as_t4=as_t4) for _ in range(runs)]
    rows = [summary(d) for d in dirs]
    print_summaries(rows, fmt.value)
    if any(r["status"] != "completed" for r in rows):
        raise typer.Exit(2)


def freeze(record: Path = typer.Argument(..., help="record folder")) -> None:
    """Write the record's digest into record.toml; runs refuse it once its files change."""
    from nanopoor.records import freeze as do_freeze

    digest = do_freeze(record)
    typer.echo(f"frozen {record}: sha256 {digest}")


def demo(
    out: Path = typer.Option(DEV_RUNS, help="where the demo's run folder goes (not runs/: demo runs are never ranked)"),
    data: Path = typer.Option(Path("data/demo"), help="demo dataset folder (built if missing)"),
) -> None:
    """Build the embedded demo dataset, run the reference record's smoke scale, show the result."""
    from nanopoor.data.demo import build_demo
    from nanopoor.runner import run_record
    from nanopoor.summary import print_summaries, summary

    console = Console()
    console.print(f"[bold]1/3[/] demo dataset → {data}")
    build_demo(data)
    console.print(f"[bold]2/3[/] running {DEMO_RECORD} (smoke scale, cpu) under the harness")
    run_dir = run_record(DEMO_RECORD, scale="smoke", data_dir=data, out_root=out)
    print_summaries([summary(run_dir)], "table", console)
    console.print("[bold]3/3[/] leaderboard preview of", out)
    from rich.table import Table

    from nanopoor.leaderboard import build

    board = build(out, Path("records"), out / "leaderboard-preview.md")
    tab = Table(show_header=True, header_style="bold")
    for col in ("record", "track", "class", "hardware", "runs", "val loss (mean)", "verdict"):
        tab.add_column(col)
    for r in board.frame[board.frame["kind"] == "submission"].to_dict("records"):
        vl = r["val_loss_mean"]
        tab.add_row(str(r["record"]), str(r["track"]), str(r["class"]), str(r["hardware"]), str(r["n_runs"]),
                    f"{vl:.4f}" if isinstance(vl, float) else "–", str(r["verdict"]))
    console.print(tab)
    console.print("cpu runs are dev: counted, never ranked. The real board: leaderboard.md (`make leaderboard`).")
