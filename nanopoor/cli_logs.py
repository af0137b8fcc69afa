"""`nanopoor review` and `nanopoor reproduce`: read what a log claims, and check a claim by running it.

register(app) adds both commands to the root typer app. heavy imports (matplotlib, the runner)
wait until a command needs them: `review` pays for matplotlib only when it writes the png
(benchmarks/bench_logs.py measures both)."""
from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from nanopoor.cli_run import AS_T4_HELP
from nanopoor.errors import UserError

DEFAULT_TRACK = "fineweb-edu"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("review", help="Show what a training log claims and what it cannot support.")(review)
    app.command("reproduce", help="Run a record as its claim describes and compare with the claim.")(reproduce)


# --- review --------------------------------------------------------------------------------
def review(
    log: Path = typer.Argument(..., help="a log file (any supported format) or a run folder"),
    target: Optional[float] = typer.Option(None, help="val loss the claim is about (default: the track's target)"),
    track: Optional[str] = typer.Option(None, help=f"track to judge against (default: the run's own, else {DEFAULT_TRACK})"),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
    plot: Optional[Path] = typer.Option(None, help="loss-curve png, a file or a folder (default: review-<name>.png beside the log; in the current folder for read-only places and run folders)"),
    no_plot: bool = typer.Option(False, "--no-plot", help="write no png"),
    tokens_per_step: Optional[int] = typer.Option(None, min=1, help="tokens per optimizer step, when the log does not say"),
    parser: Optional[str] = typer.Option(None, help="log format when auto-detection guesses wrong: events, runlog, nanopoor-text, modded-nanogpt, llmc, mlperf"),
) -> None:
    from nanopoor.logs import parse_log
    from nanopoor.review import review_config, review_parsed

    parsed = parse_log(log, parser=parser)
    track_obj = _track(track or _track_of(parsed) or DEFAULT_TRACK)
    findings = review_parsed(parsed, track_obj, tokens_per_step, target=target)
    cfg = review_config(track_obj, target)
    plot_path = None
    if not no_plot:
        from nanopoor.logs.plot import write_loss_plot
        plot_path = write_loss_plot([(r.name, r) for r in parsed.runs], _plot_path(log, parsed.name, plot),
                                    target=cfg.target, title=f"{parsed.name} ({parsed.format})")
    data = {"log": parsed.summary(cfg.target), "track": cfg.track_name, "target": cfg.target,
            "findings": [f.to_dict() for f in findings], "plot": str(plot_path) if plot_path else None,
            "counts": {s: sum(f.severity == s for f in findings) for s in ("error", "warn", "info")}}
    if format == OutputFormat.json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_review(data)


def _track(name: str):
    from harness.tracks import UnknownTrack, get_track
    try:
        return get_track(name)
    except UnknownTrack as e:
        raise UserError(f"{e}; pass --track NAME") from None


def _track_of(parsed) -> str | None:
    t = parsed.meta.get("track")
    return t.get("name") if isinstance(t, dict) else t


def _plot_path(log: Path, name: str, given: Path | None) -> Path:
    """beside the log when that folder is writable; run folders and read-only places: the cwd."""
    filename = f"review-{name}.png"
    if given is not None:
        return given / filename if given.is_dir() else given
    log = Path(log)
    if log.is_file() and _writable_dir(log.parent):
        return log.parent / filename
    return Path.cwd() / filename   # a run folder is an append-only artifact: never write into it


