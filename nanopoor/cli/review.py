"""`nanopoor review`: what a training log (or many) claims and what it cannot support.

matplotlib is imported only when a png is asked for (benchmarks/bench_logs.py measures start-up)."""
from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from nanopoor.cli.options import format_option
from nanopoor.errors import UserError
from nanopoor.output import Format, fmt_loss, fmt_mean_sd, fmt_ms, fmt_tokens, print_json, print_json_array
from nanopoor.review import DEFAULT_TRACK
from nanopoor.tables import Col, fitted_table, left_out_lines


def register(app: typer.Typer) -> None:
    app.command("review", help="Show what a training log claims and what it cannot support.")(review)


def review(
    logs: list[Path] = typer.Argument(..., help="log files (any supported format), run folders, or folders to search for logs"),
    target: float | None = typer.Option(None, help="val loss the claim is about (default: the track's target; an MLPerf log keeps its benchmark's)"),
    track: str | None = typer.Option(None, help=f"track to judge against (default: the run's own, else {DEFAULT_TRACK})"),
    fmt: Format = format_option("table, or json (an object for one log, an array of them for many)"),
    plot: Path | None = typer.Option(None, help="write the loss curve of one log to this png (a file, or a folder for review-<name>.png)"),
    plot_dir: Path | None = typer.Option(None, "--plot-dir", help="write one loss-curve png per log into this folder"),
    no_plot: bool = typer.Option(False, "--no-plot", hidden=True, help="accepted for old scripts: no png is written unless asked"),
    tokens_per_step: int | None = typer.Option(None, min=1, help="tokens per optimizer step, when the log does not say"),
    parser: str | None = typer.Option(None, help="log format when auto-detection guesses wrong: events, runlog, nanopoor-text, modded-nanogpt, llmc, mlperf"),
    jobs: int | None = typer.Option(None, min=1, help="processes for many logs (default: one per core, at most 8)"),
) -> None:
    """reading never writes: a png appears only where --plot or --plot-dir says."""
    from nanopoor.review_logs import default_jobs, logs_to_review, png_names, review_many, review_one

    paths, single = logs_to_review(logs, plot=plot, track=track, parser=parser)
    opts = dict(track=track, target=target, tokens_per_step=tokens_per_step, parser=parser)
    if single:
        data = review_one(paths[0], plot=plot, plot_dir=plot_dir, **opts)
        if fmt == Format.json:
            print_json(data)
        else:
            _print_review(data)
        _exit_on_errors([data])
        return
    pngs = png_names(paths, plot_dir) if plot_dir is not None else None
    reviews = review_many(paths, named={Path(p).resolve() for p in logs}, plot_names=pngs, jobs=jobs or default_jobs(), **opts)
    if fmt == Format.json:   # one array, each log's object on a line as it is reviewed
        rows = print_json_array(reviews)
    else:
        rows = list(reviews)
        _print_many(rows)
    if all("error" in r for r in rows):
        raise UserError(f"none of the {len(rows)} files could be read as a log (see above)")
    _exit_on_errors(rows)


def _exit_on_errors(reviews: list[dict]) -> None:
    """a log whose claim cannot stand as stated (a finding of severity error) ends the review with
    exit code 1, as `verify` and `data audit` end on a finding; warnings and notes do not."""
    if any((r.get("counts") or {}).get("error") for r in reviews):
        raise typer.Exit(1)


def _counts(c: dict) -> str:
    """'1 error, 3 warnings, 0 notes', and when there are errors what the exit code means."""
    def n(k, word):
        return f"{c[k]} {word}{'' if c[k] == 1 else 's'}"
    text = f"{n('error', 'error')}, {n('warn', 'warning')}, {n('info', 'note')}"
    return text + (": the claim does not stand as stated (exit code 1)" if c["error"] else "")


