"""baseline_adamw, dense_muon_t4 and dense_muon_t4_v2: their models and muon checked directly with
torch on the cpu, the smoke scales run end to end through `nanopoor run`, and benchmarks/gpu_bench.py's
arithmetic and its --dry-run path (the same code the lead runs on an h100)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from conftest import archive_selected

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "records"
T4_RECORDS = ("baseline_adamw", "dense_muon_t4", "dense_muon_t4_v2")
VOCAB = 100277
PADDED = 100288  # 100277 rounded up to a multiple of 64


def load_module(record: str, module: str):
    """a record's sibling module under a unique name (both records have a model.py)."""
    name = f"t4_{record}_{module}"
    spec = importlib.util.spec_from_file_location(name, RECORDS / record / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def tiny(record: str):
    m = load_module(record, "model")
    torch.manual_seed(0)
    cfg = m.GPTConfig(vocab_size=PADDED, real_vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32,
                      **({"block_size": 64} if record == "baseline_adamw" else {"max_seq_len": 64}))
    model = m.GPT(cfg).eval()
    if record.startswith("dense_muon_t4"):  # zero-initialised projections make every position equal; wake them up
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2 and not p.any():
                    p.normal_(0, 0.05)
    return model


# -- models ------------------------------------------------------------------------------------
@pytest.mark.parametrize("record", T4_RECORDS)
def test_model_is_causal_and_rows_are_independent(record):
    """the harness's check, by hand: later tokens and other rows must not move earlier logits."""
    model = tiny(record)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB, (2, 48), generator=g)
    with torch.no_grad():
        base = model(x)
        assert base.shape == (2, 48, PADDED)
        t = 20
        later = x.clone()
        later[:, t + 1:] = torch.randint(0, VOCAB, (2, 48 - t - 1), generator=g)
        moved = (model(later)[:, : t + 1] - base[:, : t + 1]).abs().max().item()
        other = x.clone()
        other[1] = torch.randint(0, VOCAB, (48,), generator=g)
        cross = (model(other)[0] - base[0]).abs().max().item()
        changed = (model(later)[:, t + 1:] - base[:, t + 1:]).abs().max().item()
    assert moved < 1e-5 and cross < 1e-5
    assert changed > 1e-3  # the perturbation does reach the positions that may see it


@pytest.mark.parametrize("record, matmul_m, total_m", [("baseline_adamw", 162.1, 162.9), ("dense_muon_t4", 119.5, 196.5),
                                                      ("dense_muon_t4_v2", 119.5, 196.5)])
def test_full_size_parameter_counts(record, matmul_m, total_m):
    """the full scale's shapes (meta tensors: no memory); matmul = blocks + head, the n of 6·n·tokens."""
    m = load_module(record, "model")
    with torch.device("meta"):
        model = m.GPT(m.GPTConfig(vocab_size=PADDED, real_vocab_size=VOCAB))
    c = model.param_counts()
    assert c["matmul"] == c["blocks"] + c["head"]
    assert c["head"] == PADDED * 768
    assert c["matmul"] / 1e6 == pytest.approx(matmul_m, abs=0.05)
    assert c["total"] / 1e6 == pytest.approx(total_m, abs=0.05)


def test_baseline_ties_head_to_embedding():
    model = tiny("baseline_adamw")
    assert model.lm_head.weight is model.wte.weight


def test_dense_starts_from_uniform_predictions():
    """zero-initialised head: the first loss is exactly ln(vocab), whatever the input."""
    m = load_module("dense_muon_t4", "model")
    model = m.GPT(m.GPTConfig(vocab_size=PADDED, real_vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, max_seq_len=16))
    x = torch.randint(0, VOCAB, (2, 16))
    assert model(x, x).item() == pytest.approx(math.log(VOCAB), abs=1e-4)
    assert not model.blocks[0].attn.c_proj.weight.any() and not model.blocks[0].mlp.c_proj.weight.any()


