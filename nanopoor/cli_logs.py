"""`nanopoor review` and `nanopoor reproduce`: read what a log claims, and check a claim by running it.

register(app) adds both commands to the root typer app. heavy imports (matplotlib, the runner)
wait until a command needs them: `review` pays for matplotlib only when it writes the png
(benchmarks/bench_logs.py measures both)."""
from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

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
    logs: list[Path] = typer.Argument(..., help="log files (any supported format), run folders, or folders to search for logs"),
    target: float | None = typer.Option(None, help="val loss the claim is about (default: the track's target; an MLPerf log keeps its benchmark's)"),
    track: str | None = typer.Option(None, help=f"track to judge against (default: the run's own, else {DEFAULT_TRACK})"),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, or json (one object per log, one per line for many logs)"),
    plot: Path | None = typer.Option(None, help="write the loss curve of one log to this png (a file, or a folder for review-<name>.png)"),
    plot_dir: Path | None = typer.Option(None, "--plot-dir", help="write one loss-curve png per log into this folder"),
    no_plot: bool = typer.Option(False, "--no-plot", hidden=True, help="accepted for old scripts: no png is written unless asked"),
    tokens_per_step: int | None = typer.Option(None, min=1, help="tokens per optimizer step, when the log does not say"),
    parser: str | None = typer.Option(None, help="log format when auto-detection guesses wrong: events, runlog, nanopoor-text, modded-nanogpt, llmc, mlperf"),
    jobs: int | None = typer.Option(None, min=1, help="processes for many logs (default: one per core, at most 8)"),
) -> None:
    """reading never writes: a png appears only where --plot or --plot-dir says."""
    from nanopoor.logs.collect import collect_logs
    from nanopoor.logs.registry import get_parser
    from nanopoor.review import resolve_track, review_log

    paths = collect_logs(logs)
    if not paths:
        raise UserError(f"no logs in {', '.join(map(str, logs))}: give log files or folders that hold "
                        f"*.txt, *.log, *.out, *.stdout or a run's events.jsonl")
    single = len(paths) == 1 and len(logs) == 1 and (Path(logs[0]).is_file() or (Path(logs[0]) / "events.jsonl").is_file())
    if plot is not None and len(paths) > 1:
        raise UserError(f"--plot writes one png but {len(paths)} logs were given: use --plot-dir DIR for many")
    # a misspelt --track or --parser is one error, not one per log
    if track:
        resolve_track(track)
    if parser:
        get_parser(parser)
    opts = dict(track=track, target=target, tokens_per_step=tokens_per_step, parser=parser)
    if single:
        parsed, data = review_log(paths[0], **opts)
        png = plot_dir / f"review-{parsed.name}.png" if plot_dir is not None else None
        if plot is not None:
            png = plot / f"review-{parsed.name}.png" if plot.is_dir() else plot
        if png is not None:
            data["plot"] = str(_write_plot(parsed, data, png))
        if format == OutputFormat.json:
            typer.echo(json.dumps(data, indent=2))
        else:
            _print_review(data)
        return
    from nanopoor.review import review_many

    used: set[str] = set()
    pngs = {p: plot_dir / _unique_png(p, used) for p in paths} if plot_dir is not None else None
    rows = []
    for data in review_many(paths, named={Path(p).resolve() for p in logs}, plot_names=pngs,
                            jobs=jobs or _default_jobs(), **opts):
        if format == OutputFormat.json:
            typer.echo(json.dumps(data))
        rows.append(data)
    if format != OutputFormat.json:
        _print_many(rows)
    if all("error" in r for r in rows):
        raise UserError(f"none of the {len(rows)} files could be read as a log (see above)")


def _default_jobs() -> int:
    """one process per core this process may use, at most 8 (start-up outweighs more)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _write_plot(parsed, data: dict, out_path: Path) -> Path:
    from nanopoor.loss_plot import write_loss_plot
    return write_loss_plot([(r.name, r) for r in parsed.runs], out_path, target=data["target"],
                           title=f"{parsed.name} ({parsed.format})")


def _unique_png(path: Path, used: set[str]) -> str:
    """review-<name>.png, with the folder's name in front when two logs share a name."""
    path = Path(path)
    name = path.name if path.is_dir() else (path.parent.name if path.name == "events.jsonl" else path.stem)
    candidate = f"review-{name}.png"
    if candidate in used:
        candidate = f"review-{Path(path).resolve().parent.name}-{name}.png"
    k = 2
    while candidate in used:
        candidate = f"review-{name}-{k}.png"
        k += 1
    used.add(candidate)
    return candidate


