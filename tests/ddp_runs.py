"""shared by the data-parallel record tests: run a record's smoke scales through the runner on
several gloo rank counts at once, and read what each run printed and logged."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nanopoor.runner import run_record


def run_one(out: Path, data: Path, name: str, rec: Path, scale: str, n: int, seed: int) -> dict:
    """one run's result.json, with its log text and events."""
    d = run_record(rec, scale=scale, seed=seed, data_dir=data, out_root=out / name, nproc=n, quiet=True, timeout_s=600)
    result = json.loads((d / "result.json").read_text())
    events = [json.loads(line) for line in (d / "events.jsonl").read_text().splitlines()]
    # the record's own lines are behind "record| " in log.txt; the harness's are not
    log = "\n".join(line.removeprefix("record| ") for line in (d / "log.txt").read_text().splitlines())
    return result | {"log": log, "events": events}


def run_jobs(jobs: dict[str, tuple[Path, str, int]], data: Path, out: Path, seed: int, workers: int = 3) -> dict[str, dict]:
    """every job (record, scale, ranks), `workers` at a time, one thread per process as torchrun
    gives its ranks (speed only: the numbers do not change; the runner already keeps glibc from
    unmapping the freed logits on the cpu)."""
    with pytest.MonkeyPatch.context() as mp, ThreadPoolExecutor(max_workers=workers) as pool:
        mp.setenv("OMP_NUM_THREADS", "1")
        futures = {name: pool.submit(run_one, out, data, name, *job, seed) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def run_alone(out: Path, data: Path, name: str, rec: Path, scale: str, n: int, seed: int) -> dict:
    """one run with one thread per process, as run_jobs runs them."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        return run_one(out, data, name, rec, scale, n, seed)


def assert_identical_replicas(run: dict) -> None:
    """the record's replica check printed once, by rank 0, and found every rank's weights equal."""
    line = next(ln for ln in run["log"].splitlines() if ln.startswith("replicas:"))
    assert line.startswith(f"replicas: {run['nproc']} rank(s)") and line.endswith("-> identical"), line
    assert run["log"].count("replicas:") == 1
