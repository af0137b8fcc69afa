"""the docs race's record making (scripts/gpu_race.sh calls it).

    candidates --out DIR --steps 30 40 …   copies of dense_muon_t4_v2 on the docs track, one per
                                           step count, frozen (scratch records, never committed)
    pick --runs DIR --target T             the fewest swept steps whose val loss is at most
                                           T - margin; writes the sweep's summary json
    make-record --steps N                  records/dense_muon_t4_v3: v2's code at N steps, frozen

--scale smoke edits the smoke scale instead of the full one (the cpu dry run).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARENT = ROOT / "records" / "dense_muon_t4_v2"
V3 = "dense_muon_t4_v3"


def retarget(toml: str, name: str, steps: int, scale: str, only_final_eval: bool) -> str:
    """record.toml of `PARENT` with another name, the docs track and `steps` in `scale`."""
    toml = re.sub(r'^name = ".*"$', f'name = "{name}"', toml, count=1, flags=re.M)
    toml = re.sub(r'^track = ".*"$', 'track = "docs"', toml, count=1, flags=re.M)
    toml = re.sub(r"\n\[frozen\].*", "\n", toml, flags=re.S).rstrip() + "\n"
    head = toml.index(f"[scales.{scale}]")
    end = toml.find("\n[", head + 1)
    end = len(toml) if end < 0 else end
    table = re.sub(r"^steps = \d+$", f"steps = {steps}", toml[head:end], count=1, flags=re.M)
    table = re.sub(r'^track = ".*"$', 'track = "docs"', table, flags=re.M)
    if only_final_eval:   # evaluation does not touch training: the sweep skips the progress evals
        table = re.sub(r"eval_every = \d+", f"eval_every = {steps}", table)
    return toml[:head] + table + toml[end:]


def freeze(record: Path) -> None:
    subprocess.run([sys.executable, "-m", "nanopoor", "freeze", str(record)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def copy_parent(dst: Path) -> None:
    shutil.copytree(PARENT, dst, ignore=shutil.ignore_patterns("__pycache__"))


def candidates(out: Path, steps: list[int], scale: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for n in steps:
        d = out / f"{PARENT.name}_s{n}"
        copy_parent(d)
        (d / "record.toml").write_text(retarget((PARENT / "record.toml").read_text(), d.name, n, scale, True))
        freeze(d)
        print(d)


def pick(runs: Path, target: float, margin: float, summary: Path) -> None:
    rows = []
    for p in sorted(runs.glob("*/result.json")):
        r = json.loads(p.read_text())
        m = re.search(r"_s(\d+)$", r.get("record", ""))
        if m:
            rows.append({"steps": int(m.group(1)), "record": r["record"], "run_id": r["run_id"],
                         "status": r["status"], "val_loss": r.get("val_loss"),
                         "train_time_ms": r.get("train_time_ms"), "tokens": r.get("tokens"),
                         "peak_memory_bytes": r.get("peak_memory_bytes")})
    rows.sort(key=lambda x: x["steps"])
    ok = [x for x in rows if x["status"] == "completed" and isinstance(x["val_loss"], float)
          and x["val_loss"] <= target - margin]
    chosen = ok[0]["steps"] if ok else None
    summary.write_text(json.dumps({"parent": PARENT.name, "target": target, "margin": margin,
                                   "rule": "the fewest swept steps whose single-seed val loss <= target - margin",
                                   "candidates": rows, "chosen_steps": chosen}, indent=1) + "\n")
    print(chosen if chosen is not None else "none")


def make_record(steps: int, scale: str, target: float | None) -> None:
    d = ROOT / "records" / V3
    if d.exists():
        raise SystemExit(f"error: {d} exists: a frozen record is never edited")
    copy_parent(d)
    toml = retarget((PARENT / "record.toml").read_text(), V3, steps, scale, False)
    toml = re.sub(r'^date = ".*"$', f'date = "{datetime.now(UTC):%Y-%m-%d}"', toml, count=1, flags=re.M)
    toml = re.sub(r'^title = "(.*)"$', lambda m: f'title = "{m.group(1)}; {steps} steps at the docs target"',
                  toml, count=1, flags=re.M)
    toml = toml.replace("[scales.full]", f"# dense_muon_t4_v2's code, unchanged, at the fewest steps of the sweep\n"
                        f"# (scripts/gpu_race.sh) that reached the docs target{f' {target}' if target else ''} with a 0.03 margin\n"
                        "[scales.full]", 1)
    (d / "record.toml").write_text(toml)
    readme = (d / "README.md").read_text()
    (d / "README.md").write_text(
        f"# {V3}\n\n`dense_muon_t4_v2` at the docs target: the same files (model, optimizer, train loop), on\n"
        f"the `docs` track with {steps} steps instead of 160. `scripts/gpu_race.sh` ran v2 once at each of\n"
        "several step counts and kept the fewest whose final val loss was at least 0.03 below the docs\n"
        f"target{f' ({target})' if target else ''}; its schedule (warm-up, hold, linear cool-down over the last 40%) follows\n"
        "the declared steps. Below: v2's own README.\n\n" + readme)
    freeze(d)
    print(d)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("candidates")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--steps", type=int, nargs="+", required=True)
    p = sub.add_parser("pick")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--margin", type=float, default=0.03)
    p.add_argument("--summary", type=Path, required=True)
    m = sub.add_parser("make-record")
    m.add_argument("--steps", type=int, required=True)
    m.add_argument("--target", type=float)
    for q in (c, m):
        q.add_argument("--scale", choices=("full", "smoke"), default="full")
    a = ap.parse_args(argv)
    if a.cmd == "candidates":
        candidates(a.out, a.steps, a.scale)
    elif a.cmd == "pick":
        pick(a.runs, a.target, a.margin, a.summary)
    else:
        make_record(a.steps, a.scale, a.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
