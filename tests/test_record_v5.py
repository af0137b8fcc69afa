"""records/dense_muon_t4_v5: its model, muon and schedule checked directly with torch on the cpu,
the forward exported as harness 0.4's claim exports it, and the smoke scale run end to end
through `nanopoor run` (the current harness)."""
from __future__ import annotations

import ast
import importlib.util
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import copy_record

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "records" / "dense_muon_t4_v5"
VOCAB = 100277
PADDED = 100288


def load(module: str):
    name = f"v5_{module}"
    spec = importlib.util.spec_from_file_location(name, RECORD / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


M, OPT = load("model"), load("optim")


def tiny(**kw):
    """every part switched on (a windowed layer and a low-rank head too), zero-initialised matrices woken up."""
    torch.manual_seed(0)
    cfg = M.GPTConfig(**{**dict(vocab_size=128, real_vocab_size=120, n_layer=4, n_head=2, n_embd=32, max_seq_len=64,
                                attn_gate_dims=4, window_layers="1", head_rank=16), **kw})
    model = M.GPT(cfg).eval()
    model.window.fill_(8)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2 and not p.any():
                p.normal_(0, 0.05)
        if model.logit_bias is not None:
            model.logit_bias.normal_(0, 0.5)
    return model


# -- the model -----------------------------------------------------------------------------------
def test_causal_and_rows_independent():
    """later tokens and other rows must not move earlier logits, with every path on."""
    model = tiny()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 120, (2, 48), generator=g)
    with torch.no_grad():
        base = model(x)
        assert base.shape == (2, 48, 128)
        later = x.clone()
        later[:, 21:] = torch.randint(0, 120, (2, 27), generator=g)
        other = x.clone()
        other[1] = torch.randint(0, 120, (48,), generator=g)
        moved = (model(later)[:, :21] - base[:, :21]).abs().max().item()
        cross = (model(other)[0] - base[0]).abs().max().item()
        changed = (model(later)[:, 21:] - base[:, 21:]).abs().max().item()
    assert moved < 1e-5 and cross < 1e-5
    assert changed > 1e-3


def test_windowed_attention_forgets_keys_older_than_the_window():
    """a windowed layer's output at position t depends on keys t-window+1..t only; a full layer's on all of 0..t."""
    torch.manual_seed(0)
    cfg = M.GPTConfig(vocab_size=128, real_vocab_size=120, n_layer=2, n_head=2, n_embd=32, max_seq_len=64, attn_gate_dims=0)
    windowed, full = M.CausalSelfAttention(cfg, False, True), M.CausalSelfAttention(cfg, False, False)
    full.load_state_dict(windowed.state_dict())
    for attn in (windowed, full):
        torch.nn.init.normal_(attn.c_proj.weight, 0, 0.1)
    x = torch.randn(1, 40, 32)
    far = x.clone()
    far[:, :10] = torch.randn(1, 10, 32)  # keys 0..9: more than 8 tokens before position 30
    window = torch.tensor(8)
    with torch.no_grad():
        assert torch.allclose(windowed(x, None, window)[:, 30:], windowed(far, None, window)[:, 30:], atol=1e-6)
        assert not torch.allclose(full(x, None, window)[:, 30:], full(far, None, window)[:, 30:], atol=1e-3)


def test_first_loss_is_uniform():
    """zero head, zero bias, tanh(0) = 0: the first loss is exactly ln(vocab), whatever the input."""
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(vocab_size=PADDED, real_vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, max_seq_len=16,
                              attn_gate_dims=4))
    x = torch.randint(0, VOCAB, (2, 16))
    assert model(x, x).item() == pytest.approx(math.log(VOCAB), abs=1e-4)


def test_value_embedding_plan_is_a_u():
    assert M.value_embed_layers(6, 3) == [0, 1, 2, 0, 1, 2]
    assert M.value_embed_layers(6, 1) == [0, None, None, None, None, 0]
    assert M.value_embed_layers(2, 3) == [0, 0]  # no more tables than half the blocks
    assert M.value_embed_layers(6, 0) == [None] * 6


def test_full_size_parameter_counts():
    """v4's 119.5M matmul parameters (blocks + head) plus the gates' and mixes' few; the three
    value-embedding tables (231M) are lookups, not matmul work."""
    with torch.device("meta"):
        model = M.GPT(M.GPTConfig(vocab_size=PADDED, real_vocab_size=VOCAB))
    c = model.param_counts()
    small = 6 * (6 * 12) + 6 * 2 + 6 * 2  # gates, x0 mixes, value-embedding mixes (every block reads a table)
    assert c["matmul"] == 119_498_496 + small
    assert c["value_embeds"] == 3 * PADDED * 768
    assert c["total"] == c["matmul"] + c["embedding"] + c["value_embeds"] + 3 + PADDED  # skip weights, logit bias


