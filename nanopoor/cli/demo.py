"""`nanopoor demo`: the embedded demo dataset, a smoke run of the reference record, a board preview."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nanopoor.cli.options import no_isolation_option, runs_option
from nanopoor.output import DEV_RUNS, check_writable, fmt_loss

DEMO_RECORD = Path("records/demo_gpt")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    runs: Path = runs_option(DEV_RUNS, "where the demo's run folder goes (not runs/: demo runs are never ranked)"),
    data: Path = typer.Option(Path("data/demo"), help="demo dataset folder (built if missing)"),
    no_isolation: bool = no_isolation_option(),
) -> None:
    """Build the embedded demo dataset, run the reference record's smoke scale, show the result."""
    from nanopoor.data.demo import build_demo
    from nanopoor.leaderboard import build
    from nanopoor.runner import check_isolation, run_record
    from nanopoor.summary import print_summaries, summary

    check_writable(runs, "--runs DIR")
    console = Console()
    check_isolation(not no_isolation)   # before anything is built: one line when a sandbox cannot start here
    console.print(f"[bold]1/3[/] demo dataset → {data}")
    build_demo(data)
    console.print(f"[bold]2/3[/] running {DEMO_RECORD} (smoke scale, cpu) under the harness")
    run_dir = run_record(DEMO_RECORD, scale="smoke", data_dir=data, out_root=runs, isolated=not no_isolation)
    print_summaries([summary(run_dir)], "table", console)
    console.print("[bold]3/3[/] leaderboard preview of", runs)
    board = build(runs, Path("records"), runs / "leaderboard-preview.md")
    tab = Table(show_header=True, header_style="bold")
    for col in ("record", "track", "class", "hardware", "runs", "val loss (mean)", "verdict"):
        tab.add_column(col)
    for r in board.frame[board.frame["kind"] == "submission"].to_dict("records"):
        vl = r["val_loss_mean"]
        tab.add_row(str(r["record"]), str(r["track"]), str(r["class"]), str(r["hardware"]), str(r["n_runs"]),
                    fmt_loss(vl) if isinstance(vl, float) else "–", str(r["verdict"]))
    console.print(tab)
    console.print("cpu runs are dev: counted, never ranked. The real board: leaderboard.md (`make leaderboard`).")
