"""log parsing and `nanopoor review` speed: one 20,000-line log, and a corpus of ~1,500 logs.

    .venv/bin/python benchmarks/bench_logs.py [--lines 20000] [--repeats 7]
    .venv/bin/python benchmarks/bench_logs.py --corpus 1500 [--jobs 2]

--corpus writes that many synthetic logs (modded-nanogpt of three eras with their source on top,
some holding several seeds, and NanoPoor text) and times one `python -m nanopoor review DIR
--format json` over all of them (goal: under 60 s on 2 cores), beside the same call with --jobs 1.

writes synthetic logs (modded-nanogpt with its source on top, and NanoPoor text) into a temp
folder, then prints, side by side with a baseline:
  - in-process parse time, median of --repeats (baseline: reading the file and splitting lines);
  - the whole `python -m nanopoor review LOG` process, without a plot and with --plot (the png)
    (baselines: `python -c pass`, the interpreter's own start, and importing matplotlib.pyplot).
wall time on a shared machine is noisy, so the cpu time of each child (user+sys) is printed too.
targets: parse < 0.3 s, whole review process < 2 s."""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nanopoor.logs import parse_log  # noqa: E402

SOURCE = '''import os
import sys
from dataclasses import dataclass

@dataclass
class Hyperparameters:
    batch_size : int = 8*64 # batch size, in sequences, across all devices
    sequence_length : int = 1024 # sequence length, in tokens
    num_iterations : int = {n} # number of iterations to run
    val_loss_every : int = 125
args = Hyperparameters()

for step in range(args.num_iterations + 1):
    print0(f"step:{{step}}/{{args.num_iterations}} val_loss:{{val_loss:.4f}} train_time:{{training_time_ms:.0f}}ms")
'''


def modded_log(lines: int) -> str:
    out = [SOURCE.format(n=lines).rstrip(), "=" * 100,
           "|   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |", "=" * 100]
    clock = 0.0
    for step in range(1, lines + 1):
        clock += 250.0
        loss = 3.2 + 7.6 / math.sqrt(step)
        out.append(f"step:{step}/{lines} train_loss:{loss:.4f} train_time:{clock:.0f}ms step_avg:{clock / step:.2f}ms")
        if step % 125 == 0:
            out.append(f"step:{step}/{lines} val_loss:{loss + 0.01:.4f} train_time:{clock:.0f}ms step_avg:{clock / step:.2f}ms")
    return "\n".join(out) + "\n"


def nanopoor_log(lines: int) -> str:
    out = []
    for i in range(1, lines + 1):
        loss = 3.2 + 7.6 / math.sqrt(i)
        out.append(f"step: {i * 10}, train loss: {loss:.4f}, val loss: {loss + 0.01:.4f}, "
                   f"elapsed time: {i * 0.8:.2f} min, dt: 48000.00 ms")
    return "\n".join(out) + "\n"


def median_s(fn, repeats: int) -> tuple[float, float]:
    """(median wall, median cpu) seconds of fn() in this process."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def process_s(cmd: list[str], repeats: int, cwd: Path) -> tuple[float, float]:
    """(median wall, median cpu) seconds of a whole child process."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


ERA_LINE = {
    # how each era prints a step (t: cumulative ms); val lines print after the step's training line
    "2024": ("step:{s}/{n} train_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{avg:.2f}ms",
             "step:{s}/{n} val_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{avg:.2f}ms"),
    "2025": ("step:{s}/{n} train_time:{t:.0f}ms step_avg:{avg:.2f}ms",
             "step:{s}/{n} val_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{avg:.2f}ms"),
}