def _print_review(data: dict) -> None:
    console = Console()
    log = data["log"]
    console.print(f"[bold]{log['path']}[/bold]  format [cyan]{log['format']}[/cyan]  "
                  f"track {data['track']}  target {_targets(data)}")
    yes_no = lambda b: "[green]yes[/green]" if b else "[red]no[/red]"  # noqa: E731
    # no arguments, yet every run is counted: its tokens per step were published beside the log
    published = not log["has_arguments"] and bool(log["runs"]) and all(r["tokens_formula"] for r in log["runs"])
    console.print(f"source code: {yes_no(log['has_source'])}   hardware: {log['hardware'] or yes_no(False)}   "
                  f"arguments: {yes_no(log['has_arguments'])}" + (" (tokens per step published beside it)" if published else ""))
    cols = [Col("run", ident=True), Col("at target", justify="right"), Col("step", justify="right"),
            Col("time", justify="right"), Col("tokens", justify="right"), Col("final val", justify="right"),
            Col("best val", justify="right", drop=1)]
    body = []
    for r in log["runs"]:
        hit = r["reached_target"]
        body.append([r["name"] + ("" if r["metric"] == "val_loss" else f" ({r['metric']})"),
                     "[green]yes[/green]" if hit else "no", str(r["target_step"] if hit else r["final_step"]),
                     fmt_ms(r["target_time_ms"] if hit else r["final_time_ms"]),
                     fmt_tokens(r["target_tokens"] if hit else r["final_tokens"]),
                     fmt_loss(r["final_val_loss"]), fmt_loss(r["best_val_loss"])])
    claims, left_out = fitted_table(cols, body, console.width, title="what the log claims", title_justify="left")
    console.print(claims)
    for line in left_out_lines(cols, body, left_out):
        console.print(line, highlight=False)
    for metric, st in (log.get("across_runs") or {}).items():
        console.print(f"over {st['count']} runs ({metric}): final {fmt_mean_sd(st['final_val_loss'], fmt_loss)}, "
                      f"step {fmt_mean_sd(st['final_step'], lambda x: f'{x:.0f}')}, "
                      f"time {fmt_mean_sd(st['final_time_ms'], fmt_ms)}")
    sources = sorted({r["time_source"] for r in log["runs"] if r["time_source"] and not r["time_source"].startswith("final val line")})
    if sources:
        console.print("time read from: " + "; ".join(sources))
    if any(r["tokens_formula"] for r in log["runs"]):
        console.print("tokens: " + "; ".join(sorted({r["tokens_formula"] for r in log["runs"] if r["tokens_formula"]})))
    if not data["findings"]:
        console.print("[green]no anomalies found[/green]")
    else:
        colors = {"error": "red", "warn": "yellow", "info": "blue"}
        cols = [Col("severity"), Col("run", ident=True), Col("rule", ident=True), Col("finding", wrap=True)]
        body = [[f"[{colors[f['severity']]}]{f['severity']}[/]", f["run"] or "-", f["rule"], f["message"]]
                for f in data["findings"]]
        table, _ = fitted_table(cols, body, console.width, title="anomalies", title_justify="left")
        console.print(table)
    c = data["counts"]
    console.print(_counts(c) + (f"; loss curve: {data['plot']}" if data["plot"] else ""), highlight=False)


def _targets(data: dict) -> str:
    """the track's target, or each benchmark metric's own (MLPerf)."""
    own = {(r["metric"], r["target"], r["higher_is_better"]) for r in data["log"]["runs"] if r.get("target_source")}
    if not own:
        return str(data["target"])
    return ", ".join(f"{m} {'>=' if up else '<='} {t}" for m, t, up in sorted(own, key=str))


def _print_many(rows: list[dict]) -> None:
    """one line per log: what it claims and what the rules found."""
    console = Console()
    readable = [d["log"]["path"] for d in rows]
    base = Path(os.path.commonpath(readable)) if len(readable) > 1 else None
    base = base.parent if base is not None and Path(base).is_file() else base
    cols = [Col("log", ident=True), Col("format", drop=4), Col("runs", justify="right", drop=6),
            Col("final val", wrap=True, justify="right"), Col("step", wrap=True, justify="right", drop=5),
            Col("time", wrap=True, justify="right", drop=3), Col("at target", justify="right"),
            Col("err/warn/note", justify="right"), Col("rules", wrap=True, drop=2)]
    rel = lambda p: str(Path(p).relative_to(base)) if base else p  # noqa: E731
    skipped = 0
    body = []
    for data in rows:
        if "error" in data:
            if data["skipped"]:
                skipped += 1
            else:
                body.append([rel(data["log"]["path"]), "[red]unread[/]", "", "", "", "", "", "", data["error"]])
            continue
        log, c = data["log"], data["counts"]
        runs = [r for r in log["runs"] if r["final_val_loss"] is not None] or log["runs"]
        across = (log.get("across_runs") or {}).get(runs[0]["metric"]) if runs else None
        if across:
            val = fmt_mean_sd(across["final_val_loss"], fmt_loss) + f" (n={across['count']})"
            step = fmt_mean_sd(across["final_step"], lambda x: f"{x:.0f}")
            time = fmt_mean_sd(across["final_time_ms"], fmt_ms)
        else:
            r = runs[-1]
            val, step, time = fmt_loss(r["final_val_loss"]), str(r["final_step"]), fmt_ms(r["final_time_ms"])
        hits = sum(r["reached_target"] for r in runs)
        rules = sorted({f["rule"] for f in data["findings"] if f["severity"] != "info"})
        body.append([rel(log["path"]), log["format"], str(len(log["runs"])), val, step, time,
                     f"{hits}/{len(runs)}", f"{c['error']}/{c['warn']}/{c['info']}", ", ".join(rules)])
    table, left_out = fitted_table(cols, body, console.width, title=f"{len(rows)} logs" + (f" under {base}" if base else ""),
                                   title_justify="left")
    console.print(table)
    for line in left_out_lines(cols, body, left_out):   # a narrow terminal: the rest of each row on a line
        console.print(line, highlight=False)
    read = sum("error" not in d for d in rows)
    unread = len(rows) - read - skipped
    failing = sum(bool((d.get("counts") or {}).get("error")) for d in rows)
    console.print(f"{read} log{'s' if read != 1 else ''} read"
                  + (f", {skipped} file{'s' if skipped != 1 else ''} skipped (not a log)" if skipped else "")
                  + (f", {unread} could not be read" if unread else "")
                  + (f"; {failing} with errors: exit code 1" if failing else ""), highlight=False)
