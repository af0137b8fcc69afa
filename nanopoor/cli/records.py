"""`nanopoor records`: every record with its title, track, frozen digest and the parent it was copied from."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nanopoor.cli.options import format_option
from nanopoor.output import Format, print_json


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
    table = Table("record", "title", "track", "frozen", "parent: files that differ")
    for r in rows:
        digest = "not frozen" if r["frozen_sha256"] is None else r["frozen_sha256"][:12] + ("" if r["frozen_ok"] else " [red]changed[/]")
        table.add_row(r["name"], r["title"], r["track"], digest, describe_lineage(r["lineage"]) or "-")
    Console().print(table)
