"""`nanopoor records`: every record with its title, track, frozen digest and the parent it was copied from."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from nanopoor.cli.options import format_option
from nanopoor.output import Format, print_json
from nanopoor.tables import Col, fitted_table


def register(app: typer.Typer) -> None:
    app.command("records")(records)


def records(
    root: Path = typer.Option(Path("records"), "--records", help="folder of records"),
    fmt: Format = format_option(),
) -> None:
    """List the records: title, track, frozen digest, parent, and which files differ from the parent."""
    from nanopoor.records import describe_lineage, describe_records

    rows = describe_records(root)
    if fmt == Format.json:
        print_json(rows)
        return
    console = Console()
    cols = [Col("record", ident=True), Col("title", wrap=True), Col("track"), Col("frozen", ident=True, drop=1),
            Col("parent: files that differ", wrap=True, drop=2)]
    body = []
    for r in rows:
        digest = "not frozen" if r["frozen_sha256"] is None else r["frozen_sha256"][:12] + ("" if r["frozen_ok"] else " [red]changed[/]")
        body.append([r["name"], r["title"], r["track"], digest, describe_lineage(r["lineage"]) or "-"])
    table, left_out = fitted_table(cols, body, console.width)
    console.print(table)
    if cols[-1] in left_out:   # too narrow for the parent column: a line per record copied from another
        for r in rows:
            if describe_lineage(r["lineage"]):
                console.print(f"{r['name']} {describe_lineage(r['lineage'])}", highlight=False, markup=False)
    if cols[3] in left_out:
        console.print("the frozen digests: --format json, or a wider terminal", highlight=False)
