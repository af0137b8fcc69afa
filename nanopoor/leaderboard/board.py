"""the board: runs grouped into submissions, judged, ranked and put in order, and its four files.

runs are grouped into submissions by (record, record_sha256, track, track_version, target,
dataset_fingerprint, hardware_label, scale); each submission gets a verdict over all its runs
(nanopoor.stats), judged against the target its runs were made under (a run with a null target
is a calibration run: made while the track had no target, it is listed, never judged).
only full-scale runs on a gpu are ranked: official tables for the track's hardware,
unofficial tables per hardware label; dev (cpu) and smoke runs are counted, never ranked.
every run is verified on the way (nanopoor.verify): a run whose hashes or rules fail makes
its submission unverified, and `--check` fails. nothing here reads the clock of "now".
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path

import pandas as pd

from nanopoor import stats
from nanopoor.jsonio import write_atomic
from nanopoor.result import RunResult
from nanopoor.leaderboard import claims, render, tiers
from nanopoor.leaderboard.measures import MEASURES, add_measures
from supervisor.events import fmt_tokens
from nanopoor.verify import Check, RecordDigests, inspect_run, run_dirs, track_name

CLASS_ORDER = {"official": 0, "unofficial": 1, "dev": 2}
COLUMNS = [
    "kind", "track", "track_version", "dataset_fingerprint", "class", "hardware", "scale", "ranked", "rank",
    "record", "record_sha256", "description", "person", "date", "tokens", "data",
    "n_runs", "seeds", "verified", "verdict", "reasons", "tier", "reproduced", "reproduced_by", "reproduction_notes",
    "target_val_loss",
    "train_time_ms_mean", "train_time_ms_sd", "val_loss_mean", "val_loss_sd", "p_value",
    "runs", "claimed_time_min", "log", "peer_log", "notes", "found",
]
COLUMNS += MEASURES   # numbers beside the time, filled in last (leaderboard/measures.py)


@dataclass
class RunEntry:
    path: Path
    result: RunResult
    problems: list[str]    # from nanopoor.verify; empty when the run verifies
    signer: str | None = None   # a signed reproduction's signer (nanopoor.verify)


@dataclass
class Board:
    frame: pd.DataFrame               # one row per submission and per claim (COLUMNS)
    checks: list[Check]               # one per run folder
    files: dict[Path, bytes] = field(default_factory=dict)   # what generate() writes

    @property
    def problems(self) -> list[str]:
        return [f"{c.subject}: {p}" for c in self.checks for p in c.problems]


def output_paths(out: Path) -> dict[str, Path]:
    out = Path(out)
    return {"md": out, "json": out.with_suffix(".json"), "csv": out.with_suffix(".csv"),
            "png": out.with_suffix(".png")}


def run_date(result: RunResult) -> str:
    """yyyy-mm-dd of when the run finished (unix seconds or an iso string); '' when unknown."""
    t = result.get("finished_at") or result.get("started_at")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")
    return str(t)[:10] if t else ""


def collect_runs(runs_dir: Path, records_dir: Path, tracks: Mapping) -> tuple[list[RunEntry], list[Check]]:
    """every run folder, verified; runs without a readable result.json are checks only."""
    digests = RecordDigests(records_dir)
    entries, checks = [], []
    for path in run_dirs(runs_dir):
        check, result = inspect_run(path, tracks, digests, runs_dir)
        checks.append(check)
        if result is not None:
            entries.append(RunEntry(path, result, check.problems, check.signer))
    return entries, checks


def run_target(result: RunResult, tracks: Mapping) -> tuple[int, float | None]:
    """(track_version, target_val_loss) a run was judged against. results from before track
    versions carry neither key: version 1 and the track's target. a null target is a calibration run."""
    track = tracks.get(track_name(result))
    fallback = getattr(track, "target_val_loss", None)
    target = result.get("target_val_loss", fallback)
    return int(result.get("track_version") or 1), (float(target) if target is not None else None)


SUBMISSION_KEY = ["record", "record_sha256", "track", "track_version", "target", "dataset_fingerprint",
                  "hardware_label", "scale"]


