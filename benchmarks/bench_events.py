"""cost of one `step` event inside the train clock: fsync per line against flush only.

    .venv/bin/python benchmarks/bench_events.py [--events 2000] [--rounds 5]

supervisor.events.EventLog flushes every line and fsyncs all but `step` lines (which run inside
the timed region once per optimizer step). this times both policies side by side on the same
disk, interleaved round by round, and prints the median µs per event and their ratio."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor import events


def per_event_us(n: int, fsync_steps: bool) -> float:
    saved = events.UNSYNCED
    events.UNSYNCED = frozenset() if fsync_steps else saved
    try:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
            log = events.EventLog(Path(d) / "events.jsonl")
            t0 = time.perf_counter()
            for step in range(n):
                log.emit("step", step=step, tokens=step * 32768, train_loss=3.2, train_time_ms=step * 70.0)
            dt = time.perf_counter() - t0
            log.close()
    finally:
        events.UNSYNCED = saved
    return dt / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    synced, flushed = [], []
    for _ in range(a.rounds):
        synced.append(per_event_us(a.events, fsync_steps=True))
        flushed.append(per_event_us(a.events, fsync_steps=False))
    s, f = statistics.median(synced), statistics.median(flushed)
    print(f"step event, median of {a.rounds} rounds × {a.events} events")
    print(f"  fsync every line (before)   {s:9.1f} µs/event")
    print(f"  flush only (step lines now) {f:9.1f} µs/event   {s / f:.1f}× cheaper")
    print(f"  at a 70 ms step: {s / 700:.3f}% → {f / 700:.4f}% of the step")


if __name__ == "__main__":
    main()