def test_inference_copy_halves_the_tables_and_keeps_the_scalars():
    model = tiny()
    twin = M.inference_copy(model, torch.float16)
    for (name, p), (_, q) in zip(model.named_parameters(), twin.named_parameters()):
        assert q.dtype == (torch.float16 if p.dim() == 2 or name == "logit_bias" else torch.float32), name
        assert not q.requires_grad
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the trained model is untouched


def test_forward_exports_with_a_dynamic_batch_and_matches_eager():
    """harness 0.4 exports the forward it is handed: torch.export (non-strict) with a dynamic batch
    dimension must trace it, and the program must give the eager forward's logits at another batch size."""
    from torch.export import Dim, export

    model = tiny()

    class Forward(torch.nn.Module):  # what the client wraps around h.finish's forward
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    x = torch.randint(0, 120, (2, 48))
    program = export(Forward(model), (x,), dynamic_shapes=({0: Dim("batch")},), strict=False)
    other = torch.randint(0, 120, (5, 48))
    with torch.no_grad():
        assert torch.equal(program.module()(other), model(other))


def test_train_passes_every_model_switch():
    """every GPTConfig field but the vocabulary and the context is a Hyperparameters field that
    train.py hands to GPTConfig (a switch added to the model and forgotten in train.py fails here)."""
    source = (RECORD / "train.py").read_text()
    tree = ast.parse(source)
    hp = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Hyperparameters")
    hp_fields = {s.target.id for s in hp.body if isinstance(s, ast.AnnAssign)}
    for f in fields(M.GPTConfig):
        if f.name in ("vocab_size", "real_vocab_size", "max_seq_len"):
            continue
        assert f.name in hp_fields and f"{f.name}=args.{f.name}" in source, f.name