def runs_frame(entries: list[RunEntry], tracks: Mapping) -> pd.DataFrame:
    """one row per run: its submission key (as text, so a missing value is a key like any other),
    its folder name and the entry itself."""
    rows = []
    for e in entries:
        r = e.result
        version, target = run_target(r, tracks)
        rows.append({"record": str(r.get("record")), "record_sha256": str(r.get("record_sha256")),
                     "track": track_name(r), "track_version": version, "target": str(target),
                     "dataset_fingerprint": str(r.get("dataset_fingerprint")),
                     "hardware_label": str(r.get("hardware_label")), "scale": str(r.get("scale")),
                     "folder": e.path.name, "entry": e})
    return pd.DataFrame(rows, columns=[*SUBMISSION_KEY, "folder", "entry"])


def submissions(entries: list[RunEntry], tracks: Mapping) -> list[list[RunEntry]]:
    """the runs grouped into submissions (in key order), each submission's runs in folder order."""
    runs = runs_frame(entries, tracks).sort_values("folder", kind="stable")
    return runs.groupby(SUBMISSION_KEY, sort=True)["entry"].agg(list).tolist()


def data_cell(result: RunResult, run_dir: Path) -> str:
    """'5.24M tok (1024 × 8 × 4 × 160)': the token budget and the formula that gives it."""
    formula = result.get("formula")
    if not formula:   # older results: the formula is in the run's config.json
        try:
            config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
            parts = [config[k] for k in ("seq_len", "batch_size", "grad_accum", "steps")]
            formula = " × ".join(str(p) for p in parts)
        except (OSError, ValueError, KeyError):
            formula = ""
    tokens = result.get("budget_tokens")
    return f"{fmt_tokens(tokens)} tok" + (f" ({formula})" if formula else "")


def submission_row(entries: list[RunEntry], v: stats.Verdict, records: Mapping, link, version: int = 1,
                   reruns: Mapping | None = None) -> dict:
    """one submission (runs in run-id order): its verdict over every run and its display facts."""
    results = [e.result for e in entries]
    first = results[0]
    unverifiable = [f"run {e.path.name}: {p}" for e in entries for p in e.problems]
    reasons = list(v.reasons) + unverifiable
    label = "unverifiable" if unverifiable else v.label
    calibration = v.target_val_loss is None
    if calibration:   # made while the track had no target: it sets the target, nothing judges it
        kept = [r for r in v.reasons if r.startswith("run ") or r == "seeds not distinct"]   # the runs' own faults
        label, reasons = "calibration", kept + unverifiable
    cls = max((str(r.get("class")) for r in results), key=lambda c: CLASS_ORDER.get(c, 3))
    record = records.get(str(first.get("record")))
    budget = first.get("budget_tokens")
    return {
        "kind": "submission", "track": track_name(first), "track_version": version,
        "dataset_fingerprint": str(first.get("dataset_fingerprint")), "class": cls,
        "hardware": str(first.get("hardware_label")), "scale": str(first.get("scale")),
        "ranked": first.get("scale") == "full" and cls in ("official", "unofficial") and not calibration,
        "rank": None, "record": str(first.get("record")), "record_sha256": str(first.get("record_sha256")),
        "description": first.get("record_title") or (record.title if record else ""),
        "person": first.get("author") or (record.author if record else ""), "date": max(run_date(r) for r in results),
        "tokens": budget, "data": data_cell(first, entries[0].path),
        "n_runs": v.n_runs, "seeds": " ".join(str(s) for s in v.seeds),
        "verified": v.verified and not unverifiable and not calibration, "verdict": label,
        "reasons": "; ".join(reasons), **tiers.tier_cells(entries, reruns or {}, link),
        "target_val_loss": v.target_val_loss,
        "train_time_ms_mean": v.train_time_ms_mean, "train_time_ms_sd": v.train_time_ms_sd,
        "val_loss_mean": v.val_loss_mean, "val_loss_sd": v.val_loss_sd, "p_value": v.p_value,
        "runs": " ".join(link(e.path) for e in entries),
    }