def _writable_dir(folder: Path) -> bool:
    """writable for us and not marked read-only (root passes os.access even on a r-x folder)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def _print_review(data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.events import fmt_tokens
    from nanopoor.review import fmt_ms

    console = Console()
    log = data["log"]
    console.print(f"[bold]{log['path']}[/bold]  format [cyan]{log['format']}[/cyan]  "
                  f"track {data['track']}  target {data['target']}")
    yes_no = lambda b: "[green]yes[/green]" if b else "[red]no[/red]"  # noqa: E731
    console.print(f"source code: {yes_no(log['has_source'])}   hardware: {log['hardware'] or yes_no(False)}   "
                  f"arguments: {yes_no(log['has_arguments'])}")
    claims = Table(title="what the log claims", title_justify="left")
    for col in ("run", "at target", "step", "time", "tokens", "final val", "best val"):
        claims.add_column(col, justify="left" if col == "run" else "right")
    for r in log["runs"]:
        hit = r["reached_target"]
        claims.add_row(r["name"], "[green]yes[/green]" if hit else "no",
                       str(r["target_step"] if hit else r["last_step"]),
                       fmt_ms(r["target_time_ms"] if hit else r["final_time_ms"]),
                       fmt_tokens(r["target_tokens"] if hit else r["final_tokens"]),
                       _loss(r["final_val_loss"]), _loss(r["best_val_loss"]))
    console.print(claims)
    if any(r["tokens_formula"] for r in log["runs"]):
        console.print("tokens: " + "; ".join(sorted({r["tokens_formula"] for r in log["runs"] if r["tokens_formula"]})))
    if not data["findings"]:
        console.print("[green]no anomalies found[/green]")
    else:
        table = Table(title="anomalies", title_justify="left")
        table.add_column("severity")
        table.add_column("run")
        table.add_column("rule")
        table.add_column("finding", overflow="fold")
        colors = {"error": "red", "warn": "yellow", "info": "blue"}
        for f in data["findings"]:
            table.add_row(f"[{colors[f['severity']]}]{f['severity']}[/]", f["run"] or "-", f["rule"], f["message"])
        console.print(table)
    c = data["counts"]
    console.print(f"{c['error']} errors, {c['warn']} warnings, {c['info']} notes"
                  + (f"; loss curve: {data['plot']}" if data["plot"] else ""))


def _loss(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


# --- reproduce -----------------------------------------------------------------------------
class Scale(str, Enum):
    full = "full"
    smoke = "smoke"


def reproduce(
    record: Path = typer.Argument(..., help="a record folder (records/<name>)"),
    claim: Optional[int] = typer.Option(None, min=1, help="which claims entry of record.toml, 1 = the first (default)"),
    data: Optional[Path] = typer.Option(None, help="dataset folder (default: data/<the track's dataset>)"),
    scale: Scale = typer.Option(Scale.full, help="full reproduces the claim; smoke only checks the code path"),
    seed: Optional[int] = typer.Option(None, help="seed (default: drawn by the harness)"),
    out: Path = typer.Option(Path("runs"), help="where the run folder goes"),
    timeout: Optional[float] = typer.Option(None, help="stop the run after this many seconds"),
    plot: Optional[Path] = typer.Option(None, help="overlay png, a file or a folder (default: ./reproduce-<record>.png)"),
    as_t4: bool = typer.Option(False, "--as-t4", help=AS_T4_HELP),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    from nanopoor import runner
    from nanopoor.logs import parse_log
    from nanopoor.logs.events import parse as parse_events
    from nanopoor.logs.plot import write_loss_plot
    from nanopoor.records import load_record
    from nanopoor.reproduce import claim_log_path, compare_to_claim, pick_claim

    rec = load_record(record)
    chosen = pick_claim(rec.claims, claim, rec.name)
    log_path = claim_log_path(chosen)
    claim_log = parse_log(log_path) if log_path else None
    run_dir = runner.run_record(rec.path, scale=scale.value, seed=seed, data_dir=data, out_root=out,
                                timeout_s=timeout, track=None, quiet=format == OutputFormat.json, as_t4=as_t4)
    cmp = compare_to_claim(run_dir, chosen, claim_log, record=rec.name)
    curves = [(f"claim ({log_path.name})", r) for r in (claim_log.runs[-1:] if claim_log else [])]
    events = Path(run_dir) / "events.jsonl"
    if events.is_file():
        curves += [(f"harness ({cmp.run.get('scale')})", r) for r in parse_events(events.read_text(), events).runs]
    if curves:
        plot_path = plot / f"reproduce-{rec.name}.png" if plot and plot.is_dir() else plot or Path(f"reproduce-{rec.name}.png")
        cmp.plot = str(write_loss_plot(curves, plot_path, title=f"{rec.name}: claim vs harness",
                                       target=cmp.target))
    if format == OutputFormat.json:
        typer.echo(json.dumps(cmp.to_dict(), indent=2))
    else:
        _print_comparison(cmp)


def _print_comparison(cmp) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.events import fmt_tokens
    from nanopoor.review import fmt_ms

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
    table.add_row("final val loss", _loss(log.get("final_val_loss")) + (" (its own eval)" if log else ""),
                  _loss(run.get("val_loss")) + " (canonical val set)")
    table.add_row("status", "published", f"{run.get('status')} ({run.get('scale')} scale, causal: {run.get('causal')})")
    console.print(table)
    if cmp.steps:
        steps = Table(title="val loss at matching steps", title_justify="left")
        for col in ("step", "claim", "harness", "diff"):
            steps.add_column(col, justify="right")
        for row in cmp.steps:
            steps.add_row(str(row["step"]), _loss(row["claim_val_loss"]), _loss(row["run_val_loss"]), f"{row['diff']:+.4f}")
        console.print(steps)
    elif cmp.claim_log is None:
        console.print("the claim's log is not available here (peer_log under ../shared/peer-logs)")
    color = {"reproduced": "green", "inconclusive": "yellow"}.get(cmp.verdict, "red")
    console.print(f"verdict: [bold {color}]{cmp.verdict}[/]")
    for reason in cmp.reasons:
        console.print(f"  - {reason}")
    console.print(f"run folder: {cmp.run_dir}" + (f"; overlay: {cmp.plot}" if cmp.plot else ""))
