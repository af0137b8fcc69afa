"""the drift of every run folder's timeline: the span its event stamps hold from train_start to the
clock's last stop (less the untimed pauses, plus charges) minus its claimed train time, against
the tolerance nanopoor.timeline allows, and where the drift arises (the start, each pause, the
stretches between). the tolerance was chosen from these figures; run this again when a harness
changes how it writes events.

    python scripts/timeline_drift.py [FOLDER ...]     (default: runs/ and docs/gpu/)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from nanopoor.event_reader import read_events
from nanopoor.timeline import drift_components, timeline_findings


def run_folders(roots: list[Path]) -> list[Path]:
    return sorted({p.parent for root in roots for p in root.rglob("result.json")
                   if (p.parent / "events.jsonl").is_file() and (p.parent / "config.json").is_file()})


def spread(values: list[float]) -> str:
    return f"{min(values):+.2f} to {max(values):+.2f} ms over {len(values):,}" if values else "none"


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path("runs"), Path("docs/gpu")]
    rows, starts, pauses, between = [], [], [], []
    for d in run_folders(roots):
        result = json.loads((d / "result.json").read_text())
        config = json.loads((d / "config.json").read_text())
        events = read_events(d / "events.jsonl")
        parts = drift_components(config, events, result)
        if parts is None or result.get("status") != "completed":
            continue
        starts += [parts["start_ms"]] if parts["start_ms"] is not None else []
        pauses += parts["pause_ms"]
        between += parts["between_ms"]
        rows.append({"run": d.name, "harness": result.get("harness_version"),
                     **{k: parts[k] for k in ("train_time_ms", "drift_ms", "pauses", "tolerance_ms")},
                     "share": parts["drift_ms"] / parts["tolerance_ms"],
                     "findings": len(timeline_findings(config, events, result))})
    if not rows:
        print("no completed run folders with events under " + ", ".join(map(str, roots)))
        return 1
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", None, "display.max_colwidth", 60):
        print(frame.round(2).to_string(index=False))
        print()
        print(frame[["drift_ms", "pauses", "tolerance_ms", "share"]].describe().round(2).to_string())
    print(f"\n{len(frame)} runs: drift at the end {frame['drift_ms'].min():+.1f} to {frame['drift_ms'].max():+.1f} ms, "
          f"at most {frame['share'].abs().max():.0%} of its tolerance; {int((frame['findings'] > 0).sum())} with timeline findings")
    print(f"where it arises: at the first step or eval {spread(starts)} runs; across an untimed pause {spread(pauses)} pauses; "
          f"between two stamps with no pause between {spread(between)} stretches")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
