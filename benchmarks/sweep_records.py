"""check `nanopoor review` against an independent reading of a folder of published speedrun logs.

    .venv/bin/python benchmarks/sweep_records.py DIR [--review-json FILE]

runs `python -m nanopoor review DIR --format json` once (or reads its saved output), then reads
every log a second way — a few lines of regex that share no code with nanopoor.logs — and counts
where the two agree on each run's final val loss, its step and its time. it also counts the logs
each rule flagged, and prints them so a sample can be checked by hand.

the independent reading, for each format the records hold:
  modded-nanogpt  every `step:N/M val_loss:X train_time:Tms` line; a val at step 0 after a val at
                  step M starts a new run (seeds pasted into one file); a run's final is its last
                  val line, with the time printed on that line
  llm.c main.log  the last `s:N tel:X` line (no clock)"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_VAL_RE = re.compile(r"^step:(\d+)/(\d+) val_loss:([0-9.]+|nan) train_time:([0-9.]+)ms", re.M)
_TEL_RE = re.compile(r"^s:(\d+) tel:([0-9.]+)", re.M)


def independent(path: Path) -> list[dict]:
    """[{val, step, time_ms}] per run, read without nanopoor."""
    text = path.read_text(errors="replace")
    runs: list[list[tuple]] = []
    for m in _VAL_RE.finditer(text):
        step, total, val, ms = int(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4))
        if not runs or (step == 0 and runs[-1] and runs[-1][-1][0] == total):
            runs.append([])
        runs[-1].append((step, total, val, ms))
    if runs:
        return [{"val": r[-1][2], "step": r[-1][0], "time_ms": r[-1][3]} for r in runs if r]
    tel = _TEL_RE.findall(text)
    if tel:
        return [{"val": float(tel[-1][1]), "step": int(tel[-1][0]), "time_ms": None}]
    return []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--review-json", type=Path, help="saved `review --format json` output (else run it)")
    ap.add_argument("--show", default="", help="comma-separated rules whose flagged logs to list")
    a = ap.parse_args()
    if a.review_json:
        lines, wall = a.review_json.read_text().splitlines(), None
    else:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "nanopoor", "review", str(a.folder), "--format", "json"],
                             cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        wall = time.perf_counter() - t0
        lines = out.stdout.splitlines()
    reviews = [json.loads(x) for x in lines if x.strip()]
    agree = collections.Counter()
    flags: dict[str, list[str]] = collections.defaultdict(list)
    mismatches = []
    for rv in reviews:
        path = Path(rv["log"]["path"])
        if "error" in rv:
            agree["unread"] += 1
            continue
        agree["logs"] += 1
        mine = independent(path)
        theirs = [r for r in rv["log"]["runs"] if r["final_val_loss"] is not None]
        agree["runs"] += len(mine)
        agree["multi-run logs"] += len(mine) > 1
        if len(mine) != len(theirs):
            mismatches.append((str(path), f"{len(mine)} runs read, review found {len(theirs)}"))
            continue
        for m, t in zip(mine, theirs):
            agree["val"] += abs(m["val"] - t["final_val_loss"]) < 1e-9
            agree["step"] += m["step"] == t["final_step"]
            same_time = (m["time_ms"] is None and t["final_time_ms"] is None) or \
                (m["time_ms"] is not None and t["final_time_ms"] is not None and abs(m["time_ms"] - t["final_time_ms"]) < 0.5)
            agree["time"] += same_time
            if not (abs(m["val"] - t["final_val_loss"]) < 1e-9 and m["step"] == t["final_step"] and same_time):
                mismatches.append((str(path), f"read {m}, review {t['final_val_loss'], t['final_step'], t['final_time_ms']}"))
        for rule in {f["rule"] for f in rv["findings"]}:
            flags[rule].append(str(path))
    print(f"{len(reviews)} files" + (f", review took {wall:.1f} s" if wall else ""))
    print(f"logs read {agree['logs']}, unread {agree['unread']}, runs {agree['runs']} "
          f"({agree['multi-run logs']} logs hold several runs)")
    print(f"agreement over runs: val {agree['val']}/{agree['runs']}, step {agree['step']}/{agree['runs']}, "
          f"time {agree['time']}/{agree['runs']}")
    for path, why in mismatches[:20]:
        print(f"  differs: {path}: {why}")
    print("flags per rule (logs):")
    for rule, paths in sorted(flags.items(), key=lambda kv: -len(kv[1])):
        print(f"  {rule:20s} {len(paths)}")
    for rule in filter(None, a.show.split(",")):
        print(f"\n{rule}:")
        for p in flags.get(rule, []):
            print(f"  {p}")


if __name__ == "__main__":
    main()
