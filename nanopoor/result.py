"""result.json: schema-versioned, written once, with a digest of itself; older versions migrate.

`RunResult` is the schema: every key the runner writes (docs/contract.md lists the same keys, and a
test holds the two together). `migrate` brings an older result up to it."""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from nanopoor.errors import UserError

RESULT_SCHEMA_VERSION = 3  # 3: isolated, setup_ms and the claim's path (harness 0.4)


# "class" is a python keyword, so the schema is written in TypedDict's functional form
RunResult = TypedDict("RunResult", {
    # what ran, and where
    "schema_version": int, "run_id": str, "record": str, "record_sha256": str, "record_title": str, "author": str,
    "track": str, "dataset": str, "dataset_fingerprint": str | None, "harness_version": str, "contract_version": int,
    "seed": int, "scale": str, "hardware": dict, "class": str, "hardware_label": str, "nproc": int,
    "machine": str | None, "git": dict, "started_at": str, "finished_at": str, "returncode": int | None,
    "reproduces": str | None,
    # how it ended
    "status": str, "reason": str,
    # the clocks (ms) and the budget
    "train_time_ms": float, "eval_time_ms": float, "warmup_time_ms": float, "checks_time_ms": float | None,
    "wallclock_ms": float, "train_span_ms": float | None, "eval_charged_ms": float | None,
    "tokens": int | None, "budget_tokens": int, "formula": str, "steps": int | None, "declared_steps": int,
    "epochs": float | None,
    # the claim, and what it is judged against (for good: a later target is a new track version)
    "val_loss": float | None, "val_loss_full": bool, "track_version": int, "target_val_loss": float | None,
    "progress_evals": int | None, "progress_eval_tokens": int | None,
    # how the record was held: its sandbox, its untimed setup, how its claim was computed
    "isolated": bool, "setup_ms": float | None, "claim": dict | None,
    # what the harness checked
    "causal": bool | None, "max_leak": float | None, "heldout_gap": float | None, "compiles_in_timed": int | None,
    "violations": list, "data_watch": Any, "source_flags": int | None,
    "peak_memory_bytes": int | None, "t4_fit": dict | None, "t4_limits": bool,
    # the digests that let `nanopoor verify` catch an edit
    "harness_sha256": str, "record_files": dict, "files": dict, "result_sha256": str,
    # set by migrate on a result written under an older schema
    "migrated_from": NotRequired[int],
})
RESULT_KEYS = tuple(sorted(RunResult.__required_keys__))   # every key a result of this schema has


def select(result: RunResult, keys: tuple[str, ...]) -> dict:
    """the named keys of a result, None where it lacks one. a name the schema does not have is
    a reader's typo, not a missing value: it raises instead of reading None for ever."""
    unknown = [k for k in keys if k not in RunResult.__annotations__]
    if unknown:
        raise KeyError(f"not keys of nanopoor.result.RunResult: {', '.join(unknown)}")
    return {k: result.get(k) for k in keys}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_digest(run_dir: Path, exclude: tuple[str, ...] = ("result.json",)) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(Path(run_dir).iterdir()) if p.is_file() and p.name not in exclude}


def canonical_sha256(result: dict) -> str:
    """sha256 of every key but result_sha256, as canonical json: an edited value no longer matches."""
    body = {k: v for k, v in result.items() if k != "result_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_result(run_dir: Path, result: dict) -> Path:
    """write result.json once: an existing one is never overwritten."""
    path = Path(run_dir) / "result.json"
    result = {**result, "schema_version": RESULT_SCHEMA_VERSION}
    result["result_sha256"] = canonical_sha256(result)
    with open(path, "x", encoding="utf-8") as f:  # "x": fail rather than overwrite
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def migrate(result: dict) -> dict:
    """bring an older result up to the current schema. schema 0 was the draft without `class`
    and `files`; schema 1 had no `track_version`: those runs were judged against version 1 of
    their track, and one without `target_val_loss` gets version 1's target from tracks.toml.
    schema 2 (harness before 0.4) ran the record in the harness's own process: isolated false."""
    version = result.get("schema_version", 0)
    if version > RESULT_SCHEMA_VERSION:
        raise UserError(f"result {result.get('run_id')} has schema {version}, newer than this nanopoor ({RESULT_SCHEMA_VERSION}): upgrade nanopoor")
    if version == RESULT_SCHEMA_VERSION and "track_version" in result and "isolated" in result:
        return result
    result = {**result}
    if isinstance(result.get("track"), dict):   # drafts named the track as config.json does: a table
        result["track"] = result["track"].get("name")
    if version == 0:
        result.setdefault("class", "dev")
        result.setdefault("files", {})
    result.setdefault("track_version", 1)
    result.setdefault("isolated", False)
    result.setdefault("setup_ms", None)
    result.setdefault("claim", None)
    if "target_val_loss" not in result:
        result["target_val_loss"] = _version_target(result.get("track"), result["track_version"])
    if version < RESULT_SCHEMA_VERSION:
        result["migrated_from"] = version
    result["schema_version"] = RESULT_SCHEMA_VERSION
    return result


def _version_target(track, version: int) -> float | None:
    t = _tracks().get(str(track))
    return t.target_for(int(version))[1] if t is not None else None


@functools.lru_cache(maxsize=1)
def _tracks() -> dict:
    """tracks.toml read once: a board migrates every committed run."""
    from supervisor.tracks import load_tracks
    return load_tracks()


def load_result(path: str | Path) -> RunResult:
    p = Path(path)
    if p.is_dir():
        p = p / "result.json"
    if not p.is_file():
        raise UserError(f"no result.json at {p}: is this a run folder written by `nanopoor run`?")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return migrate(data)


def git_info(cwd: Path | None = None) -> dict:
    """the commit checked out at cwd and whether the files under cwd (the runner passes the record's
    folder) differ from it; runs/ is excluded (runs are outputs). a copy of the repository whose
    git metadata is older than its files (a GPU host given the working tree) names the old commit
    and reports a new record as dirty: the run's record_sha256 is what identifies the code."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)

    try:
        commit = git("rev-parse", "HEAD")
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--", ".", ":(exclude)runs")
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}
