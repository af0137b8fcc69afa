"""submit a record: run its declared seeds, verify the runs, regenerate the leaderboard.

every seed is harness-assigned and every run is kept and reported (no best-of): a failed
run stays in runs/ and in the verdict. with --parallel the seeds run at once, one per visible
gpu (each process sees only its own through CUDA_VISIBLE_DEVICES), then are judged the same way. the output ends with the paths to commit, in
`git status --porcelain` style, computed from what this command wrote (git is not needed).
"""
from __future__ import annotations

import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nanopoor import leaderboard, records, runner
from nanopoor.errors import UserError
from nanopoor.leaderboard import rows_of
from nanopoor.verify import Check, RecordDigests, check_run

SCALES = ("full", "smoke")


@dataclass
class SubmitOutcome:
    record: str
    scale: str
    runs: list[Path]                       # the run folders this submission wrote, in order
    checks: list[Check]                    # verify's answer for each of them
    submissions: list[dict]                # leaderboard rows holding these runs (normally one)
    to_commit: list[str] = field(default_factory=list)   # porcelain-style lines: "?? runs/<id>/"; none for dev runs
    runs_dir: Path = Path("runs")          # where the run folders went
    out: Path = Path("leaderboard.md")     # the leaderboard file regenerated
    dev: bool = False                      # runs_dir is dev-runs/: never ranked, nothing to commit

    @property
    def verified(self) -> bool:
        return bool(self.submissions) and all(s["verified"] for s in self.submissions)

    def to_dict(self) -> dict:
        return {"record": self.record, "scale": self.scale, "runs": [p.as_posix() for p in self.runs],
                "checks": [c.to_dict() for c in self.checks], "submissions": self.submissions,
                "verified": self.verified, "to_commit": self.to_commit}


def porcelain(before: dict[Path, bytes | None], after: dict[Path, bytes], new_runs: list[Path]) -> list[str]:
    """'?? path' for new files and folders, ' M path' for changed ones, sorted by path."""
    lines = [(p.as_posix() + "/", "??") for p in new_runs]
    for path, data in after.items():
        old = before.get(path)
        if old is None:
            lines.append((path.as_posix(), "??"))
        elif old != data:
            lines.append((path.as_posix(), " M"))
    return [f"{code} {path}" for path, code in sorted(lines)]


def run_parallel(rec, n: int, gpus: list[str], *, on_done=None, **kw) -> list[Path]:
    """n runs of rec, at most one per gpu at a time, each process seeing only its gpu
    (CUDA_VISIBLE_DEVICES); the folders in start order. every run is kept, whatever its status."""
    free: queue.Queue = queue.Queue()
    for g in gpus:
        free.put(g)

    def one(_) -> Path:
        gpu = free.get()
        try:
            run_dir = Path(runner.run_record(rec.path, seed=None, quiet=True, env={"CUDA_VISIBLE_DEVICES": gpu}, **kw))
        finally:
            free.put(gpu)
        if on_done is not None:
            on_done(run_dir, gpu)
        return run_dir

    with ThreadPoolExecutor(max_workers=len(gpus), thread_name_prefix="nanopoor-run") as pool:
        return list(pool.map(one, range(n)))


def parallel_gpus(gpus: list[str] | None) -> list[str]:
    """the devices --parallel runs on: the ones named, else every visible gpu; each at most once."""
    from nanopoor.hardware import visible_gpus

    gpus = list(gpus) if gpus else visible_gpus()
    if not gpus:
        raise UserError("--parallel runs one seed per gpu and this machine shows none (nvidia-smi, "
                        "CUDA_VISIBLE_DEVICES): drop --parallel, or name the devices with --gpus 0,1,2")
    if len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus names a device twice ({','.join(gpus)}): each parallel run needs its own gpu")
    return gpus


