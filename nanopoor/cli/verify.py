"""`nanopoor verify`: recompute the digests and rules of committed runs."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from nanopoor.cli.options import format_option, runs_option
from nanopoor.output import Format, print_json
from nanopoor.tables import Col, fitted_table


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    target: str = typer.Argument(..., help="a run folder, a record (folder or name), or a folder of runs"),
    runs: Path = runs_option(Path("runs"), "folder of run folders, where a record's runs are looked up"),
    records: Path = typer.Option(Path("records"), help="where a run's record is looked up"),
    fmt: Format = format_option(),
) -> None:
    """Recompute digests and rules of committed runs; exit 1 when anything does not verify."""
    from nanopoor.records import describe_lineage
    from nanopoor.verify import verify_target

    checks = verify_target(target, runs, records)
    ok = all(c.ok for c in checks)
    if fmt == Format.json:
        print_json({"ok": ok, "checked": len(checks), "checks": [c.to_dict() for c in checks]})
    else:
        console = Console()
        cols = [Col("kind"), Col("subject", ident=True), Col("verdict"), Col("problems", wrap=True, drop=1)]
        rows = [[c.kind, c.subject, ("[green]ok[/]" if c.ok else "[red]FAILED[/]") + (f" (signed by {escape(c.signer)})" if c.signer else ""),
                 "\n".join(c.problems)] for c in checks]
        table, left_out = fitted_table(cols, rows, console.width)
        console.print(table)
        if left_out:   # too narrow for a problems column: each problem on a line of its own
            for c in checks:
                for p in c.problems:
                    console.print(f"{c.subject}: {p}", highlight=False, markup=False)
        for c in checks:
            if c.lineage is not None:
                console.print(f"{c.subject} {describe_lineage(c.lineage)}", highlight=False, markup=False)
        console.print(f"{sum(c.ok for c in checks)} of {len(checks)} verify", highlight=False)
    if not ok:
        raise typer.Exit(1)
