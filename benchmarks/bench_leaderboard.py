"""regenerating the leaderboard from 1,000 synthetic runs (target: under 2 s).

the baseline, run side by side, is the floor any leaderboard pays: open and parse every
result.json. the ratio says what verification (hashing every file), statistics, rendering
and the plot cost on top of it.

    .venv/bin/pytest benchmarks/bench_leaderboard.py --benchmark-enable
    .venv/bin/python benchmarks/bench_leaderboard.py          # the same, as a plain script
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures_runs import H100, make_record, make_run

N_RUNS = 1000
N_RECORDS = 100
CLAIM = {"time_min": 14.86, "date": "2025-02-03", "tokens": 5_242_880, "formula": "1024 × 8 × 4 × 160",
         "hardware": "1× Tesla T4", "person": "someone", "log": "https://example.org/log.txt",
         "peer_log": "nanopoor/tweaks_run_nosave.txt", "notes": ["a note on the data stream"]}


def make_tree(root: Path, n_runs: int = N_RUNS) -> Path:
    """records (every fifth with a claim) and n_runs runs: 3 seeds a submission, each submission a
    distinct (record, hardware/scale) pair over t4, h100, cpu and smoke: 334 submissions."""
    records = [make_record(root / "records", f"rec_{i:02d}", claims=[CLAIM] if i % 5 == 0 else [])
               for i in range(N_RECORDS)]
    kinds = [{}, {"gpu": H100}, {"gpu": None}, {"gpu": None, "scale": "smoke", "track": "demo"}]
    for i in range(n_runs):
        sub = i // 3
        kw = kinds[(sub // N_RECORDS) % len(kinds)]
        loss = (6.5 if kw.get("scale") == "smoke" else 3.20) + 0.01 * (i % 3)
        day = 1 + sub % 28
        make_run(root / "runs", records[sub % N_RECORDS], seed=i + 1, val_loss=loss,
                 train_time_ms=600e3 + 1000.0 * (sub % 97) + 10.0 * (i % 3),
                 finished_at=f"2025-03-{day:02d}T10:00:00+00:00", run_id=f"run-{i:05d}", **kw)
    return root


def read_all_results(runs_dir: Path) -> int:
    """the baseline: parse every result.json, nothing else."""
    return sum(len(json.loads((p / "result.json").read_text())) for p in sorted(runs_dir.iterdir()))


def regenerate(root: Path):
    from nanopoor import leaderboard
    return leaderboard.build(root / "runs", root / "records", root / "leaderboard.md")


try:
    import pytest

    @pytest.fixture(scope="module")
    def tree(tmp_path_factory):
        return make_tree(tmp_path_factory.mktemp("board"))

    def test_baseline_read_results(benchmark, tree):
        assert benchmark(read_all_results, tree / "runs") > 0

    def test_regenerate_leaderboard(benchmark, tree):
        regenerate(tree)   # imports (pandas, scipy, matplotlib) outside the measurement
        board = benchmark(regenerate, tree)
        assert len(board.checks) == N_RUNS and board.problems == []
except ImportError:   # run as a plain script without pytest
    pass


def best_of(fn, arg, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return min(times)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        root = make_tree(Path(d))
        print(f"made {N_RUNS} runs of {N_RECORDS} records in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        regenerate(root)
        print(f"first regeneration (imports included): {time.perf_counter() - t:.3f} s")
        base = best_of(read_all_results, root / "runs")
        full = best_of(regenerate, root)
        print(f"baseline, parse every result.json: {base:.3f} s (best of 5)")
        print(f"regenerate leaderboard (verify + stats + md/json/csv/png): {full:.3f} s (best of 5)")
        print(f"ratio regenerate / baseline: {full / base:.1f}×; target under 2 s: {'met' if full < 2 else 'MISSED'}")
