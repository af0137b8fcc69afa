"""`nanopoor compare`: is record A faster (and lower in loss) than record B? welch's t-test on their runs."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from nanopoor.cli.options import format_option, runs_option
from nanopoor.output import Format, Scale, print_json
from nanopoor.tables import Col, fitted_table, left_out_lines

# how each metric is shown: divided by, and its name in the table
SHOWN = {"train_time_ms": (60000, "train time (min)"), "val_loss": (1, "val loss")}


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)


def compare(
    a: str = typer.Argument(..., help="record name or folder (is it faster than B?)"),
    b: str = typer.Argument(..., help="record name or folder"),
    runs: Path = runs_option(Path("runs"), "folder of run folders"),
    hardware: str = typer.Option(None, help="hardware label when both ran on several, e.g. '1× Tesla T4'"),
    scale: Scale = typer.Option(Scale.full, help="which scale's runs to compare"),
    fmt: Format = format_option(),
) -> None:
    """Welch's t-test between two records' completed runs: is A faster (and lower loss) than B?"""
    from nanopoor.compare import compare_records

    res = compare_records(runs, a, b, scale=scale.value, hardware=hardware)
    if fmt == Format.json:
        print_json(res.to_dict())
        return

    def shown(mean, sd, n, div):
        if mean is None:
            return "—"
        return f"{mean / div:.4g}" + (f" ± {sd / div:.2g}" if sd is not None else "") + f" (n={n})"

    cols = [Col("metric", wrap=True), Col(res.a, ident=True, justify="right"), Col(res.b, ident=True, justify="right"),
            Col("A − B", justify="right", drop=1), Col("p (A lower)", wrap=True, justify="right", drop=2),
            Col("significant", drop=3)]
    rows = []
    for c in res.comparisons:
        div, name = SHOWN[c.metric]
        rows.append([name, shown(c.mean_a, c.sd_a, c.n_a, div), shown(c.mean_b, c.sd_b, c.n_b, div),
                     f"{c.difference / div:+.4g}" if c.difference is not None else "—",
                     f"{c.p_value:.2g}" if c.p_value is not None else "n < 2", "yes" if c.significant else "no"])
    console = Console()
    table, left_out = fitted_table(cols, rows, console.width, title=f"{res.track} · {res.hardware}")
    console.print(table)
    for line in left_out_lines(cols, rows, left_out):   # what a narrow table could not hold, a line per metric
        console.print(line, highlight=False)
    fast = res.speedup
    if fast.ratio is not None:
        ci = (f", {fast.confidence:.0%} interval {fast.low:.3g}–{fast.high:.3g}" if fast.low is not None else ", n < 2: no interval")
        p = f", p={fast.p_value:.2g} that {res.a} is not faster" if fast.p_value is not None else ""
        console.print(f"speed-up: {res.a} trains {fast.ratio:.3g}× faster than {res.b} (geometric means of train time{ci}{p})",
                      highlight=False)