# -- muon ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 32, 96), (2, 96, 32), (1, 48, 48)])
def test_newton_schulz_orthogonalises(shape):
    optim = load_module("dense_muon_t4", "optim")
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    X = optim.newton_schulz(G)
    assert X.shape == G.shape and X.dtype == torch.float32
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.6 and s.max() < 1.25  # the quintic's band, not exact U Vᵀ
    # it points where U Vᵀ points
    U, _, Vh = torch.linalg.svd(G[0], full_matrices=False)
    assert torch.nn.functional.cosine_similarity((U @ Vh).flatten(), X[0].flatten(), dim=0) > 0.95


def test_newton_schulz_fp16_matches_fp32():
    """the t4 path: normalised first, so fp16 neither overflows nor drifts from fp32."""
    optim = load_module("dense_muon_t4", "optim")
    G = 1e4 * torch.randn(2, 32, 96, generator=torch.Generator().manual_seed(1))  # a large, loss-scaled-sized gradient
    a, b = optim.newton_schulz(G, dtype=torch.float32), optim.newton_schulz(G, dtype=torch.float16)
    assert b.dtype == torch.float16 and torch.isfinite(b).all()
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.float().flatten(), dim=0) > 0.999


def test_muon_step_has_fixed_spectral_size():
    """one step from rest moves a tall matrix by lr·sqrt(rows/cols)·(≈ orthogonal), whatever the gradient's scale."""
    optim = load_module("dense_muon_t4", "optim")
    w = torch.nn.Parameter(torch.zeros(96, 32))
    opt = optim.Muon([w], lr=0.1, momentum=0.9)
    w.grad = 1e-6 * torch.randn(96, 32)
    opt.step()
    s = torch.linalg.svdvals(w.detach() / (0.1 * math.sqrt(96 / 32)))
    assert s.min() > 0.6 and s.max() < 1.25
    assert "momentum_buffer" in opt.state[w]  # state the harness's warm-up can save and restore


def _muon_pair(optim):
    """two identical matrices, each with its own muon, after one ordinary step."""
    torch.manual_seed(3)
    w0 = torch.randn(48, 16)
    grad = torch.randn(48, 16)
    ws, opts = [], []
    for _ in range(2):
        w = torch.nn.Parameter(w0.clone())
        opt = optim.Muon([w], lr=0.1, momentum=0.9)
        w.grad = grad.clone()
        opt.step()  # a first, ordinary step: the momentum is not zero any more
        ws.append(w), opts.append(opt)
    return ws, opts, grad


def test_v2_muon_skips_an_overflowed_step_on_the_device():
    """found_inf set: neither the weights nor the momentum move, even when the gradient is inf;
    found_inf = 0 is an ordinary step, equal to one without the flag."""
    optim = load_module("dense_muon_t4_v2", "optim")
    (w, ref), (opt, ref_opt), grad = _muon_pair(optim)
    before, buf = w.detach().clone(), opt.state[w]["momentum_buffer"].clone()
    w.grad = torch.full_like(grad, float("inf"))
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    assert torch.equal(w.detach(), before) and torch.equal(opt.state[w]["momentum_buffer"], buf)
    # flag 0 and no flag: the same step
    w.grad, ref.grad = grad.clone(), grad.clone()
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    ref_opt.step()
    assert not torch.equal(w.detach(), before)
    assert torch.equal(w.detach(), ref.detach())
    assert torch.equal(opt.state[w]["momentum_buffer"], ref_opt.state[ref]["momentum_buffer"])


def test_muon_refuses_non_matrices():
    optim = load_module("dense_muon_t4", "optim")
    with pytest.raises(ValueError, match="2-d weight matrices only"):
        optim.Muon([torch.nn.Parameter(torch.zeros(4))])


# -- the records end to end (smoke scale, through the runner) --------------------------------
# dense_muon_t4's smoke run is archived: dense_muon_t4_v2 keeps its path and adds the compiled one
ARCHIVED_SMOKE = {"dense_muon_t4"}
SMOKE = [pytest.param(r, marks=pytest.mark.archive) if r in ARCHIVED_SMOKE else r for r in T4_RECORDS]


