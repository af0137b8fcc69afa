"""submit a record: run its declared seeds, verify the runs, regenerate the leaderboard.

every seed is harness-assigned and every run is kept and reported (no best-of): a failed
run stays in runs/ and in the verdict. the output ends with the paths to commit, in
`git status --porcelain` style, computed from what this command wrote (git is not needed).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nanopoor import leaderboard, records, runner
from nanopoor.errors import UserError
from nanopoor.leaderboard_render import rows_of
from nanopoor.verify import Check, RecordDigests, check_run

SCALES = ("full", "smoke")


@dataclass
class SubmitOutcome:
    record: str
    scale: str
    runs: list[Path]                       # the run folders this submission wrote, in order
    checks: list[Check]                    # verify's answer for each of them
    submissions: list[dict]                # leaderboard rows holding these runs (normally one)
    to_commit: list[str] = field(default_factory=list)   # porcelain-style lines: "?? runs/<id>/"

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


def submit(record_path: str | Path, *, n_runs: int | None = None, data_dir: str | Path | None = None,
           track: str | None = None, scale: str = "full", runs_dir: str | Path = "runs",
           timeout_s: float | None = None, out: str | Path = "leaderboard.md", quiet: bool = False,
           as_t4: bool = False) -> SubmitOutcome:
    if scale not in SCALES:
        raise UserError(f"unknown scale '{scale}': use --scale full or --scale smoke")
    rec = records.load_record(record_path)
    records.check_frozen(rec)   # a changed frozen record never runs: make a new record
    n = rec.seeds if n_runs is None else n_runs
    if n < 1:
        raise UserError(f"--runs must be at least 1, not {n}")
    runs_dir, out = Path(runs_dir), Path(out)
    # records_dir as given (relative stays relative), so the leaderboard's links stay relative
    records_dir = Path(os.path.dirname(os.path.normpath(str(record_path))) or ".")
    before = {p: (p.read_bytes() if p.is_file() else None) for p in leaderboard.output_paths(out).values()}

    new_runs = []
    for _ in range(n):   # seed=None: the harness assigns a fresh seed to every run
        run_dir = runner.run_record(rec.path, scale=scale, seed=None, data_dir=data_dir, out_root=runs_dir,
                                    timeout_s=timeout_s, track=track, quiet=quiet, as_t4=as_t4)
        new_runs.append(runs_dir / Path(run_dir).name)

    from harness.tracks import load_tracks
    tracks = load_tracks()
    digests = RecordDigests(records_dir)
    checks = [check_run(p, tracks, digests) for p in new_runs]
    board = leaderboard.generate(runs_dir, records_dir, out)

    # the leaderboard rows that hold the new runs (one unless the hardware changed mid-way)
    links = {Path(os.path.relpath(p, out.parent)).as_posix() for p in new_runs}
    rows = [r for r in rows_of(board.frame)
            if r["kind"] == "submission" and links & set(str(r["runs"]).split())]
    return SubmitOutcome(record=rec.name, scale=scale, runs=new_runs, checks=checks, submissions=rows,
                         to_commit=porcelain(before, board.files, new_runs))
