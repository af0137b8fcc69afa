"""benchmarks/t4_record_sweep.py (and t4_record_runs.py, what it trains with): the batches it serves are
the harness's, its val loss is the harness's number, it starts from the record's own settings, and
its --dry-run goes through every phase and writes the report; a tiny budget starts nothing new."""
from __future__ import annotations

import argparse
import time
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import t4_record_runs as runs  # noqa: E402
import t4_record_sweep as sweep  # noqa: E402

SEQ = 64


@pytest.fixture(scope="module")
def data(tiny_data):
    return runs.Data(tiny_data, SEQ, 8192, "cpu", eval_batch=4)


def test_windows_are_the_harness_batches(data, tiny_data):
    """the sweep's windows for a seed are, in order, what the harness's TrainStream serves in batches of 4."""
    from supervisor.shards import ShardFile
    from supervisor.stream import TrainStream, heldout_tokens_for

    manifest = json.loads((tiny_data / "manifest.json").read_text())
    shards = [ShardFile(tiny_data / s["file"], 100277) for s in manifest["train"]]
    heldout = heldout_tokens_for(sum(len(s) for s in shards), 8192)
    stream = TrainStream(shards, SEQ, 4, 10 * 4 * SEQ, 77, heldout_tokens=heldout)
    served = np.concatenate([stream.next_numpy() for _ in range(10)])  # (40, SEQ + 1)
    assert torch.equal(data.windows(77, 40), torch.from_numpy(served.astype(np.int64)))
    assert not torch.equal(data.windows(78, 40), data.windows(77, 40))  # another seed, another order


def test_val_loss_is_the_harness_number(tiny_data):
    """the sweep's loss of a model equals the scorer's (supervisor.evaluate.claim_loss) over the same val prefix
    (ids folded into 512, as a dry run does: the arithmetic is the same, the head 200x smaller)."""
    from supervisor.evaluate import TensorWindows, claim_loss

    data = runs.Data(tiny_data, SEQ, 8192, "cpu", eval_batch=4, vocab_cap=512)
    hp = {**runs.record_defaults(), "n_layer": 2, "n_head": 2, "n_embd": 16, "attn_gate_dims": 4}
    model = runs.build_model(hp, data.vocab_size, SEQ, "cpu", seed=0)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.1)  # not uniform: a loss that depends on the model
    ours, n = runs.val_loss(model, data, "cpu")
    tokens = torch.cat([b[:, :-1].reshape(-1) for b in data.val_batches] + [data.val_batches[-1][-1:, -1]])
    theirs, m, _ = claim_loss(lambda x: model(x), TensorWindows(tokens, SEQ, 4), data.vocab_size)
    assert n == m == 127 * SEQ  # (8192 - 1) // 64 windows
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_the_sweep_starts_from_the_record():
    """the base is train.py's defaults with record.toml's full scale on top; every variant changes
    real hyperparameters (a misspelt override would silently train the base)."""
    defaults = runs.record_defaults()
    text = (runs.RECORD / "train.py").read_text()
    assert f"muon_lr: float = {defaults['muon_lr']}" in text and defaults["value_embeds"] >= 1
    scale = runs.record_scale("full")
    assert scale["seq_len"] * scale["batch_size"] * scale["grad_accum"] * scale["steps"] <= sweep.MAX_TOKENS
    plan = sweep.phase1_plan(sweep.Variant("base", "base", {}, scale["batch_size"], scale["grad_accum"], scale["steps"]))
    for v in plan:
        assert set(v.overrides) <= set(defaults), v.name
        assert v.rows * v.accum * v.steps * scale["seq_len"] <= sweep.MAX_TOKENS, v.name
    assert len({v.name for v in plan}) == len(plan)


def _dry_run(tiny_data, out: Path, *extra: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "t4_record_sweep.py"), "--dry-run", "--data", str(tiny_data),
                           "--out", str(out), *extra], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_dry_run_goes_through_every_phase(tiny_data, tmp_path):
    report, stdout = _dry_run(tiny_data, tmp_path / "sweep.json")
    done = [r for r in report["runs"] if r["status"] == "completed"]
    assert {r["phase"] for r in done} == {1, 2}
    assert all(np.isfinite(r["val_loss"]) and r["val_tokens"] > 0 for r in done)
    names = {r["name"] for r in done}
    assert {"base", "v4", "base@32k", "-value_embeds", "windows", "head_rank=384"} <= names
    assert any(r["seed"] == sweep.SEEDS[1] for r in done)  # phase 2 gave the best a second seed
    timed = [t for t in report["timed"] if t["status"] == "completed"]
    assert timed and all(s["handover"]["bytes"] > 0 and s["train_clock_s"] >= s["train_s"] for t in timed for s in t["seeds"])
    choice = report["summary"]["choice"]
    assert choice["record_toml"].startswith("batch_size = ") and "compile = true" in choice["record_toml"]
    assert "record.toml [scales.full]:" in stdout and stdout.rstrip().splitlines()[-1].startswith("done in")


@pytest.mark.slow
def test_budget_starts_no_variant_that_would_not_fit(tiny_data, tmp_path):
    """a budget already spent: the first variant runs (nothing to estimate from), the rest are skipped."""
    report, _ = _dry_run(tiny_data, tmp_path / "sweep.json", "--budget-s", "1", "--phases", "1,3")
    status = [r["status"] for r in report["runs"]]
    assert status[0] == "completed" and set(status[1:]) == {"skipped"}
    assert all(t["status"] == "skipped" for t in report["timed"])


def _sweep(budget_s: float = 600.0) -> sweep.Sweep:
    a = argparse.Namespace(budget_s=budget_s, dry_run=True, out=None, finalists=5, min_gain=0.005)
    base = sweep.Variant("base", "base", {}, 4, 1, 2)
    # the budget starts now, not at the module's import (a long test session would have spent it)
    sw = sweep.Sweep(a, runs.SyntheticData(SEQ, 1024, "cpu"), "cpu", runs.record_defaults(), base, SEQ, started=time.perf_counter())
    sw.meta = {"peak_flops": None}
    return sw


def test_out_of_memory_retries_with_half_size_micro_batches(monkeypatch):
    """a finalist that does not fit the cap at 4 rows a micro-batch runs as 2 × 2 rows: the same
    tokens a step; the report says where it ran out."""
    real = runs.TimedTrainer

    def tight(hp, data, seq_len, device, seed, rows, compile_model):
        if rows == 4:
            raise torch.OutOfMemoryError("CUDA out of memory (a test's)")
        return real(hp, data, seq_len, device, seed, rows, compile_model)

    monkeypatch.setattr(runs, "TimedTrainer", tight)
    sw = _sweep()
    sw.timed_variant(sw.base, (1, 2))
    t = sw.timed[0]
    assert t["oom_at"] == ["4x1"] and (t["rows"], t["accum"]) == (2, 2) and t["status"] == "completed"
    assert [s["seed"] for s in t["seeds"]] == [1, 2] and all(np.isfinite(s["val_loss"]) for s in t["seeds"])


def test_a_failing_finalist_does_not_end_the_sweep(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor could not compile (a test's)")

    monkeypatch.setattr(runs, "TimedTrainer", broken)
    sw = _sweep()
    sw.timed_variant(sw.base, (1,))
    assert sw.timed[0]["status"] == "error" and "inductor" in sw.timed[0]["errors"][0]