@pytest.fixture(scope="module")
def smoke_runs(request, tiny_data, tmp_path_factory) -> dict[str, dict]:
    from nanopoor.cli import app

    out = tmp_path_factory.mktemp("t4runs")
    runs = {}
    for record in [r for r in T4_RECORDS if archive_selected(request) or r not in ARCHIVED_SMOKE]:
        res = CliRunner().invoke(app, ["run", str(RECORDS / record), "--scale", "smoke", "--data", str(tiny_data),
                                       "--runs", str(out), "--format", "json"])
        assert res.exit_code == 0, res.output
        runs[record] = json.loads(res.output[res.output.index("{"):])
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("record", SMOKE)
def test_smoke_run_completes_causal_and_learns(smoke_runs, record):
    r = smoke_runs[record]
    assert r["status"] == "completed", r.get("reason")
    assert r["causal"] is True
    assert r["tokens"] == r["budget_tokens"]
    assert r["val_loss"] < math.log(VOCAB)  # a few steps on a repetitive stream already beat uniform
    events = [json.loads(line) for line in (Path(r["run_dir"]) / "events.jsonl").read_text().splitlines()]
    end = events[-1]
    assert end["type"] == "run_end" and end["dtypes"] == ["float32"]  # the cpu path runs fp32 only
    assert any(e["type"] == "eval" and not e["full"] for e in events)  # a progress eval happened
    log = (Path(r["run_dir"]) / "log.txt").read_text()
    assert "matmul_params=" in log  # what gpu_bench reads for mfu


