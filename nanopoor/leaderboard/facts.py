"""what the board says in words, for the README: the rank 1 (the record the T4 recipe submits) and
the fastest runs on several GPUs. computed from leaderboard.json's rows, so a README that quotes
them (its generated block, and the record names its commands use) is tested against the board and
cannot drift: tests/test_readme_board.py. `python -m nanopoor.leaderboard.facts` prints the block.

only the newest version of each track counts: an older version's rows were judged against a
target that no longer holds."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from nanopoor.leaderboard.numbers import fmt_duration, fmt_flop, fmt_speedup, fmt_time_cell

BEGIN = "<!-- board facts: generated from leaderboard.json by `python -m nanopoor.leaderboard.facts`; do not edit -->"
END = "<!-- end of board facts -->"
_COUNT_RE = re.compile(r"^(\d+)×\s*(.+)$")


def gpus(row: dict) -> tuple[int, str]:
    """(GPU count, GPU name) of a row's hardware label; (0, label) for anything else."""
    m = _COUNT_RE.match(str(row.get("hardware") or ""))
    return (int(m.group(1)), m.group(2)) if m else (0, str(row.get("hardware")))


def current(rows: list[dict]) -> list[dict]:
    """the ranked tables' submissions of each track's newest version."""
    subs = [r for r in rows if r["kind"] == "submission" and r["ranked"]]
    newest = {}
    for r in subs:
        newest[r["track"]] = max(newest.get(r["track"], 0), int(r["track_version"] or 1))
    return [r for r in subs if int(r["track_version"] or 1) == newest[r["track"]]]


def reached(row: dict) -> bool:
    loss, target = row.get("val_loss_mean"), row.get("target_val_loss")
    return loss is not None and target is not None and loss <= target


def rank_one(rows: list[dict]) -> dict | None:
    """the board's rank 1 on one GPU: an official row first (the track's own hardware), else the
    fastest rank 1 of any unofficial one-GPU table. the record a T4 owner submits."""
    firsts = [r for r in current(rows) if r.get("rank") == 1 and r["verified"] and gpus(r)[0] == 1]
    if not firsts:
        return None
    return min(firsts, key=lambda r: (r["class"] != "official", r["train_time_ms_mean"], r["record"]))


def fastest_on_several(rows: list[dict]) -> list[dict]:
    """per GPU count and model above one, the fastest row that reached its target (verified or a
    single run), each with the same record's time on one GPU of the model (`one_gpu_ms`)."""
    cur = [r for r in current(rows) if reached(r)]
    out = []
    for key in sorted({gpus(r) for r in cur if gpus(r)[0] > 1}):
        best = min((r for r in cur if gpus(r) == key), key=lambda r: (r["train_time_ms_mean"], r["record"]))
        one = [r for r in cur if r["record"] == best["record"] and r["track"] == best["track"] and gpus(r) == (1, key[1])]
        out.append({**best, "one_gpu_ms": one[0]["train_time_ms_mean"] if one else None})
    return out


def readme_block(rows: list[dict]) -> str:
    """the README's generated lines, between BEGIN and END."""
    lines = [BEGIN]
    first = rank_one(rows)
    if first is None:
        lines.append("- Rank 1: no verified record yet.")
    else:
        calib = [r for r in rows if r["kind"] == "submission" and r["verdict"] == "calibration"
                 and r["track"] == first["track"] and r["track_version"] == first["track_version"]]
        over = f" than its calibration recipe `{calib[0]['record']}`" if calib else ""
        lines.append(
            f"- **Rank 1**, the fastest verified record and the one the T4 recipe below submits: "
            f"`{first['record']}`, {first['track']} version {first['track_version']} (target {first['target_val_loss']}), "
            f"{first['hardware']}: {fmt_time_cell(first['train_time_ms_mean'], first['train_time_ms_sd'], first['n_runs'])}, "
            f"{fmt_speedup(first['speedup_vs_calibration'])} faster{over}, {fmt_flop(first['hardware_flop_cost'])}.")
    several = fastest_on_several(rows)
    if several:
        parts = []
        for r in several:
            scaling = (f", {fmt_speedup(r['one_gpu_ms'] / r['train_time_ms_mean'])} faster than its own 1-GPU run"
                       if r["one_gpu_ms"] else "")
            runs = "one run" if r["n_runs"] == 1 else f"{r['n_runs']} runs"
            parts.append(f"{r['hardware']}: `{r['record']}`, {fmt_duration(r['train_time_ms_mean'])} ({runs}{scaling})")
        verified = all(r["verified"] for r in several)
        lines.append(f"- **Fastest on several GPUs** ({'verified' if verified else 'reached the target; not verified'}): "
                     + "; ".join(parts) + ".")
    lines.append(END)
    return "\n".join(lines)


def readme_block_in(text: str) -> str | None:
    """the generated block as a README holds it, or None."""
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN): text.index(END) + len(END)]


if __name__ == "__main__":
    board = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("leaderboard.json")
    print(readme_block(json.loads(board.read_text(encoding="utf-8"))))
