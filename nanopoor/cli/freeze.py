"""`nanopoor freeze`: write a record's digest into its record.toml."""
from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("freeze")(freeze)


def freeze(record: Path = typer.Argument(..., help="record folder")) -> None:
    """Write the record's digest into record.toml; runs refuse it once its files change."""
    from nanopoor.records import freeze as do_freeze

    digest = do_freeze(record)
    typer.echo(f"frozen {record}: sha256 {digest}")
