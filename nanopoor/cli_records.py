"""the records verb: every record with its title, track, frozen digest and the parent it was copied from."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


class Format(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("records")(records)


def records(
    root: Path = typer.Option(Path("records"), "--records", help="folder of records"),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """List the records: title, track, frozen digest, parent, and which files differ from the parent."""
    from nanopoor.errors import UserError
    from nanopoor.records import compute_digest, describe_lineage, lineage, list_records

    if not root.is_dir():
        raise UserError(f"no folder {root.as_posix()}: pass --records with a folder of records")
    rows = []
    for rec in list_records(root):
        rows.append({"name": rec.name, "title": rec.title, "track": rec.track, "frozen_sha256": rec.frozen_sha256,
                     "frozen_ok": rec.frozen_sha256 is not None and compute_digest(rec.path) == rec.frozen_sha256,
                     "parent": rec.parent, "lineage": lineage(rec)})
    if fmt == Format.json:
        typer.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table("record", "title", "track", "frozen", "parent: files that differ")
    for r in rows:
        digest = "not frozen" if r["frozen_sha256"] is None else r["frozen_sha256"][:12] + ("" if r["frozen_ok"] else " [red]changed[/]")
        table.add_row(r["name"], r["title"], r["track"], digest, describe_lineage(r["lineage"]) or "-")
    Console().print(table)
