"""review whole log files: parse each, judge it with review.py's rules, give the json that
`nanopoor review --format json` prints, write a loss-curve png only where asked, and many logs in
a few processes at once. review.py holds the rules; this module holds the files around them."""
from __future__ import annotations

import functools
import os
from pathlib import Path

from nanopoor.logs.model import ParsedLog
from nanopoor.review import DEFAULT_TRACK, SEVERITIES, review_config, review_parsed


@functools.cache
def resolve_track(name: str):
    """a track by name, once per process (a many-log review asks for it per log)."""
    from supervisor.tracks import UnknownTrack, get_track

    from nanopoor.errors import UserError
    try:
        return get_track(name)
    except UnknownTrack as e:
        raise UserError(f"{e}; pass --track NAME") from None


def track_of(parsed: ParsedLog) -> str | None:
    t = parsed.meta.get("track")
    return t.get("name") if isinstance(t, dict) else t


def review_log(path: Path | str, *, track: str | None = None, target: float | None = None,
               tokens_per_step: int | None = None, parser: str | None = None) -> tuple[ParsedLog, dict]:
    """parse and review one log: (the parsed log, what `review --format json` prints for it)."""
    from nanopoor.logs import parse_log

    parsed = parse_log(path, parser=parser)
    track_obj = resolve_track(track or track_of(parsed) or DEFAULT_TRACK)
    findings = review_parsed(parsed, track_obj, tokens_per_step, target=target)
    cfg = review_config(track_obj, target)
    data = {"log": parsed.summary(cfg.target), "track": cfg.track_name, "target": cfg.target,
            "findings": [f.to_dict() for f in findings], "plot": None,
            "counts": {s: sum(f.severity == s for f in findings) for s in SEVERITIES}}
    return parsed, data


def review_many(paths: list[Path], *, named: set[Path], plot_names: dict | None = None, jobs: int = 1, **opts):
    """review_log over many logs, in order, `jobs` processes at a time: yields each log's json dict.
    a file that is no log gives {"error": ..., "skipped": True when it was found by a folder search}.
    plot_names maps a path to the png to write for it (--plot-dir)."""
    tasks = [(p, Path(p).resolve() in named, (plot_names or {}).get(p), opts) for p in paths]
    if jobs <= 1 or len(tasks) < 4 * jobs:
        yield from map(_review_task, tasks)
        return
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        # chunks keep the per-task overhead small; map keeps the order of the paths
        yield from pool.map(_review_task, tasks, chunksize=max(1, min(32, len(tasks) // (8 * jobs))))


def _review_task(task) -> dict:
    from nanopoor.errors import UserError

    path, was_named, png, opts = task
    try:
        parsed, data = review_log(path, **opts)
    except UserError as e:
        # a file found by searching a folder that is no log (a README, a config) is skipped; a file
        # named on the command line that cannot be read is reported
        return {"log": {"path": str(path)}, "error": str(e), "skipped": not was_named}
    if png is not None:
        data["plot"] = str(_write_plot(parsed, data, png))
    return data


# --- what `nanopoor review` asks for: which logs, which pngs -------------------------------
def logs_to_review(logs: list[Path], *, plot: Path | None = None, track: str | None = None,
                   parser: str | None = None) -> tuple[list[Path], bool]:
    """the log files under what the user named, and whether that is one log (shown in full) or many
    (a line each). a misspelt --track or --parser is one error here, not one per log."""
    from nanopoor.errors import UserError
    from nanopoor.logs.collect import collect_logs
    from nanopoor.logs.registry import get_parser

    paths = collect_logs(logs)
    if not paths:
        raise UserError(f"no logs in {', '.join(map(str, logs))}: give log files or folders that hold "
                        f"*.txt, *.log, *.out, *.stdout or a run's events.jsonl")
    single = len(paths) == 1 and len(logs) == 1 and (Path(logs[0]).is_file() or (Path(logs[0]) / "events.jsonl").is_file())
    if plot is not None and len(paths) > 1:
        raise UserError(f"--plot writes one png but {len(paths)} logs were given: use --plot-dir DIR for many")
    if track:
        resolve_track(track)
    if parser:
        get_parser(parser)
    return paths, single


def review_one(path: Path, *, plot: Path | None = None, plot_dir: Path | None = None, **opts) -> dict:
    """review_log's json for one log; its loss-curve png only where plot (a file or a folder) or
    plot_dir says: reading never writes unless asked."""
    parsed, data = review_log(path, **opts)
    png = plot_dir / f"review-{parsed.name}.png" if plot_dir is not None else None
    if plot is not None:
        png = plot / f"review-{parsed.name}.png" if plot.is_dir() else plot
    if png is not None:
        data["plot"] = str(_write_plot(parsed, data, png))
    return data


def png_names(paths: list[Path], plot_dir: Path) -> dict[Path, Path]:
    """plot_dir/review-<name>.png for each log, with the folder's name in front when two logs share a name."""
    used: set[str] = set()
    out = {}
    for path in paths:
        path = Path(path)
        name = path.name if path.is_dir() else (path.parent.name if path.name == "events.jsonl" else path.stem)
        candidate = f"review-{name}.png"
        if candidate in used:
            candidate = f"review-{path.resolve().parent.name}-{name}.png"
        k = 2
        while candidate in used:
            candidate = f"review-{name}-{k}.png"
            k += 1
        used.add(candidate)
        out[path] = plot_dir / candidate
    return out


def default_jobs() -> int:
    """one process per core this process may use, at most 8 (start-up outweighs more)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def _write_plot(parsed: ParsedLog, data: dict, png: Path) -> Path:
    from nanopoor.loss_plot import write_loss_plot
    return write_loss_plot([(r.name, r) for r in parsed.runs], png, target=data["target"],
                           title=f"{parsed.name} ({parsed.format})")
