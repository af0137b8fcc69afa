"""recompute the digests and the rules of committed runs.

a run folder is trusted only when: result.json hashes to its own `result_sha256` (so an
edited number shows), every file it lists hashes to the recorded sha256 (an edited log
shows), its numbers obey the status rules, its class matches its hardware for the track,
and the record it ran still has the digest it ran with (a run of a record that changed
since is flagged). its event stamps must hold its claimed train time (nanopoor.timeline), and a
run that reproduces another must match it, with a signed statement, when it has one, that
verifies against reproducers/allowed_signers (nanopoor.reproduction). `nanopoor verify` and
`nanopoor leaderboard --check` use this module.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nanopoor import hardware
from nanopoor.crosscheck import same
from nanopoor.errors import UserError, did_you_mean
from nanopoor.jsonio import is_finite
from nanopoor.reproduction import SIGNED_FILES, SIGNERS_FILE, check_reproduction
from nanopoor.result import RunResult, canonical_sha256, load_result, migrate, sha256_file

RESULT_FILE = "result.json"
STATUSES = ("completed", "failed", "aborted", "killed", "invalid")
CLOCK_SLACK_MS = 1.0   # rounding slack when the clocks are summed against the wall-clock


@dataclass
class Check:
    kind: str                    # "run" or "record"
    subject: str                 # run id or record name
    path: str                    # the folder checked
    problems: list[str] = field(default_factory=list)
    lineage: dict | None = None  # a record's files against its parent's (records.lineage)
    signer: str | None = None    # a signed reproduction's signer (the principal in allowed_signers)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def track_name(result: RunResult) -> str:
    """the track a (migrated) result ran on, as text."""
    return str(result.get("track"))


def expected_class(result: RunResult, track) -> tuple[str, str]:
    """(class, hardware_label) that the run's hardware gives on the track, as the runner decides it."""
    hw = dict(result.get("hardware") or {})
    used = int(result.get("nproc") or 1) if hw.get("gpus") else 0
    return hardware.classify(hw, track.to_dict(), used_gpus=used)


def rule_problems(result: RunResult, tracks: Mapping) -> list[str]:
    """self-consistency of one result: status rules, budget, clock, class vs hardware."""
    out = []
    status = result.get("status")
    if status not in STATUSES:
        out.append(f"unknown status {status!r}")
    tokens, budget = result.get("tokens"), result.get("budget_tokens")
    if status == "completed":
        if result.get("causal") is not True:
            out.append("completed but causal is not true")
        if not is_finite(result.get("val_loss")):
            out.append("completed but val_loss is not a finite number")
        if result.get("val_loss_full") is False:
            out.append("completed but the final eval was not over the full val set")
        if not (is_finite(tokens) and is_finite(budget)):
            out.append("completed but tokens or budget_tokens missing")
        elif tokens > budget:
            out.append(f"tokens {tokens} > budget_tokens {budget}")
        clocks = [result.get(k) for k in ("train_time_ms", "eval_time_ms", "warmup_time_ms")]
        wall = result.get("wallclock_ms")
        if not all(is_finite(c) for c in clocks) or not is_finite(wall):
            out.append("completed but a clock (train/eval/warmup/wallclock ms) is missing")
        elif sum(clocks) > wall + CLOCK_SLACK_MS:
            out.append(f"train+eval+warmup {sum(clocks):.0f} ms > wallclock {wall:.0f} ms")
    name = track_name(result)
    if name not in tracks:
        out.append(f"unknown track '{name}'{did_you_mean(name, tracks)}")
    else:
        want, label = expected_class(result, tracks[name])
        if result.get("class") != want:
            out.append(f"class {result.get('class')!r} but its hardware makes it {want!r} on track {name}")
        if result.get("hardware_label") != label:
            out.append(f"hardware_label {result.get('hardware_label')!r} but its hardware says {label!r}")
        out += target_problems(result, tracks[name])
    return out


def target_problems(result: RunResult, track) -> list[str]:
    """the stored target must be the one tracks.toml gives the run's track version (None is
    allowed: a run made while the version was calibrating is shown, never ranked)."""
    version = result.get("track_version", 1)
    known, want = track.target_for(version) if isinstance(version, int) else (False, None)
    if not known:
        return [f"track {track.name} has no version {version!r} (tracks.toml knows {track.version} and earlier)"]
    got = result.get("target_val_loss")
    if got is not None and not same(got, want, 1e-9):
        return [f"target_val_loss {got!r} but version {version} of track {track.name} has target {want!r}"]
    return []


def file_problems(run_dir: Path, raw: Mapping, result: RunResult) -> list[str]:
    """result.json's own digest and the sha256 of every file it lists."""
    out = []
    stored = raw.get("result_sha256")
    if not stored:
        out.append("result.json carries no result_sha256: its values cannot be verified")
    elif stored != canonical_sha256(raw):
        out.append("result.json was edited after it was written (result_sha256 does not match)")
    files = result.get("files")
    if not isinstance(files, Mapping):
        return out + ["result.json has no files table"]
    for name in sorted(files):
        path = run_dir / name
        if Path(name).name != name or name == RESULT_FILE:
            out.append(f"files lists {name!r}, which is not a plain file of the run folder")
        elif not path.is_file():
            out.append(f"{name} is missing")
        elif sha256_file(path) != str(files[name]).lower():
            out.append(f"{name} was edited (sha256 does not match)")
    if result.get("status") == "completed":
        out += [f"{n} is not covered by the run's hashes" for n in ("events.jsonl", "log.txt") if n not in files]
    # the signed statement of a reproduction comes after the run: checked by check_reproduction
    extra = sorted(p.name for p in run_dir.iterdir() if p.name not in files and p.name not in (RESULT_FILE, *SIGNED_FILES))
    out += [f"{n} is not covered by the run's hashes (added later?)" for n in extra]
    return out