def corpus_log(k: int, steps: int = 1750, source_lines: int = 1200) -> str:
    """the k-th synthetic record log: about the size of a 2025 record (a 1,200-line source, 1,750
    steps, val every 125); every 25th holds 5 seeds, every 10th is NanoPoor text."""
    if k % 10 == 9:
        return nanopoor_log(160)
    era = "2024" if k % 3 == 0 else "2025"
    train_fmt, val_fmt = ERA_LINE[era]
    filler = "\n".join(f"def helper_{i}(x):\n    return x * {i}  # padding like a real train script" for i in range(source_lines // 2))
    out = [SOURCE.format(n=steps).rstrip(), filler, "=" * 100,
           "\n".join(f"|   {i}  NVIDIA H100 80GB HBM3          On  |   00000000:{i:02d}:00.0 Off |                    0 |"
                     for i in range(8)), "=" * 100]
    for seed in range(5 if k % 25 == 0 else 1):
        clock = 0.0
        out.append(f"step:0/{steps} val_loss:10.8258 train_time:0ms step_avg:0.03ms")
        for s in range(1, steps + 1):
            clock += 100.0 + (k + seed) % 7
            loss = 3.2 + 7.6 / math.sqrt(s)
            out.append(train_fmt.format(s=s, n=steps, loss=loss, t=clock, avg=clock / s))
            if s % 125 == 0 or s == steps:
                out.append(val_fmt.format(s=s, n=steps, loss=loss + 0.07, t=clock + 50, avg=clock / s))
    return "\n".join(out) + "\n"


def bench_corpus(n: int, jobs: int) -> None:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "records"
        for k in range(n):
            folder = root / f"rec{k // 20:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"log{k:05d}.txt").write_text(corpus_log(k))
        size_mb = sum(p.stat().st_size for p in root.rglob("*.txt")) / 1e6
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
              f"{n} logs, {size_mb:.0f} MB")
        for j in sorted({jobs, 1}, reverse=True):
            cmd = [py, "-m", "nanopoor", "review", str(root), "--format", "json", "--jobs", str(j)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            assert out.returncode in (0, 1), out.stderr   # 1: some log has an error finding
            rows = json.loads(out.stdout)                 # one json array, an object per log
            assert len(rows) == n and all("error" not in r for r in rows), "a synthetic log was not read"
            print(f"  review DIR --jobs {j}: wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
                  f"{1000 * wall / n:5.1f} ms/log  {'ok' if wall < 60 else 'OVER'} (< 60 s for {n})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--corpus", type=int, default=0, help="time one review over this many synthetic logs instead")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    if a.corpus:
        bench_corpus(a.corpus, a.jobs)
        return
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        logs = {"modded-nanogpt": tmp / "modded.txt", "nanopoor-text": tmp / "nanopoor.txt"}
        logs["modded-nanogpt"].write_text(modded_log(a.lines))
        logs["nanopoor-text"].write_text(nanopoor_log(a.lines))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, "
              f"median of {a.repeats}")
        print("\nparse, in process (baseline: read + splitlines)")
        for fmt, path in logs.items():
            n = len(path.read_text().splitlines())
            parsed = parse_log(path)
            assert parsed.format == fmt and parsed.runs[0].steps, fmt
            base, _ = median_s(lambda path=path: path.read_text().splitlines(), a.repeats)
            t, cpu = median_s(lambda path=path: parse_log(path), a.repeats)
            print(f"  {fmt:15s} {n:6d} lines  parse wall {t * 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms  "
                  f"baseline {base * 1000:5.1f} ms  ratio {t / base:5.1f}x  {'ok' if t < 0.3 else 'OVER'} (< 300 ms)")
        print("\nwhole `python -m nanopoor review` process (baseline: python -c pass)")
        bw, bc = process_s([py, "-c", "pass"], a.repeats, tmp)
        print(f"  {'python -c pass':34s} wall {bw:5.2f} s  cpu {bc:5.2f} s")
        mw, mc = process_s([py, "-c", "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot"], a.repeats, tmp)
        print(f"  {'python -c import matplotlib.pyplot':34s} wall {mw:5.2f} s  cpu {mc:5.2f} s  (the png's floor)")
        for label, extra in (("review", []), ("review --plot (writes the png)", ["--plot", str(tmp / "c.png")])):
            cmd = [py, "-m", "nanopoor", "review", str(logs["modded-nanogpt"]), *extra]
            w, c = process_s(cmd, a.repeats, REPO)
            print(f"  {label:34s} wall {w:5.2f} s  cpu {c:5.2f} s  ratio {w / bw:4.1f}x  "
                  f"{'ok' if w < 2 else 'OVER'} (< 2 s)")


if __name__ == "__main__":
    main()