@pytest.mark.slow
@pytest.mark.archive   # dense_muon_t4_v5's compiled warm-up is the one make test runs (tests/test_record_v5.py)
def test_v2_warmup_steps_the_optimizers_and_the_harness_restores_them(tiny_data, tmp_path):
    """dense_muon_t4_v2's warm-up takes one optimizer step (kernels and optimizer state made
    before the clock starts); only the compiled path has a warm-up, so the smoke scale is copied
    with compile = true, compiled on the cpu, and must pass the harness's warm-up checks."""
    import shutil

    from nanopoor.cli import app
    from nanopoor.records import freeze

    rec = tmp_path / "dense_muon_t4_v2"
    shutil.copytree(RECORDS / "dense_muon_t4_v2", rec, ignore=shutil.ignore_patterns("__pycache__"))
    toml = (rec / "record.toml").read_text()
    smoke = toml.index("[scales.smoke]")
    (rec / "record.toml").write_text(toml[:smoke] + toml[smoke:].replace("args = { ", "args = { compile = true, ", 1))
    freeze(rec)
    res = CliRunner().invoke(app, ["run", str(rec), "--scale", "smoke", "--data", str(tiny_data),
                                   "--runs", str(tmp_path / "runs"), "--format", "json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output[res.output.index("{"):])
    assert r["status"] == "completed", r.get("reason")
    events = [json.loads(line) for line in (Path(r["run_dir"]) / "events.jsonl").read_text().splitlines()]
    warm = [e for e in events if e["type"] == "warmup_end"]
    assert len(warm) == 1 and warm[0]["restored"] is True
    assert r["val_loss"] < math.log(VOCAB)


# -- gpu_bench ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu_bench.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = mod
    spec.loader.exec_module(mod)
    return mod


def curve(*points):
    return [{"tokens": t, "train_time_ms": ms, "val_loss": v, "full": False} for t, ms, v in points]


def test_time_to_loss_interpolates_between_evals(bench):
    c = curve((100, 1000, 6.0), (200, 2000, 5.0), (300, 3000, 4.0))
    assert bench.time_to_loss(c, 5.5) == pytest.approx(1500)
    assert bench.time_to_loss(c, 5.0) == pytest.approx(2000)
    assert bench.time_to_loss(c, 6.5) == pytest.approx(1000)  # already below at the first eval: its time
    assert bench.time_to_loss(c, 3.0) is None


def test_val_at_tokens_is_linear_in_tokens(bench):
    c = curve((100, 1000, 6.0), (300, 3000, 4.0))
    assert bench.val_at_tokens(c, 200) == pytest.approx(5.0)
    assert bench.val_at_tokens(c, 300) == pytest.approx(4.0)
    assert bench.val_at_tokens(c, 50) is None


def test_compare_uses_the_worst_final_loss_and_the_baseline(bench):
    rows = [{"record": "baseline_adamw", "status": "completed", "val_loss": 5.0,
             "curve": curve((100, 1000, 6.0), (200, 4000, 5.0))},
            {"record": "dense_muon_t4", "status": "completed", "val_loss": 4.0,
             "curve": curve((100, 500, 5.5), (200, 1000, 4.0))}]
    cmp = bench.compare(rows, None, "baseline_adamw")
    assert cmp["target_val_loss"] == 5.0 and cmp["tokens_compared"] == [50, 100, 200]
    fast = rows[1]
    assert fast["time_to_target_ms"] == pytest.approx(500 + 500 * (0.5 / 1.5))
    assert fast["speedup_vs_baseline"] == pytest.approx(4000 / fast["time_to_target_ms"])
    assert rows[0]["speedup_vs_baseline"] == pytest.approx(1.0)


def test_t4_fit_flags_bf16_and_memory(bench):
    fit = bench.t4_fit({"peak_memory_bytes": 16 * 2**30}, {"dtypes": ["float16", "float32"]})
    assert fit["fits"] is False and fit["within_15gib"] is False and fit["no_bf16"] is True
    fit = bench.t4_fit({"peak_memory_bytes": 2**30}, {"dtypes": ["bfloat16", "float32"]})
    assert fit["fits"] is False and fit["no_bf16"] is False
    assert bench.t4_fit({"peak_memory_bytes": None}, {"dtypes": ["float32"]})["fits"] is None  # cpu: unknown


@pytest.mark.slow
def test_gpu_bench_dry_run_produces_the_table(bench, smoke_runs, tiny_data, tmp_path):
    """the whole script on the cpu: matmul peak, the two smoke runs read back, (a) and (b)."""
    app = typer.Typer()
    app.command()(bench.main)
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, [*(r["run_dir"] for r in smoke_runs.values()), "--dry-run", "--data", str(tiny_data),
                                   "--out", str(out), "--fast-record", "dense_muon_t4_v2"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["matmul_peak"]["flops"] > 0
    rows = {r["record"]: r for r in report["runs"]}
    assert set(rows) == set(smoke_runs) and len(rows) >= 2
    for r in rows.values():
        assert r["matmul_params"] and r["tokens_per_s"] > 0 and r["mfu"] > 0
        assert r["time_to_target_ms"] is not None  # the worst final loss is reached by every run
    assert report["compare"]["baseline"] == "baseline_adamw"
    assert rows["baseline_adamw"]["speedup_vs_baseline"] == pytest.approx(1.0)
    s, e = report["micro"]["stream"], report["micro"]["eval"]
    assert s["staged_step_ms"] > 0 and s["stream_step_ms"] > 0
    # the claim's evaluation as the scorer runs it (1024 val tokens asked for: 16 windows of 64), and a
    # progress eval through the client session, whose slice is capped at a tenth of the budget
    assert e["val_tokens"] == 1024 and e["eval_ms"] > 0 and e["floor_ms"] > 0 and e["eval_without_probe_ms"] > 0
    assert 0 < e["progress_tokens"] < e["val_tokens"] and e["progress_eval_ms"] > 0
    assert any(k.startswith("h.log_step") for k in e["fixed_costs_ms"])
    assert {g["goal"].split(" ")[0] for g in report["goals"]} >= {"dense_muon_t4_v2", "harness"}
    assert "goals" in res.output and "dry run" in res.output


def test_step_variants_dry_run_trains_the_same_weights():
    """benchmarks/t4_step_variants.py on the cpu: every variant steps, and the parent's loop and
    the sync-free one end on identical weights (the cpu's kernels are deterministic)."""
    import subprocess

    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "t4_step_variants.py"), "--dry-run", "--out", "/dev/stdout"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    report = json.loads(out[out.index("{"):])
    assert [r["variant"] for r in report["rows"]] == ["v1", "v1_twin", "syncfree", "syncfree_b16", "syncfree_b16_nsc"]
    assert report["v1_vs_v1_twin_max_abs_diff"] == 0 and report["v1_vs_syncfree_max_abs_diff"] == 0
    assert all(r["step_ms"] > 0 and r["skipped_steps"] == 0 for r in report["rows"])