TABLE_KEY = ["track", "track_version", "dataset_fingerprint", "class", "hardware"]


def assign_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """rank verified, ranked submissions by mean train time within each table (ties: the earlier
    date, then the record's name)."""
    ranked = frame[frame["ranked"].eq(True) & frame["verified"].eq(True)]
    ranked = ranked.sort_values(["train_time_ms_mean", "date", "record"], kind="stable")
    frame.loc[ranked.index, "rank"] = ranked.groupby(TABLE_KEY, sort=False).cumcount() + 1
    return frame


def in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """tables in a fixed order: per track, the submissions (the newest track version first, then
    by class, hardware, data, rank and time), then the claims (by claimed time)."""
    claim = frame["kind"].eq("claim")
    sub = ~claim
    time = frame["train_time_ms_mean"].astype("float64").fillna(float("inf"))
    claimed = frame["claimed_time_min"].astype("float64").fillna(0.0)
    keys = pd.DataFrame({
        "track": frame["track"], "claim": claim,
        "version": (-frame["track_version"].fillna(1)).where(sub, 0),
        "class": frame["class"].map(CLASS_ORDER).fillna(3).where(sub, 0),
        "hardware": frame["hardware"].astype(str).where(sub, ""),
        "data": frame["dataset_fingerprint"].astype(str).where(sub, ""),
        "unranked": frame["rank"].isna() & sub, "rank": frame["rank"].fillna(0).where(sub, 0),
        "time": time.where(sub, claimed), "date": frame["date"].astype(str), "record": frame["record"].astype(str),
        "last": frame["runs"].astype(str).where(sub, frame["log"].astype(str)),
    }, index=frame.index)
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def build(runs_dir: Path, records_dir: Path, out: Path, tracks: Mapping | None = None) -> Board:
    """the whole board in memory: the frame, the run checks, and the bytes of each file."""
    from supervisor.tracks import load_tracks
    from nanopoor import records as records_mod

    tracks = load_tracks() if tracks is None else tracks
    runs_dir, records_dir, out = Path(runs_dir), Path(records_dir), Path(out)
    records = {r.name: r for r in records_mod.list_records(records_dir)} if records_dir.is_dir() else {}

    def link(path: Path) -> str:   # relative link from the leaderboard's folder
        return Path(os.path.relpath(path, out.parent)).as_posix()

    everything, checks = collect_runs(runs_dir, records_dir, tracks)
    entries = tiers.own_runs(everything)   # re-runs of a run count for its tier, not as runs of their own
    groups = submissions(entries, tracks)
    judged_by = [run_target(g[0].result, tracks) for g in groups]   # (version, target) per submission
    judged = stats.verdicts([([e.result for e in g], t) for g, (_, t) in zip(groups, judged_by)])
    reruns = tiers.reproductions(everything, tracks)
    rows = [submission_row(g, v, records, link, version, reruns)
            for g, v, (version, _) in zip(groups, judged, judged_by)]
    rows += claims.claim_rows(records, entries, tracks)
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"rank": "Int64", "n_runs": "Int64", "tokens": "Int64",
                                                       "track_version": "Int64"})
    frame = add_measures(in_order(assign_ranks(frame)), tracks)
    board = Board(frame, checks)
    paths = output_paths(out)
    board.files = {
        paths["md"]: render.markdown(frame, tracks, checks, link(runs_dir)).encode("utf-8"),
        paths["json"]: render.to_json(frame).encode("utf-8"),
        paths["csv"]: render.to_csv(frame).encode("utf-8"),
        paths["png"]: render.progression_png(render.rows_of(frame)),
    }
    return board


def generate(runs_dir: Path, records_dir: Path, out: Path) -> Board:
    """build the board and write its four files (only the ones whose bytes changed)."""
    board = build(runs_dir, records_dir, out)
    for path, data in board.files.items():
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
    return board


def stale_files(board: Board) -> list[Path]:
    """the board's files that are missing or differ from what the inputs give now."""
    return [p for p, data in board.files.items() if not p.is_file() or p.read_bytes() != data]