def _print_review(data: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.events import fmt_tokens
    from nanopoor.review import fmt_ms

    console = Console()
    log = data["log"]
    console.print(f"[bold]{log['path']}[/bold]  format [cyan]{log['format']}[/cyan]  "
                  f"track {data['track']}  target {_targets(data)}")
    yes_no = lambda b: "[green]yes[/green]" if b else "[red]no[/red]"  # noqa: E731
    console.print(f"source code: {yes_no(log['has_source'])}   hardware: {log['hardware'] or yes_no(False)}   "
                  f"arguments: {yes_no(log['has_arguments'])}")
    claims = Table(title="what the log claims", title_justify="left")
    for col in ("run", "at target", "step", "time", "tokens", "final val", "best val"):
        claims.add_column(col, justify="left" if col == "run" else "right")
    for r in log["runs"]:
        hit = r["reached_target"]
        claims.add_row(r["name"] + ("" if r["metric"] == "val_loss" else f" ({r['metric']})"),
                       "[green]yes[/green]" if hit else "no",
                       str(r["target_step"] if hit else r["final_step"]),
                       fmt_ms(r["target_time_ms"] if hit else r["final_time_ms"]),
                       fmt_tokens(r["target_tokens"] if hit else r["final_tokens"]),
                       _loss(r["final_val_loss"]), _loss(r["best_val_loss"]))
    console.print(claims)
    for metric, st in (log.get("across_runs") or {}).items():
        console.print(f"over {st['count']} runs ({metric}): final {_mean_sd(st['final_val_loss'], _loss)}, "
                      f"step {_mean_sd(st['final_step'], lambda x: f'{x:.0f}')}, "
                      f"time {_mean_sd(st['final_time_ms'], fmt_ms)}")
    sources = sorted({r["time_source"] for r in log["runs"] if r["time_source"] and not r["time_source"].startswith("final val line")})
    if sources:
        console.print("time read from: " + "; ".join(sources))
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


def _targets(data: dict) -> str:
    """the track's target, or each benchmark metric's own (MLPerf)."""
    own = {(r["metric"], r["target"], r["higher_is_better"]) for r in data["log"]["runs"] if r.get("target_source")}
    if not own:
        return str(data["target"])
    return ", ".join(f"{m} {'>=' if up else '<='} {t}" for m, t, up in sorted(own, key=str))


def _mean_sd(st: dict | None, fmt) -> str:
    if not st:
        return "-"
    return fmt(st["mean"]) + (f" ± {fmt(st['sd'])}" if st["sd"] is not None else "")


def _print_many(rows: list[dict]) -> None:
    """one line per log: what it claims and what the rules found."""
    from rich.console import Console
    from rich.table import Table

    from nanopoor.review import fmt_ms

    console = Console()
    readable = [d["log"]["path"] for d in rows]
    base = Path(os.path.commonpath(readable)) if len(readable) > 1 else None
    base = base.parent if base is not None and Path(base).is_file() else base
    table = Table(title=f"{len(rows)} logs" + (f" under {base}" if base else ""), title_justify="left")
    for col in ("log", "format", "runs", "final val", "step", "time", "at target", "err/warn/note", "rules"):
        table.add_column(col, justify="left" if col in ("log", "format", "rules") else "right", overflow="fold")
    rel = lambda p: str(Path(p).relative_to(base)) if base else p  # noqa: E731
    skipped = 0
    for data in rows:
        if "error" in data:
            if data["skipped"]:
                skipped += 1
            else:
                table.add_row(rel(data["log"]["path"]), "[red]unread[/]", "", "", "", "", "", "", data["error"])
            continue
        log, c = data["log"], data["counts"]
        runs = [r for r in log["runs"] if r["final_val_loss"] is not None] or log["runs"]
        across = (log.get("across_runs") or {}).get(runs[0]["metric"]) if runs else None
        if across:
            val = _mean_sd(across["final_val_loss"], _loss) + f" (n={across['count']})"
            step = _mean_sd(across["final_step"], lambda x: f"{x:.0f}")
            time = _mean_sd(across["final_time_ms"], fmt_ms)
        else:
            r = runs[-1]
            val, step, time = _loss(r["final_val_loss"]), str(r["final_step"]), fmt_ms(r["final_time_ms"])
        hits = sum(r["reached_target"] for r in runs)
        rules = sorted({f["rule"] for f in data["findings"] if f["severity"] != "info"})
        table.add_row(rel(log["path"]), log["format"], str(len(log["runs"])), val, step, time,
                      f"{hits}/{len(runs)}", f"{c['error']}/{c['warn']}/{c['info']}", ", ".join(rules))
    console.print(table)
    read = sum("error" not in d for d in rows)
    console.print(f"{read} logs read" + (f", {skipped} files skipped (not a log)" if skipped else "")
                  + (f", {len(rows) - read - skipped} could not be read" if len(rows) - read - skipped else ""))


def _loss(x) -> str:
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


# --- reproduce -----------------------------------------------------------------------------
class Scale(str, Enum):
    full = "full"
    smoke = "smoke"


def reproduce(
    record: Path = typer.Argument(..., help="a record folder or name (records/<name> or <name>) to reproduce its published "
                                            "claim, or a committed run folder (runs/<run_id>) to re-run it as it was made"),
    claim: int | None = typer.Option(None, min=1, help="which claims entry of record.toml, 1 = the first (default)"),
    data: Path | None = typer.Option(None, help="dataset folder (default: data/<the track's dataset>)"),
    scale: Scale = typer.Option(Scale.full, help="full reproduces the claim; smoke only checks the code path"),
    seed: int | None = typer.Option(None, help="seed (default: drawn by the harness)"),
    out: Path | None = typer.Option(None, help="where the run folder goes [default: runs/ for a full-scale run on a gpu, "
                                                   "else dev-runs/ (ignored by git, never ranked)]"),
    timeout: float | None = typer.Option(None, help="stop the run after this many seconds"),
    plot: Path | None = typer.Option(None, help="write the claim-vs-harness overlay png here, a file or a folder (none unless asked)"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours)"),
    as_t4: bool = typer.Option(False, "--as-t4", help=AS_T4_HELP),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    from nanopoor import runner
    from nanopoor.logs import parse_log
    from nanopoor.logs.nanopoor_events import parse as parse_events
    from nanopoor.loss_plot import write_loss_plot
    from nanopoor.records import load_record
    from nanopoor.reproduce import claim_log_path, compare_to_claim, pick_claim

    from nanopoor.outputs import default_runs_dir

    if (record / "result.json").is_file():  # a committed run folder: re-run it as it was made
        from nanopoor.reproduce import reproduce_run

        report = reproduce_run(record, data=data, out=out or default_runs_dir("full", runner.has_gpu()), timeout_s=timeout,
                               quiet=format == OutputFormat.json, as_t4=as_t4)
        typer.echo(json.dumps(report, indent=2) if format == OutputFormat.json else report["summary"])
        return

    rec = load_record(record)
    chosen = pick_claim(rec.claims, claim, rec.name)
    for note in runner.preflight(rec.path, scale.value, data_dir=data, allow_cpu=allow_cpu, verb="reproduce"):
        typer.echo(f"note: {note}", err=True)
    out = out or default_runs_dir(scale.value, runner.has_gpu())
    log_path = claim_log_path(chosen)
    claim_log = parse_log(log_path) if log_path else None
    run_dir = runner.run_record(rec.path, scale=scale.value, seed=seed, data_dir=data, out_root=out,
                                timeout_s=timeout, track=None, quiet=format == OutputFormat.json, as_t4=as_t4)
    cmp = compare_to_claim(run_dir, chosen, claim_log, record=rec.name)
    curves = [(f"claim ({log_path.name})", r) for r in (claim_log.runs[-1:] if claim_log else [])]
    events = Path(run_dir) / "events.jsonl"
    if events.is_file():
        curves += [(f"harness ({cmp.run.get('scale')})", r) for r in parse_events(events.read_text(), events).runs]
    if curves and plot is not None:
        plot_path = plot / f"reproduce-{rec.name}.png" if plot.is_dir() else plot
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
