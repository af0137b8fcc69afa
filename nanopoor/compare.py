"""`nanopoor compare`: two records' completed runs on the same track, dataset and hardware, put
through welch's t-test (stats.compare_samples) and the speed-up with its interval (stats.speedup).

runs are grouped by (track, dataset fingerprint, hardware label): runs that differ in any of these
measure different things and are never compared."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from nanopoor.errors import UserError, did_you_mean
from nanopoor.stats import Comparison, Speedup, compare_samples, speedup
from nanopoor.result import load_result
from nanopoor.verify import run_dirs, track_name

METRICS = ("train_time_ms", "val_loss")


@dataclass(frozen=True)
class RecordComparison:
    a: str
    b: str
    track: str
    dataset_fingerprint: str
    hardware: str
    comparisons: list[Comparison]    # one per metric, in METRICS order
    speedup: Speedup

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "track": self.track, "dataset_fingerprint": self.dataset_fingerprint,
                "hardware": self.hardware, "comparisons": [c.to_dict() for c in self.comparisons],
                "speedup": self.speedup.to_dict()}


def runs_of(runs_dir: Path, record: str, scale: str) -> dict[tuple, list[dict]]:
    """completed runs of a record, grouped by (track, dataset fingerprint, hardware)."""
    groups = defaultdict(list)
    for path in run_dirs(runs_dir):
        try:
            r = load_result(path)
        except (UserError, OSError, ValueError):
            continue
        if r.get("record") == record and r.get("scale") == scale and r.get("status") == "completed":
            groups[(track_name(r), str(r.get("dataset_fingerprint")), str(r.get("hardware_label")))].append(r)
    return groups


def no_runs_message(name: str, runs_dir: Path, scale: str, records_dir: Path | None = None) -> str:
    """why a record has nothing to compare: no such record (did you mean), or no runs of it yet."""
    from nanopoor.records import RECORDS_DIR, load_record

    records_dir = records_dir or RECORDS_DIR
    records = sorted(p.parent.name for p in records_dir.glob("*/record.toml"))
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
        scales = sorted(load_record(records_dir / name).scales)
        if scale not in scales:
            return f"record '{name}' has no {scale} scale (its scales: {', '.join(scales)}): pass --scale {scales[0]}"
        return (f"no completed {scale}-scale runs of '{name}' in {runs_dir.as_posix()}: "
                f"`nanopoor submit {(records_dir / name).as_posix()}` makes them")
    return f"no completed {scale}-scale runs of '{name}' in {runs_dir.as_posix()} (its record is not in {records_dir.as_posix()}/)"


def compare_records(runs_dir: Path, a: str, b: str, *, scale: str = "full", hardware: str | None = None) -> RecordComparison:
    """is record a faster (and lower in loss) than record b? a and b are names or record folders."""
    runs_dir = Path(runs_dir)
    a, b = Path(a).name, Path(b).name
    ga, gb = runs_of(runs_dir, a, scale), runs_of(runs_dir, b, scale)
    for name, g in ((a, ga), (b, gb)):
        if not g:
            raise UserError(no_runs_message(name, runs_dir, scale))
    common = sorted(set(ga) & set(gb))
    if hardware is not None:
        labels = sorted({k[2] for k in common})
        common = [k for k in common if k[2] == hardware]
        if not common:
            raise UserError(f"no runs of both on '{hardware}'{did_you_mean(hardware, labels)}; both ran on: "
                            f"{', '.join(labels) or 'nothing in common'}")
    if not common:
        raise UserError(f"'{a}' and '{b}' have no track, dataset and hardware in common: "
                        f"{a} ran on {sorted(ga)}, {b} on {sorted(gb)}")
    if len(common) > 1:
        raise UserError(f"both ran on several tracks/hardware: pick one with --hardware ({', '.join(sorted({k[2] for k in common}))})")
    key = common[0]
    rows = [compare_samples(m, [r[m] for r in ga[key]], [r[m] for r in gb[key]]) for m in METRICS]
    fast = speedup([r["train_time_ms"] for r in ga[key]], [r["train_time_ms"] for r in gb[key]])
    return RecordComparison(a, b, key[0], key[1], key[2], rows, fast)
