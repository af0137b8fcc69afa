"""`nanopoor sign`: sign a reproduction run folder after the fact, with the signer's own key."""
from __future__ import annotations

from pathlib import Path

import typer

from nanopoor.cli.options import format_option, runs_option
from nanopoor.output import Format, print_json


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)


def key_option():
    return typer.Option(..., "--key", metavar="KEY", help="the private half of the signer's ed25519 key "
                                                          "(its public half is a line of reproducers/allowed_signers)")


def sign(
    run: Path = typer.Argument(..., help="the run folder of a reproduction (made by `nanopoor reproduce runs/<run_id>`)"),
    key: Path = key_option(),
    runs: Path | None = runs_option(None, "where the original run is looked up when it is not beside the reproduction"),
    fmt: Format = format_option(),
) -> None:
    """Sign a reproduction: write reproduction.json and its signature into the run folder."""
    from nanopoor.sign import sign_run

    report = sign_run(run, key, runs_dir=runs)
    if fmt == Format.json:
        print_json(report)
        return
    print_report(report)


def print_report(report: dict) -> None:
    """what was signed, by whom, and whether the board counts it."""
    who = report["signer"] or "a key that reproducers/allowed_signers does not list"
    typer.echo(f"signed {report['run']} (a reproduction of {report['original']}) as {who}: {', '.join(report['files'])}")
    if report["counts"]:
        typer.echo(f"the board counts it: {report['original']}'s row is {'official' if report['official'] else 'reproduced by ' + report['signer']}")
    else:
        typer.echo("the board does not count it: " + "; ".join(report["reasons"]), err=True)
