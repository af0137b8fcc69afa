"""verbs that judge runs: leaderboard, verify, submit, compare."""
from __future__ import annotations

import json
from collections import defaultdict
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nanopoor.cli_run import AS_T4_HELP
from nanopoor.errors import UserError, did_you_mean


class Format(str, Enum):
    table = "table"
    json = "json"


class Scale(str, Enum):
    full = "full"
    smoke = "smoke"


def register(app: typer.Typer) -> None:
    app.command("leaderboard")(leaderboard)
    app.command("verify")(verify)
    app.command("submit")(submit)
    app.command("compare")(compare)


def _echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def leaderboard(
    runs: Path = typer.Option(None, help="folder of run folders [default: runs]"),
    records: Path = typer.Option(Path("records"), help="folder of records (their claims are shown)"),
    out: Path = typer.Option(Path("leaderboard.md"), help="markdown file; .json, .csv and .png go beside it"),
    check: bool = typer.Option(False, "--check", help="write nothing; exit 1 when a file is stale or a run does not verify"),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """Regenerate leaderboard.md (+ .json, .csv, .png) from runs/ and the records' claims."""
    from nanopoor import leaderboard as lb

    if runs is not None and not runs.is_dir():
        raise UserError(f"no runs folder at {runs}: pass --runs DIR with run folders (or leave it out for runs/)")
    runs = runs or Path("runs")
    board = lb.build(runs, records, out) if check else lb.generate(runs, records, out)
    stale = [p.as_posix() for p in lb.stale_files(board)] if check else []
    frame = board.frame
    subs = frame[frame["kind"] == "submission"]
    report = {"files": sorted(p.as_posix() for p in board.files), "stale": stale, "problems": board.problems,
              "submissions": int(len(subs)), "verified": int(subs["verified"].sum()),
              "ranked": int(subs["rank"].notna().sum()), "claims": int((frame["kind"] == "claim").sum())}
    if fmt == Format.json:
        _echo_json(report)
    else:
        err = Console(stderr=True)
        for p in board.problems:
            err.print(f"[red]does not verify[/] {p}", markup=True, highlight=False)
        for p in stale:
            err.print(f"[red]stale[/] {p}", highlight=False)
        verb = "checked" if check else "wrote"
        Console().print(f"{verb} {', '.join(report['files'])}: {report['submissions']} submissions "
                        f"({report['verified']} verified, {report['ranked']} ranked), {report['claims']} claims",
                        highlight=False)
    if check and (stale or board.problems):
        if fmt == Format.table:
            what = []
            if stale:
                what.append(f"{len(stale)} stale file(s): run `nanopoor leaderboard` and commit them")
            if board.problems:
                what.append(f"{len(board.problems)} run problem(s): see `nanopoor verify {runs.as_posix()}`")
            typer.echo("error: leaderboard check failed: " + "; ".join(what), err=True)
        raise typer.Exit(1)


def verify(
    target: str = typer.Argument(..., help="a run folder, a record (folder or name), or a folder of runs"),
    runs_dir: Path = typer.Option(Path("runs"), help="where a record's runs are looked up"),
    records: Path = typer.Option(Path("records"), help="where a run's record is looked up"),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """Recompute digests and rules of committed runs; exit 1 when anything does not verify."""
    from nanopoor.verify import verify_target

    checks = verify_target(target, runs_dir, records)
    ok = all(c.ok for c in checks)
    if fmt == Format.json:
        _echo_json({"ok": ok, "checked": len(checks), "checks": [c.to_dict() for c in checks]})
    else:
        table = Table("kind", "subject", "verdict", "problems")
        for c in checks:
            table.add_row(c.kind, c.subject, "[green]ok[/]" if c.ok else "[red]FAILED[/]", "\n".join(c.problems))
        Console().print(table)
        from nanopoor.records import describe_lineage

        for c in checks:
            if c.lineage is not None:
                Console().print(f"{c.subject} {describe_lineage(c.lineage)}", highlight=False, markup=False)
        Console().print(f"{sum(c.ok for c in checks)} of {len(checks)} verify", highlight=False)
    if not ok:
        raise typer.Exit(1)


def submit(
    record: Path = typer.Argument(..., help="record folder or name, e.g. records/muon_3xlr or muon_3xlr"),
    runs: int = typer.Option(None, min=1, help="number of runs [default: the record's `seeds`, else 3]"),
    data: Path = typer.Option(None, help="dataset folder (default data/<track dataset>)"),
    track: str = typer.Option(None, help="run on another track than the scale's"),
    scale: Scale = typer.Option(Scale.full, help="full (ranked) or smoke (counted, never ranked)"),
    runs_dir: Path = typer.Option(None, help="folder that receives the run folders [default: runs/ for a full-scale "
                                             "submission on a gpu, else dev-runs/ (ignored by git, never ranked)]"),
    timeout: float = typer.Option(None, help="stop each run after this many seconds"),
    out: Path = typer.Option(None, help="leaderboard file to regenerate [default: leaderboard.md for runs/, "
                                        "else leaderboard.md inside the runs folder]"),
    allow_cpu: bool = typer.Option(False, "--allow-cpu", help="run a full-scale record on a cpu anyway (hours per seed)"),
    parallel: bool = typer.Option(False, "--parallel", help="run the seeds at once, one per visible gpu"),
    gpus: str = typer.Option(None, "--gpus", help="with --parallel: the device ids to use, e.g. 0,1,2 [default: CUDA_VISIBLE_DEVICES, else every gpu]"),
    as_t4: bool = typer.Option(False, "--as-t4", help=AS_T4_HELP),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """Run a record's seeds, verify them, regenerate the leaderboard, print the verdict and the files to commit."""
    from nanopoor.outputs import DEV_RUNS, default_runs_dir
    from nanopoor.records import load_record
    from nanopoor.runner import has_gpu, preflight
    from nanopoor.submit import submit as do_submit

    if gpus is not None and not parallel:
        raise UserError("--gpus picks the devices of --parallel runs: add --parallel")
    rec = load_record(record)   # a bare name, as `verify` takes it, is records/<name>
    n_runs = runs if runs is not None else rec.seeds
    for note in preflight(record, scale.value, track=track, data_dir=data, n_runs=n_runs, allow_cpu=allow_cpu,
                          verb="submit"):
        typer.echo(f"note: {note}", err=True)
    runs_dir = runs_dir or default_runs_dir(scale.value, has_gpu())
    dev = runs_dir.resolve() == DEV_RUNS.resolve()
    # the committed board is made from runs/ only: dev runs get a board of their own beside them
    out = out or (runs_dir / "leaderboard.md" if dev else Path("leaderboard.md"))
    err = Console(stderr=True, highlight=False)

    def done(run_dir: Path, gpu: str) -> None:   # parallel runs have no live display: one line each
        try:
            r = json.loads((Path(run_dir) / "result.json").read_text())
            vl = f"val loss {r['val_loss']:.4f}" if isinstance(r.get("val_loss"), float) else "no val loss"
            err.print(f"gpu {gpu}: {Path(run_dir).name} {r.get('status')} ({vl}, train {(r.get('train_time_ms') or 0) / 1000:.1f} s)")
        except (OSError, ValueError):
            err.print(f"gpu {gpu}: {Path(run_dir).name} wrote no readable result.json")

    device_ids = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else None
    outcome = do_submit(rec.path, n_runs=runs, data_dir=data, track=track, scale=scale.value, runs_dir=runs_dir,
                        timeout_s=timeout, out=out, quiet=fmt == Format.json, parallel=parallel, gpus=device_ids,
                        on_done=done if fmt == Format.table else None, as_t4=as_t4)
    if fmt == Format.json:
        _echo_json({**outcome.to_dict(), **({"to_commit": []} if dev else {})})
    else:
        console = Console(highlight=False)
        for s in outcome.submissions:
            verdict = s["verdict"] + (f" ({s['reasons']})" if s["reasons"] else "")
            console.print(f"[bold]{s['record']}[/] on {s['hardware']}, track {s['track']}, scale {s['scale']}: {verdict}")
            if s["val_loss_mean"] is not None:
                p = f", p={s['p_value']:.2g}" if s["p_value"] is not None else ""
                console.print(f"  val loss {s['val_loss_mean']:.4f} (target {s['target_val_loss']}{p}); "
                              f"train time {s['train_time_ms_mean'] / 60000:.2f} min over {s['n_runs']} run(s)")
        for c in outcome.checks:
            if not c.ok:
                console.print(f"[red]does not verify[/] {c.subject}: {'; '.join(c.problems)}")
        if not dev:
            console.print("files to commit: git add these, then open a pull request")
            for line in outcome.to_commit:
                console.print(f"  {line}")
        else:
            console.print(f"nothing to commit: {runs_dir.as_posix()}/ holds dev runs, never ranked "
                          f"(a full-scale submission on a gpu goes to runs/); its board: {out.as_posix()}")
    if not all(c.ok for c in outcome.checks):
        raise typer.Exit(1)


def _runs_of(runs_dir: Path, record: str, scale: str) -> dict[tuple, list[dict]]:
    """completed runs of a record, grouped by (track, dataset fingerprint, hardware)."""
    from nanopoor.verify import load_result, run_dirs, track_name

    groups = defaultdict(list)
    for path in run_dirs(runs_dir):
        try:
            r = load_result(path)
        except (UserError, OSError, ValueError):
            continue
        if r.get("record") == record and r.get("scale") == scale and r.get("status") == "completed":
            groups[(track_name(r), str(r.get("dataset_fingerprint")), str(r.get("hardware_label")))].append(r)
    return groups


def _no_runs_message(name: str, runs_dir: Path, scale: str) -> str:
    """why a record has nothing to compare: no such record (did you mean), or no runs of it yet."""
    from nanopoor.records import RECORDS_DIR
    from nanopoor.verify import load_result, run_dirs

    records = sorted(p.parent.name for p in RECORDS_DIR.glob("*/record.toml"))
    ran = set()
    for path in run_dirs(runs_dir):
        try:
            ran.add(load_result(path).get("record"))
        except (UserError, OSError, ValueError):
            continue
    if name not in records and name not in ran:
        known = sorted(set(records) | ran - {None})
        return (f"no record '{name}'{did_you_mean(name, known)}; records with runs in {runs_dir.as_posix()}: "
                f"{', '.join(sorted(ran - {None})) or 'none'}")
    if name in records:
        from nanopoor.records import load_record

        scales = sorted(load_record(RECORDS_DIR / name).scales)
        if scale not in scales:
            return f"record '{name}' has no {scale} scale (its scales: {', '.join(scales)}): pass --scale {scales[0]}"
        return (f"no completed {scale}-scale runs of '{name}' in {runs_dir.as_posix()}: "
                f"`nanopoor submit {(RECORDS_DIR / name).as_posix()}` makes them")
    return f"no completed {scale}-scale runs of '{name}' in {runs_dir.as_posix()} (its record is not in {RECORDS_DIR.as_posix()}/)"


def compare(
    a: str = typer.Argument(..., help="record name or folder (is it faster than B?)"),
    b: str = typer.Argument(..., help="record name or folder"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs", help="folder of run folders"),
    hardware: str = typer.Option(None, help="hardware label when both ran on several, e.g. '1× Tesla T4'"),
    scale: Scale = typer.Option(Scale.full, help="which scale's runs to compare"),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """Welch's t-test between two records' completed runs: is A faster (and lower loss) than B?"""
    from nanopoor.stats import compare_samples, speedup

    a, b = Path(a).name, Path(b).name
    ga, gb = _runs_of(runs_dir, a, scale.value), _runs_of(runs_dir, b, scale.value)
    for name, g in ((a, ga), (b, gb)):
        if not g:
            raise UserError(_no_runs_message(name, runs_dir, scale.value))
    common = sorted(set(ga) & set(gb))
    if hardware is not None:
        labels = sorted({k[2] for k in common})
        common = [k for k in common if k[2] == hardware]
        if not common:
            raise UserError(f"no runs of both on '{hardware}'{did_you_mean(hardware, labels)}; both ran on: {', '.join(labels) or 'nothing in common'}")
    if not common:
        raise UserError(f"'{a}' and '{b}' have no track, dataset and hardware in common: "
                        f"{a} ran on {sorted(ga)}, {b} on {sorted(gb)}")
    if len(common) > 1:
        raise UserError(f"both ran on several tracks/hardware: pick one with --hardware ({', '.join(sorted({k[2] for k in common}))})")
    key = common[0]
    rows = [compare_samples(m, [r[m] for r in ga[key]], [r[m] for r in gb[key]]) for m in ("train_time_ms", "val_loss")]
    fast = speedup([r["train_time_ms"] for r in ga[key]], [r["train_time_ms"] for r in gb[key]])
    if fmt == Format.json:
        _echo_json({"a": a, "b": b, "track": key[0], "dataset_fingerprint": key[1], "hardware": key[2],
                    "comparisons": [c.to_dict() for c in rows], "speedup": fast.to_dict()})
        return
    scale_of = {"train_time_ms": (60000, "min"), "val_loss": (1, "")}

    def ms(mean, sd, n, div):
        if mean is None:
            return "—"
        return f"{mean / div:.4g}" + (f" ± {sd / div:.2g}" if sd is not None else "") + f" (n={n})"

    table = Table("metric", a, b, "A − B", "p (A lower)", "significant", title=f"{key[0]} · {key[2]}")
    for c in rows:
        div, unit = scale_of[c.metric]
        name = "train time (min)" if unit else "val loss"
        table.add_row(name, ms(c.mean_a, c.sd_a, c.n_a, div), ms(c.mean_b, c.sd_b, c.n_b, div),
                      f"{c.difference / div:+.4g}" if c.difference is not None else "—",
                      f"{c.p_value:.2g}" if c.p_value is not None else "n < 2", "yes" if c.significant else "no")
    Console().print(table)
    if fast.ratio is not None:
        ci = (f", {fast.confidence:.0%} interval {fast.low:.3g}–{fast.high:.3g}" if fast.low is not None else ", n < 2: no interval")
        p = f", p={fast.p_value:.2g} that {a} is not faster" if fast.p_value is not None else ""
        Console().print(f"speed-up: {a} trains {fast.ratio:.3g}× faster than {b} (geometric means of train time{ci}{p})",
                        highlight=False)