def event_problems(run_dir: Path, result: RunResult) -> list[str]:
    """every copy of the run's numbers must agree: config.json, events.jsonl, log.txt, result.json;
    and the event log's own stamps must be able to have produced its train time (nanopoor.timeline)."""
    from nanopoor.crosscheck import folder_findings
    from nanopoor.event_reader import read_events
    from nanopoor.timeline import timeline_findings

    out = folder_findings(run_dir, dict(result))
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out   # folder_findings has said so
    return out + timeline_findings(config, read_events(run_dir / "events.jsonl"), dict(result))


class RecordDigests:
    """current digest of each record folder, computed once per record."""

    def __init__(self, records_dir: Path):
        self.records_dir = Path(records_dir)
        self._cache: dict[str, str | None] = {}

    def current(self, name: str) -> str | None:
        if name not in self._cache:
            from nanopoor import records
            path = self.records_dir / name
            self._cache[name] = records.compute_digest(path) if (path / "record.toml").is_file() else None
        return self._cache[name]


def inspect_run(run_dir: Path, tracks: Mapping, digests: RecordDigests, runs_dir: Path | None = None,
                signers: Path = SIGNERS_FILE) -> tuple[Check, RunResult | None]:
    """the check of one run folder, and its (migrated) result when result.json is readable. a
    reproduction's original is looked up beside it, then in runs_dir."""
    run_dir = Path(run_dir)
    check = Check("run", run_dir.name, str(run_dir))
    if not (run_dir / RESULT_FILE).is_file():
        check.problems.append("no result.json: an unfinished run (finish it or remove the folder)")
        return check, None
    try:
        # the digest covers the file as written; migration may add keys, so hash the raw dict
        raw = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
        result = migrate(raw)
    except (ValueError, OSError, UserError) as e:
        check.problems.append(f"result.json unreadable: {e}")
        return check, None
    check.subject = str(result.get("run_id", run_dir.name))
    if check.subject != run_dir.name:
        check.problems.append(f"run_id {check.subject!r} does not match its folder name")
    check.problems += file_problems(run_dir, raw, result)
    check.problems += rule_problems(result, tracks)
    check.problems += event_problems(run_dir, result)
    name = Path(str(result.get("record", ""))).name
    current = digests.current(name) if name else None
    if current is None:
        check.problems.append(f"record '{name}' not found under {digests.records_dir}/")
    elif current != result.get("record_sha256"):
        check.problems.append(f"record '{name}' changed since this run (its digest is no longer the one the run used)")
    problems, check.signer = check_reproduction(run_dir, dict(result), runs_dir, signers)
    check.problems += problems
    return check, result


def check_run(run_dir: Path, tracks: Mapping, digests: RecordDigests, runs_dir: Path | None = None,
              signers: Path = SIGNERS_FILE) -> Check:
    return inspect_run(run_dir, tracks, digests, runs_dir, signers)[0]


def check_record(record_dir: Path) -> Check:
    """a record's files still hash to its [frozen] digest, and the parent it names is beside it."""
    from nanopoor import records
    record = records.load_record(record_dir)
    check = Check("record", record.name, str(record_dir), lineage=records.lineage(record))
    if check.lineage is not None and check.lineage["missing"]:
        check.problems.append(f"parent record '{record.parent}' is not in {Path(record_dir).parent.as_posix()}/")
    if not record.frozen_sha256:
        check.problems.append(f"record is not frozen (no [frozen] sha256): run `nanopoor freeze {record_dir}`")
    elif records.compute_digest(record_dir) != record.frozen_sha256:
        check.problems.append("frozen record changed since it was frozen: make a new record")
    return check


def run_dirs(runs_dir: Path) -> list[Path]:
    """every run folder under runs_dir, sorted by name."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _resolve(target: str, runs_dir: Path, records_dir: Path) -> Path:
    """a path as given, else a run id under runs_dir, else a record name under records_dir."""
    for p in (Path(target), runs_dir / target, records_dir / target):
        if p.exists():
            return p
    known = [p.name for p in run_dirs(runs_dir)]
    known += [p.parent.name for p in sorted(records_dir.glob("*/record.toml"))]
    raise UserError(f"'{target}' is not a run folder, a record or a folder of runs{did_you_mean(target, known)}:"
                    f" try `nanopoor verify {runs_dir.as_posix()}`")


def verify_target(target: str, runs_dir: Path = Path("runs"), records_dir: Path = Path("records"),
                  tracks: Mapping | None = None) -> list[Check]:
    """checks for a run folder, a record (itself and its runs in runs_dir), or a folder of runs."""
    from supervisor.tracks import load_tracks
    tracks = load_tracks() if tracks is None else tracks
    runs_dir, records_dir = Path(runs_dir), Path(records_dir)
    path = _resolve(target, runs_dir, records_dir)
    if path.is_file():
        path = path.parent   # result.json or record.toml given: its folder is meant
    if (path / "record.toml").is_file():
        digests = RecordDigests(path.parent)
        checks = [check_record(path)]
        for run in run_dirs(runs_dir):
            try:
                ran = Path(str(load_result(run).get("record", ""))).name
            except (ValueError, OSError, UserError):
                ran = None
            if ran == path.name:
                checks.append(check_run(run, tracks, digests, runs_dir))
        return checks
    digests = RecordDigests(records_dir)
    if (path / RESULT_FILE).is_file():
        return [check_run(path, tracks, digests, runs_dir)]
    runs = run_dirs(path)
    if not runs:
        raise UserError(f"{path} holds no run folders: give runs/<run_id>, records/<name> or a folder of runs")
    return [check_run(run, tracks, digests, runs_dir) for run in runs]