# -- muon and the schedule -------------------------------------------------------------------------
def test_muon_orthogonalises_q_k_v_apart():
    """a (3C, C) weight with ns_split = 3 moves by three separately orthogonalised blocks."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(96, 32))
    w.ns_split = 3
    grad = torch.randn(96, 32)
    opt = OPT.Muon([w], lr=1.0, momentum=0.0, nesterov=False)
    w.grad = grad.clone()
    opt.step()
    expect = -OPT.newton_schulz(grad.view(3, 32, 32))
    assert torch.allclose(w.detach().view(3, 32, 32), expect, atol=1e-5)
    joint = torch.nn.Parameter(torch.zeros(96, 32))
    joint.ns_split = 3
    together = OPT.Muon([joint], lr=1.0, momentum=0.0, nesterov=False, split=False)
    joint.grad = grad.clone()
    together.step()
    assert not torch.allclose(joint.detach(), w.detach(), atol=1e-3)  # v4's way is another update


def test_muon_skips_an_overflowed_step_on_the_device():
    torch.manual_seed(3)
    w = torch.nn.Parameter(torch.randn(48, 16))
    opt = OPT.Muon([w], lr=0.1, momentum=0.9)
    w.grad = torch.randn(48, 16)
    opt.step()
    before, buf = w.detach().clone(), opt.state[w]["momentum_buffer"].clone()
    w.grad = torch.full((48, 16), float("inf"))
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    assert torch.equal(w.detach(), before) and torch.equal(opt.state[w]["momentum_buffer"], buf)


class HP:
    warmup_steps, cooldown_frac, final_lr_frac = 0, 0.45, 0.1
    muon_momentum_start, muon_momentum, momentum_warmup_steps = 0.85, 0.95, 300


def test_schedule_holds_then_cools_and_the_last_step_still_moves():
    f = [OPT.lr_factor(s, 61, HP) for s in range(1, 62)]
    assert f[0] == 1.0 and all(a >= b for a, b in zip(f, f[1:]))
    assert f[33] == 1.0 and f[34] < 1.0  # the cool-down starts at 55% of the run
    assert HP.final_lr_frac < f[-1] < 0.2
    assert OPT.muon_momentum(1, HP) == 0.85 and OPT.muon_momentum(61, HP) == pytest.approx(0.85 + 0.1 * 60 / 300)


def test_every_parameter_has_one_optimizer():
    model = tiny()
    hp = type("H", (), dict(embed_lr=0.6, value_embed_lr=0.6, head_lr=0.008, scalar_lr=0.04, bias_lr=0.2, adam_beta1=0.8,
                            adam_beta2=0.95, adam_eps=1e-10, muon_lr=0.05, muon_momentum_start=0.85, ns_steps=5,
                            ns_dtype="float16", muon_split_qkv=True))
    adamw, muon = OPT.build_optimizers(model, hp, on_cuda=False)
    owned = [p for opt in (adamw, muon) for g in opt.param_groups for p in g["params"]]
    assert len(owned) == len({id(p) for p in owned}) == len(list(model.parameters()))
    in_muon = {id(p) for p in muon.param_groups[0]["params"]}
    assert id(model.head_down.weight) in in_muon and id(model.blocks[0].attn.c_qkv.weight) in in_muon
    assert id(model.blocks[0].attn.gate) not in in_muon and id(model.lm_head.weight) not in in_muon
    assert {g["name"]: g["lr"] for g in adamw.param_groups}["logit_bias"] == 0.2


# -- end to end, the smoke scale through the runner --------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tiny_data, tmp_path_factory) -> dict:
    from nanopoor.cli import app

    tmp = tmp_path_factory.mktemp("v5")
    rec = copy_record(RECORD, tmp / "records")
    res = CliRunner().invoke(app, ["run", str(rec), "--scale", "smoke", "--data", str(tiny_data), "--runs", str(tmp / "runs"),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{"):])


@pytest.mark.slow
def test_smoke_run_completes_causal_and_learns(smoke_run):
    r = smoke_run
    assert r["status"] == "completed", r.get("reason")
    assert r["causal"] is True and r["tokens"] == r["budget_tokens"]
    assert r["val_loss"] < math.log(VOCAB)
    events = [json.loads(line) for line in (Path(r["run_dir"]) / "events.jsonl").read_text().splitlines()]
    # the loss is read back a step late: every step is still logged once, in order
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]
    assert any(e["type"] == "eval" and not e["full"] for e in events)  # eval_every = 2 in the smoke args
    assert "matmul_params=" in (Path(r["run_dir"]) / "log.txt").read_text()


@pytest.mark.slow
def test_compiled_warmup_is_restored_and_windows_grow_without_recompiling(tiny_data, tmp_path):
    """the full scale's path at the smoke scale: compile = true (compiled on the cpu), a windowed
    layer whose window the loop grows every step. the harness must restore the warm-up's state, and
    no step may recompile (the window is a device tensor filled in place, not a python int)."""
    from nanopoor.cli import app

    rec = copy_record(RECORD, tmp_path / "records", args={"compile": True, "window_layers": "1", "window_start": 8,
                                                            "window_end": 32})
    res = CliRunner().invoke(app, ["run", str(rec), "--scale", "smoke", "--data", str(tiny_data), "--runs", str(tmp_path / "runs"),
                                   "--format", "json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output[res.output.index("{"):])
    assert r["status"] == "completed", r.get("reason")
    assert r["compiles_in_timed"] == 0
    events = [json.loads(line) for line in (Path(r["run_dir"]) / "events.jsonl").read_text().splitlines()]
    warm = [e for e in events if e["type"] == "warmup_end"]
    assert len(warm) == 1 and warm[0]["restored"] is True
    assert r["val_loss"] < math.log(VOCAB)


def test_the_fp16_copy_computes_the_trained_function_and_exports():
    """the forward train.py hands over on cuda: the fp16 copy under fp16 autocast (here the cpu's
    autocast). its logits are the float32 model's up to fp16 rounding, and it exports as the
    float32 forward does."""
    from torch.export import Dim, export

    model = tiny()
    twin = M.inference_copy(model, torch.float16)

    class Forward(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            with torch.autocast("cpu", dtype=torch.float16):
                return self.net(x)

    x = torch.randint(0, 120, (2, 48))
    with torch.no_grad():
        ref, half = model(x), Forward(twin)(x)
    assert half.dtype == torch.float16
    assert (half.float() - ref).abs().max().item() < 1e-2 < ref.abs().max().item()
    program = export(Forward(twin), (x,), dynamic_shapes=({0: Dim("batch")},), strict=False)
    other = torch.randint(0, 120, (3, 48))
    with torch.no_grad():
        assert torch.equal(program.module()(other), Forward(twin)(other))
