"""submit --parallel: the declared seeds at once, one per gpu, then verified and ranked as submit does."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runs import make_record, make_run
from nanopoor import hardware, runner


@pytest.fixture
def fake_gpu_runner(monkeypatch):
    """run_record replaced by a synthetic run that takes a moment; records each call's gpu and
    how many runs were in flight at once."""
    calls, lock, state = [], threading.Lock(), {"now": 0, "max": 0}

    def run_record(record_dir, *, scale, seed, data_dir, out_root, timeout_s, track, quiet=False, env=None, **_):
        with lock:
            calls.append({"seed": seed, "quiet": quiet, "gpu": (env or {}).get("CUDA_VISIBLE_DEVICES")})
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            n = len(calls)
        time.sleep(0.3)
        with lock:
            state["now"] -= 1
        return make_run(Path(out_root), Path(record_dir), seed=2000 + n, val_loss=3.20 + 0.01 * (n % 3),
                        train_time_ms=800e3 + n, scale=scale, finished_at="2025-03-02T09:00:00+00:00",
                        run_id=f"run-{n}")

    monkeypatch.setattr(runner, "run_record", run_record)
    monkeypatch.setattr(runner, "has_gpu", lambda: True)          # what a gpu machine's submit sees first
    monkeypatch.setattr(runner, "preflight", lambda *a, **k: [])
    return calls, state


def test_three_seeds_run_at_once_one_per_gpu(tmp_path, monkeypatch, app, fake_gpu_runner):
    calls, state = fake_gpu_runner
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "r", seeds=3)
    res = CliRunner().invoke(app, ["submit", "records/r", "--parallel", "--gpus", "0,1,2", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert sorted(c["gpu"] for c in calls) == ["0", "1", "2"] and state["max"] == 3
    assert all(c["seed"] is None and c["quiet"] for c in calls)     # harness-assigned seeds, no live display
    assert len(out["runs"]) == 3 and all(c["ok"] for c in out["checks"])
    [sub] = out["submissions"]
    assert sub["verified"] and sub["n_runs"] == 3
    assert "?? leaderboard.md" in out["to_commit"]


def test_more_seeds_than_gpus_wait_for_a_free_one(tmp_path, monkeypatch, app, fake_gpu_runner):
    calls, state = fake_gpu_runner
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "r", seeds=4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")             # the default: what this process may use
    res = CliRunner().invoke(app, ["submit", "records/r", "--parallel"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 4 and state["max"] == 2 and {c["gpu"] for c in calls} == {"2", "3"}
    assert res.output.count("gpu ") >= 4 and "files to commit:" in res.output   # a line per finished run


def test_parallel_without_a_gpu_is_one_line(tmp_path, monkeypatch, app, fake_gpu_runner):
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "r")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(hardware, "query_smi", lambda devices=None: None)
    res = CliRunner().invoke(app, ["submit", "records/r", "--parallel"])
    assert res.exit_code == 1 and "shows none" in res.output and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["submit", "records/r", "--gpus", "0"])
    assert res.exit_code == 1 and "add --parallel" in res.output
    res = CliRunner().invoke(app, ["submit", "records/r", "--parallel", "--gpus", "0,0"])
    assert res.exit_code == 1 and "twice" in res.output
    assert fake_gpu_runner[0] == []


def test_visible_gpus_reads_the_environment_then_nvidia_smi(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1, 3")
    assert hardware.visible_gpus() == ["1", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    row = "NVIDIA H100 80GB HBM3, 81559, 550.54.15, 9.0\n"
    monkeypatch.setattr(hardware, "query_smi", lambda devices=None: row * 4)
    assert hardware.visible_gpus() == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_real_runs_in_parallel_on_the_cpu(tmp_path, monkeypatch, app, tiny_record, tiny_data):
    """the real runner in threads: two processes at once, each with its own device id, each
    run folder complete and verified (on a cpu the ids only reach the child's environment)."""
    res = CliRunner().invoke(app, ["submit", str(tiny_record), "--scale", "smoke", "--seeds", "2", "--parallel",
                                   "--gpus", "0,1", "--data", str(tiny_data), "--runs", str(tmp_path / "runs"),
                                   "--out", str(tmp_path / "leaderboard.md"), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["runs"]) == 2 and all(c["ok"] for c in out["checks"])
    starts = []
    for d in out["runs"]:
        r = json.loads((Path(d) / "result.json").read_text())
        assert r["status"] == "completed" and r["track_version"] == 1
        starts.append((r["started_at"], r["finished_at"]))
    (s0, f0), (s1, f1) = sorted(starts)
    assert s1 < f0   # the second started before the first finished
