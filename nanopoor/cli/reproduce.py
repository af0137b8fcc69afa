"""`nanopoor reproduce`: run a record as its published claim describes and compare with the claim,
or re-run a committed run folder as it was made."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nanopoor.cli.options import as_t4_option, format_option, no_isolation_option, runs_option, say_note, timeout_option
from nanopoor.cli.sign import print_report
from nanopoor.errors import UserError
from nanopoor.output import Format, Scale, fmt_loss, fmt_ms, fmt_tokens, print_json


def register(app: typer.Typer) -> None:
    app.command("reproduce", help="Run a record as its claim describes and compare with the claim.")(reproduce)


def reproduce(
    record: Path = typer.Argument(..., help="a record folder or name (records/<name> or <name>) to reproduce its published "
                                            "claim, or a committed run folder (runs/<run_id>) to re-run it as it was made"),
    claim: int | None = typer.Option(None, min=1, help="which claims entry of record.toml, 1 = the first (default)"),
    data: Path | None = typer.Option(None, help="dataset folder (default: data/<the track's dataset>)"),
    scale: Scale = typer.Option(Scale.full, help="full reproduces the claim; smoke only checks the code path"),
    seed: int | None = typer.Option(None, help="seed (default: drawn by the harness)"),
    runs: Path | None = runs_option(None, "where the run folder goes [default: runs/ for a full-scale run on a gpu, "
                                          "else dev-runs/ (ignored by git, never ranked)]"),
    timeout: float | None = timeout_option("stop the run after this many seconds"),
    plot: Path | None = typer.Option(None, help="write the claim-vs-harness overlay png here, a file or a folder (none unless asked)"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours)"),
    as_t4: bool = as_t4_option(),
    no_isolation: bool = no_isolation_option(),
    sign: Path | None = typer.Option(None, "--sign", metavar="KEY", help="a committed run's re-run only: sign it with "
                                     "this private key when it ends (else `nanopoor sign RUN --key KEY` later)"),
    fmt: Format = format_option(),
) -> None:
    from nanopoor.reproduce import reproduce_claim, reproduce_run

    if (record / "result.json").is_file():  # a committed run folder: re-run it as it was made
        report = reproduce_run(record, data=data, out=runs, timeout_s=timeout, quiet=fmt == Format.json,
                               as_t4=as_t4, allow_cpu=allow_cpu, on_note=say_note, isolated=not no_isolation, sign=sign)
        if fmt == Format.json:
            print_json(report)
        else:
            typer.echo(report["summary"])
            if report["signed"] is not None:
                print_report(report["signed"])
        if not report["reproduced"]:
            _not_reproduced(report["why"], fmt)
        return
    if sign is not None:
        raise UserError(f"--sign signs the re-run of a committed run folder (runs/<run_id>); {record} is a record, whose "
                        f"claim's comparison is not signed")
    cmp = reproduce_claim(record, claim=claim, data=data, scale=scale.value, seed=seed, runs_dir=runs, timeout_s=timeout,
                          plot=plot, allow_cpu=allow_cpu, as_t4=as_t4, quiet=fmt == Format.json, on_note=say_note,
                          isolated=not no_isolation)
    if fmt == Format.json:
        print_json(cmp.to_dict())
    else:
        _print_comparison(cmp)
    if cmp.verdict == "not reproduced":
        _not_reproduced("; ".join(cmp.reasons[:1]) + (f" (+{len(cmp.reasons) - 1} more above)" if len(cmp.reasons) > 1 else ""), fmt)


def _not_reproduced(why: str, fmt: Format) -> None:
    """a reproduction that ran and did not reproduce: one line on stderr, exit code 2 (as a run
    that did not complete); exit 1 stays for what was typed wrong."""
    if fmt == Format.table:
        typer.echo(f"not reproduced: {why}", err=True)
    raise typer.Exit(2)


def _print_comparison(cmp) -> None:
    console = Console()
    t, tok, run = cmp.time, cmp.tokens, cmp.run
    table = Table(title=f"reproduce {cmp.record}", title_justify="left")
    table.add_column("")
    table.add_column("claim")
    table.add_column("harness")
    table.add_row("hardware", str(t["claim_hardware"] or "?"), str(t["run_hardware"] or "?"))
    table.add_row("time", fmt_ms(t["claim_ms"]), fmt_ms(t["run_ms"]) + (f" ({t['ratio']:.2f}x)" if t["ratio"] else ""))
    table.add_row("tokens", f"{fmt_tokens(tok['claim'])} ({tok['claim_formula'] or '?'})",
                  f"{fmt_tokens(tok['run'])} ({tok['run_formula'] or '?'})")
    log = cmp.claim_log or {}
    table.add_row("final val loss", fmt_loss(log.get("final_val_loss")) + (" (its own eval)" if log else ""),
                  fmt_loss(run.get("val_loss")) + " (canonical val set)")
    table.add_row("status", "published", f"{run.get('status')} ({run.get('scale')} scale, causal: {run.get('causal')})")
    console.print(table)
    if cmp.steps:
        steps = Table(title="val loss at matching steps", title_justify="left")
        for col in ("step", "claim", "harness", "diff"):
            steps.add_column(col, justify="right")
        for row in cmp.steps:
            steps.add_row(str(row["step"]), fmt_loss(row["claim_val_loss"]), fmt_loss(row["run_val_loss"]), f"{row['diff']:+.4f}")
        console.print(steps)
    elif cmp.claim_log is None:
        console.print("the claim's log is not available here (peer_log under ../shared/peer-logs)")
    color = {"reproduced": "green", "inconclusive": "yellow"}.get(cmp.verdict, "red")
    console.print(f"verdict: [bold {color}]{cmp.verdict}[/]")
    for reason in cmp.reasons:
        console.print(f"  - {reason}")
    console.print(f"run folder: {cmp.run_dir}" + (f"; overlay: {cmp.plot}" if cmp.plot else ""))
