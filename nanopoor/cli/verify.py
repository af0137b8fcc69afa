"""`nanopoor verify`: recompute the digests and rules of committed runs."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nanopoor.cli.options import format_option, runs_option
from nanopoor.output import Format, print_json


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
        table = Table("kind", "subject", "verdict", "problems")
        for c in checks:
            signed = f" (signed by {escape(c.signer)})" if c.signer else ""
            table.add_row(c.kind, c.subject, ("[green]ok[/]" if c.ok else "[red]FAILED[/]") + signed, "\n".join(c.problems))
        console.print(table)
        for c in checks:
            if c.lineage is not None:
                console.print(f"{c.subject} {describe_lineage(c.lineage)}", highlight=False, markup=False)
        console.print(f"{sum(c.ok for c in checks)} of {len(checks)} verify", highlight=False)
    if not ok:
        raise typer.Exit(1)
