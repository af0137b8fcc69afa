"""write a calibrating track's target into supervisor/tracks.toml from its calibration runs.

the target is the mean final val loss of the calibration record's runs (every completed run of it
on the track's current version, judged against no target: made while the version was
calibrating), rounded up to two decimals, as 3.28 stands for llm.c's gpt-2 small on fineweb-edu.
every run of the record is counted (no best-of): a run that did not complete stops this script.

    python scripts/set_target.py --runs runs --record baseline_adamw_epoch [--track docs]

prints {"target": …, "mean": …, "runs": […]} as json; exit 1 with one line when it cannot.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supervisor.tracks import TRACKS_FILE, load_tracks  # noqa: E402

MIN_RUNS = 3


def calibration_runs(runs_dir: Path, record: str, track: str, version: int, scale: str = "full") -> list[dict]:
    out = []
    for p in sorted(runs_dir.glob("*/result.json")):
        r = json.loads(p.read_text())
        if (r.get("record") == record and r.get("track") == track and r.get("scale") == scale
                and r.get("track_version") == version):
            out.append(r)
    return out


def rounded_up(mean: float) -> float:
    # round(…, 9) first: 5.12 must stay 5.12, not become 5.13 through 512.0000000001
    return math.ceil(round(mean * 100, 9)) / 100


def write_target(tracks_file: Path, track: str, target: float, source: str, comment: str) -> None:
    """replace the track table's pending line (or its target line) with the target and its source."""
    text = tracks_file.read_text()
    head = text.index(f"[{track}]\n")
    end = text.find("\n[", head + 1)
    end = len(text) if end < 0 else end
    table = text[head:end]
    lines = f"{comment}\ntarget_val_loss = {target:.2f}\ntarget_source = {json.dumps(source)}"
    new, n = re.subn(r"^# target_val_loss: pending calibration$", lambda m: lines, table, flags=re.M)
    if n != 1:
        raise SystemExit(f"error: {tracks_file}: the [{track}] table has no '# target_val_loss: pending calibration' "
                         "line: its current version has a target already (make a new version first)")
    tracks_file.write_text(text[:head] + new + text[end:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders")
    ap.add_argument("--record", default="baseline_adamw_epoch", help="the calibration record")
    ap.add_argument("--track", default="docs")
    ap.add_argument("--tracks-file", type=Path, default=TRACKS_FILE)
    ap.add_argument("--scale", default="full", help="smoke: the cpu dry run of scripts/gpu_race.sh")
    args = ap.parse_args(argv)

    track = load_tracks(args.tracks_file)[args.track]
    if not track.calibrating:
        print(f"error: track {args.track} version {track.version} has target {track.target_val_loss} already", file=sys.stderr)
        return 1
    runs = calibration_runs(args.runs, args.record, args.track, track.version, args.scale)
    bad = [r["run_id"] for r in runs if r.get("status") != "completed" or not isinstance(r.get("val_loss"), float)]
    if bad or len(runs) < MIN_RUNS:
        print(f"error: {len(runs)} {args.scale}-scale run(s) of {args.record} on {args.track} v{track.version} in {args.runs}"
              f"{', not completed: ' + ', '.join(bad) if bad else ''}; the target needs {MIN_RUNS} completed runs and every "
              "run counts", file=sys.stderr)
        return 1
    losses = [r["val_loss"] for r in runs]
    mean = sum(losses) / len(losses)
    target = rounded_up(mean)
    ids = [r["run_id"] for r in runs]
    comment = (f"# set by scripts/set_target.py: the mean final val loss {mean:.4f} of {args.record}'s {len(runs)} runs\n"
               + "".join(f"#   runs/{i}\n" for i in ids) + "# rounded up to two decimals")
    write_target(args.tracks_file, args.track, target, f"{args.record}: " + " ".join(ids), comment)
    print(json.dumps({"track": args.track, "version": track.version, "target": target, "mean": mean,
                      "runs": [{"run_id": r["run_id"], "val_loss": r["val_loss"], "train_time_ms": r["train_time_ms"]}
                               for r in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