def submit(record_path: str | Path, *, n_runs: int | None = None, data_dir: str | Path | None = None,
           track: str | None = None, scale: str = "full", runs_dir: str | Path | None = None,
           timeout_s: float | None = None, out: str | Path | None = None, quiet: bool = False,
           parallel: bool = False, gpus: list[str] | None = None, on_done=None, as_t4: bool = False,
           allow_cpu: bool = False, isolated: bool = True, on_note=None) -> SubmitOutcome:
    """run the record's seeds (one after another, or with `parallel` one per gpu at a time), verify
    them and regenerate the leaderboard. n_runs: the number of runs [default: the record's `seeds`];
    runs_dir [default: runs/ for a full-scale submission on a gpu, else dev-runs/]; out: the
    leaderboard file [default: leaderboard.md, or beside the runs for dev runs]. gpus: the device
    ids for parallel runs [default: the visible ones]; on_note(text) gets the preflight's notes
    before anything runs; on_done(run_dir, gpu) is called as each parallel run ends."""
    from nanopoor.output import DEV_RUNS, check_writable, default_runs_dir

    if scale not in SCALES:
        raise UserError(f"unknown scale '{scale}': use --scale full or --scale smoke")
    rec = records.load_record(record_path)   # a bare name, as `verify` takes it, is records/<name>
    n = rec.seeds if n_runs is None else n_runs
    if n < 1:
        raise UserError(f"--seeds must be at least 1, not {n}")
    for note in runner.preflight(record_path, scale, track=track, data_dir=data_dir, n_runs=n, allow_cpu=allow_cpu,
                                 isolated=isolated,
                                 verb="submit"):
        if on_note is not None:
            on_note(note)
    records.check_frozen(rec)   # a changed frozen record never runs: make a new record
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir(scale, runner.has_gpu())
    dev = runs_dir.resolve() == DEV_RUNS.resolve()
    # the committed board is made from runs/ only: dev runs get a board of their own beside them
    out = Path(out) if out is not None else (runs_dir / "leaderboard.md" if dev else Path("leaderboard.md"))
    check_writable(runs_dir, "--runs DIR")     # before any run starts, not when the board is written
    check_writable(out.parent, "--out PATH")
    # records_dir as given (relative stays relative), so the leaderboard's links stay relative
    records_dir = Path(os.path.dirname(os.path.normpath(str(rec.path))) or ".")
    before = {p: (p.read_bytes() if p.is_file() else None) for p in leaderboard.output_paths(out).values()}

    if parallel:
        dirs = run_parallel(rec, n, parallel_gpus(gpus), on_done=on_done, scale=scale, data_dir=data_dir, out_root=runs_dir,
                            timeout_s=timeout_s, track=track, as_t4=as_t4, isolated=isolated)
        new_runs = [runs_dir / d.name for d in dirs]
    else:
        new_runs = []
        for _ in range(n):   # seed=None: the harness assigns a fresh seed to every run
            run_dir = runner.run_record(rec.path, scale=scale, seed=None, data_dir=data_dir, out_root=runs_dir,
                                        timeout_s=timeout_s, track=track, quiet=quiet, as_t4=as_t4,
                                        isolated=isolated)
            new_runs.append(runs_dir / Path(run_dir).name)

    from supervisor.tracks import load_tracks
    tracks = load_tracks()
    digests = RecordDigests(records_dir)
    checks = [check_run(p, tracks, digests) for p in new_runs]
    board = leaderboard.generate(runs_dir, records_dir, out)

    # the leaderboard rows that hold the new runs (one unless the hardware changed mid-way)
    links = {Path(os.path.relpath(p, out.parent)).as_posix() for p in new_runs}
    rows = [r for r in rows_of(board.frame)
            if r["kind"] == "submission" and links & set(str(r["runs"]).split())]
    return SubmitOutcome(record=rec.name, scale=scale, runs=new_runs, checks=checks, submissions=rows,
                         to_commit=[] if dev else porcelain(before, board.files, new_runs), runs_dir=runs_dir,
                         out=out, dev=dev)
