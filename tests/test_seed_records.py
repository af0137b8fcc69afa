"""the seed's NanoPoor runs as records (first_run, psgd, muon, muon_3xlr): their model pieces and
optimizers, checked directly with torch on the cpu (the runs themselves are the harness's job).

what matters: the attention and the moe are strictly causal and per token (checked by
perturbation, the way the harness checks), the full-scale model has the published size, and
the hand-written optimizers do what they claim."""
from __future__ import annotations

import ast
import copy
import importlib.util
import math
import re
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "records"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SEED_RECORDS = ("first_run", "psgd", "muon", "muon_3xlr")
VOCAB = 100277
HARNESS_ARGS = {"eval_seq_len", "eval_batch_size"}


def load_module(record: str, module: str):
    """a record's sibling module, imported under a unique name (every record has a model.py)."""
    path = RECORDS / record / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"seed_{record}_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def distinct(module: str, records=SEED_RECORDS) -> list[str]:
    """one record per distinct copy of a module (frozen records duplicate code byte for byte)."""
    seen: dict[bytes, str] = {}
    for r in records:
        seen.setdefault((RECORDS / r / f"{module}.py").read_bytes(), r)
    return list(seen.values())


@pytest.fixture(scope="module", params=distinct("model"))
def model_mod(request):
    return load_module(request.param, "model")


TINY_VOCAB = 500  # the unit tests need no 100k head; 500 pads to 512, so padding rows exist


def tiny_config(mod, **over):
    kw = dict(vocab_size=TINY_VOCAB, seq_len=64, n_layer=2, n_embd=32, n_head=2, q_rank=16, kv_rank=16, head_dim=8,
              rope_dim=8, nsa_block=8, nsa_select=2, nsa_window=16, mlp_hidden=64, n_experts=4, top_k=2,
              expert_hidden=32)
    kw.update(over)
    return mod.GPTConfig(**kw)


def tiny_model(mod, seed: int = 0, **over):
    torch.manual_seed(seed)
    model = mod.GPT(tiny_config(mod, **over))
    with torch.no_grad():  # a trained-looking bias, so routing is not just argmax of the scores
        for m in model.modules():
            if isinstance(m, mod.MoE):
                m.expert_bias.copy_(torch.randn(m.cfg.n_experts) * 0.1)
    return model.eval()


# -- causality, the way the harness checks it ---------------------------------------------------

@pytest.mark.parametrize("t", [0, 6, 7, 8, 23, 40, 62])  # block edges of nsa_block = 8 included
def test_logits_at_or_before_t_ignore_later_tokens(model_mod, t):
    model = tiny_model(model_mod)
    g = torch.Generator().manual_seed(t)
    x = torch.randint(0, TINY_VOCAB, (2, 64), generator=g)
    x2 = x.clone()
    x2[:, t + 1:] = torch.randint(0, TINY_VOCAB, (2, 63 - t), generator=g)
    with torch.no_grad():
        a, b = model(x), model(x2)
    assert (a[:, : t + 1] - b[:, : t + 1]).abs().max().item() <= 1e-5
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max().item() > 1e-3  # the later positions do see the change


def test_rows_of_a_batch_do_not_see_each_other(model_mod):
    model = tiny_model(model_mod)
    x = torch.randint(0, TINY_VOCAB, (3, 64), generator=torch.Generator().manual_seed(1))
    x2 = x.clone()
    x2[1:] = torch.randint(0, TINY_VOCAB, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(model(x)[0], model(x2)[0], atol=1e-5)
        assert torch.allclose(model(x)[0], model(x[:1])[0], atol=1e-5)


def test_attention_branches_are_causal_at_every_position(model_mod):
    """perturb the hidden state at one position s and check no output before s moves, for every
    s: the compressed, selected and window branches together, gate included."""
    torch.manual_seed(0)
    attn = model_mod.Attention(tiny_config(model_mod)).eval()
    x = torch.randn(1, 64, 32)
    with torch.no_grad():
        base = attn(x)
        for s in range(1, 64):
            x2 = x.clone()
            x2[:, s] += torch.randn(32)
            moved = (attn(x2) - base).abs().amax(dim=-1)[0]  # (T,)
            assert moved[:s].max().item() <= 1e-6, f"perturbing position {s} moved an earlier output"
            assert moved[s].item() > 0


def test_selected_branch_reads_past_blocks_beyond_the_window(model_mod):
    """the selected branch reaches earlier than the sliding window: with the compressed and
    window branches gated off, a query still sees a token 40 positions back (window is 16)."""
    torch.manual_seed(0)
    cfg = tiny_config(model_mod, nsa_select=8)  # every complete past block is selected
    attn = model_mod.Attention(cfg).eval()
    with torch.no_grad():
        attn.gate.weight.zero_()
        attn.gate.bias.copy_(torch.tensor([-30.0, 30.0, -30.0] * cfg.n_head))  # (cmp, sel, win) per head
        x = torch.randn(1, 64, 32)
        x2 = x.clone()
        x2[:, 10] += 5.0
        moved = (attn(x2) - attn(x)).abs().amax(dim=-1)[0]
    assert moved[:10].max().item() <= 1e-6
    assert moved[50].item() > 1e-4  # 40 tokens back, past the 16-token window


# -- mixture of experts: per token, hard top-k, bias for selection only -------------------------

def reference_moe(moe, x):
    """the moe, one token at a time, with plain python: what the vectorised dispatch must equal."""
    out = []
    for tok in x.reshape(-1, x.size(-1)):
        scores = torch.sigmoid(moe.router(tok).float())
        chosen = torch.topk(scores + moe.expert_bias, moe.cfg.top_k).indices
        w = scores[chosen] / scores[chosen].sum()
        y = moe.shared(tok) + sum(w[i] * moe.experts[int(e)](tok) for i, e in enumerate(chosen))
        out.append(y)
    return torch.stack(out).view_as(x)


def test_moe_dispatch_equals_per_token_reference(model_mod):
    torch.manual_seed(0)
    moe = model_mod.MoE(tiny_config(model_mod, n_experts=6, top_k=2)).eval()
    with torch.no_grad():
        moe.expert_bias.copy_(torch.tensor([0.3, -0.2, 0.0, 0.1, -0.4, 0.2]))
        x = torch.randn(3, 20, 32)
        assert torch.allclose(moe(x), reference_moe(moe, x), atol=1e-5)
        # per token: a token's output does not depend on which other tokens share the batch
        assert torch.allclose(moe(x)[1, 7], moe(x[1:2, 7:8])[0, 0], atol=1e-5)


def test_expert_bias_steers_selection_but_not_weights(model_mod):
    torch.manual_seed(0)
    moe = model_mod.MoE(tiny_config(model_mod, n_experts=4, top_k=1)).eval()
    x = torch.randn(1, 10, 32)
    with torch.no_grad():
        moe.expert_bias.copy_(torch.tensor([100.0, 0.0, 0.0, 0.0]))  # every token must pick expert 0
        y = moe(x)
        expect = moe.shared(x) + moe.experts[0](x)  # top-1: the normalised weight is exactly 1
    assert torch.allclose(y, expect, atol=1e-5)


def test_expert_loads_counted_in_training_only_and_bias_moves_towards_balance(model_mod):
    torch.manual_seed(0)
    moe = model_mod.MoE(tiny_config(model_mod, n_experts=4, top_k=2))
    x = torch.randn(2, 16, 32)
    moe.eval()
    with torch.no_grad():
        moe(x)
    assert moe.expert_load.sum().item() == 0  # evaluation counts nothing
    moe.train()
    with torch.no_grad():
        moe.expert_bias.copy_(torch.tensor([5.0, 5.0, 0.0, 0.0]))  # experts 0 and 1 take every token
    moe(x).sum().backward()
    assert moe.expert_load.tolist() == [32.0, 32.0, 0.0, 0.0]
    wrapper = torch.nn.Sequential(moe)
    model_mod.update_expert_bias(wrapper, 0.5)
    assert moe.expert_bias.tolist() == [4.5, 4.5, 0.5, 0.5]  # overloaded down, idle up
    assert moe.expert_load.sum().item() == 0


def test_forward_used_for_eval_changes_no_state(model_mod):
    model = tiny_model(model_mod)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(torch.randint(0, TINY_VOCAB, (2, 64)))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- the training loss ------------------------------------------------------------------------

def test_chunked_loss_matches_plain_cross_entropy_and_its_gradients(model_mod):
    model = tiny_model(model_mod).train()
    x = torch.randint(0, TINY_VOCAB, (2, 64), generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, TINY_VOCAB, (2, 64), generator=torch.Generator().manual_seed(4))
    h = model.hidden(x)
    chunked = model.head_loss(h, y, chunk_rows=48)  # chunks that do not divide the 128 rows
    grads = torch.autograd.grad(chunked * 3.0, [model.wte.weight, model.blocks[0].attn.q_up.weight], retain_graph=True)
    plain = F.cross_entropy(F.linear(h, model.wte.weight)[..., :TINY_VOCAB].reshape(-1, TINY_VOCAB), y.reshape(-1))
    ref = torch.autograd.grad(plain * 3.0, [model.wte.weight, model.blocks[0].attn.q_up.weight])
    assert abs(chunked.item() - plain.item()) < 1e-4
    for g, r in zip(grads, ref):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-4)
    assert model.wte.weight.shape[0] == 512 and grads[0][TINY_VOCAB:].abs().max().item() == 0  # padding rows never get a gradient


# -- the full-scale model: the published size --------------------------------------------------

def record_toml(record: str) -> dict:
    return tomllib.loads((RECORDS / record / "record.toml").read_text())


def analytic_counts(cfg) -> tuple[int, int]:
    """total and active parameters from the shape alone (tied embedding/head counted once)."""
    C, H, dh, dr = cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.rope_dim
    attn = (C * cfg.q_rank + cfg.q_rank + cfg.q_rank * H * (dh + dr)          # q down, q norm, q up
            + C * cfg.kv_rank + cfg.kv_rank + 2 * cfg.kv_rank * H * dh         # kv down, kv norm, k up, v up
            + C * dr + (C * 3 * H + 3 * H) + H * dh * C)                        # rope key, gate, out proj
    expert = 2 * C * cfg.expert_hidden
    total = active = 64 * math.ceil(cfg.vocab_size / 64) * C + C               # table + final norm
    for layer in range(cfg.n_layer):
        common = 2 * C + attn                                                  # two norms + attention
        if layer % cfg.moe_every == cfg.moe_every - 1:
            total += common + C * cfg.n_experts + (1 + cfg.n_experts) * expert
            active += common + C * cfg.n_experts + (1 + cfg.top_k) * expert
        else:
            total += common + 2 * C * cfg.mlp_hidden
            active += common + 2 * C * cfg.mlp_hidden
    return total, active


@pytest.mark.parametrize("record", SEED_RECORDS)
def test_full_scale_is_about_120m_total_75m_active(record):
    mod = load_module(record, "model")
    full = record_toml(record)["scales"]["full"]
    shape = {k: v for k, v in full.get("args", {}).items() if k in mod.GPTConfig.__dataclass_fields__}
    cfg = mod.GPTConfig(vocab_size=VOCAB, seq_len=full["seq_len"], **shape)
    with torch.device("meta"):
        model = mod.GPT(cfg)
    counts = model.param_counts()
    assert (counts["total"], counts["active"]) == analytic_counts(cfg)
    assert 115e6 <= counts["total"] <= 125e6
    assert 70e6 <= counts["active"] <= 80e6
    assert model.wte.weight.shape[0] % 64 == 0 and model.wte.weight.shape[0] >= VOCAB
    assert sum(isinstance(b.ffn, mod.MoE) for b in model.blocks) == cfg.n_layer // 2  # moe alternates with dense


# -- optimizers --------------------------------------------------------------------------------

@pytest.mark.parametrize("record", distinct("optim", ["muon", "muon_3xlr"]))
def test_newton_schulz_orthogonalises(record):
    optim = load_module(record, "optim")
    for shape in [(32, 96), (96, 32), (48, 128)]:  # rectangular: no near-zero singular values
        G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        X = optim.newton_schulz5(G * 1e3)
        s = torch.linalg.svdvals(X)
        assert s.min().item() > 0.5 and s.max().item() < 1.3, shape  # any input scale
        U, _, Vh = torch.linalg.svd(G, full_matrices=False)
        assert F.cosine_similarity(X.flatten(), (U @ Vh).flatten(), dim=0).item() > 0.95  # ~U V^T


@pytest.mark.parametrize("record", distinct("optim", ["muon", "muon_3xlr"]))
def test_muon_steps_fit_a_linear_map(record):
    optim = load_module(record, "optim")
    torch.manual_seed(0)
    target = 0.1 * torch.randn(16, 24)  # spectral norm ~1: reachable in 60 steps of at most 0.1
    w = torch.nn.Parameter(torch.zeros(16, 24))
    opt = optim.Muon([w], lr=0.1, momentum=0.9)
    x = torch.randn(256, 24)
    losses = []
    for i in range(60):
        opt.param_groups[0]["lr"] = 0.1 * (1 - i / 60)  # fixed-size steps need a decaying lr to settle
        loss = ((x @ w.T - x @ target.T) ** 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.05 * losses[0]
    with pytest.raises(ValueError):
        optim.Muon([torch.nn.Parameter(torch.zeros(4))])


def kron():
    return load_module("psgd", "optim").Kron


@pytest.mark.parametrize("sigma", [1e-2, 1.0, 1e2])
def test_kron_whitens_noise_of_any_scale(sigma):
    Kron = kron()
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(12, 20))
    opt = Kron([w], lr=0.0, b1=0.0, max_update_rms=1e9)
    for _ in range(200):
        w.grad = sigma * torch.randn(12, 20)
        opt.step()
    st = opt.state[w]
    assert torch.equal(st["Ql"], st["Ql"].triu()) and torch.equal(st["Qr"], st["Qr"].triu())
    update = Kron._precondition(st["Ql"], st["Qr"], sigma * torch.randn(12, 20))
    assert 0.7 < update.square().mean().sqrt().item() < 1.4  # whitened: unit rms whatever sigma is


def test_kron_diagonal_side_for_long_dimensions():
    Kron = kron()
    w = torch.nn.Parameter(torch.zeros(6, 40))
    opt = Kron([w], max_dense_dim=16)
    w.grad = torch.randn(6, 40)
    opt.step()
    assert opt.state[w]["Ql"].shape == (6, 6) and opt.state[w]["Qr"].shape == (40,)


def test_kron_fits_a_linear_map_and_restores_from_state_dict():
    Kron = kron()
    torch.manual_seed(0)
    target = torch.randn(16, 24)
    x = torch.randn(256, 24)
    w = torch.nn.Parameter(torch.zeros(16, 24))
    opt = Kron([w], lr=0.05)

    def step():
        loss = ((x @ w.T - x @ target.T) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    losses = [step() for _ in range(80)]
    assert losses[-1] < 0.05 * losses[0]
    # the harness restores optimizers by state_dict after the warm-up: the state must round-trip
    saved_w, saved = w.detach().clone(), copy.deepcopy(opt.state_dict())
    torch.manual_seed(5)
    step()
    after_one = w.detach().clone()
    with torch.no_grad():
        w.copy_(saved_w)
    opt.load_state_dict(saved)
    torch.manual_seed(5)
    step()
    assert torch.equal(w.detach(), after_one)
    assert Kron.update_probability(1, opt.param_groups[0]) == 1.0
    assert Kron.update_probability(10_000, opt.param_groups[0]) == opt.param_groups[0]["min_prob"]


# -- record.toml: budgets, args and the published claims ---------------------------------------

PUBLISHED = {  # record: (formula, tokens, time_min, peer log, hardware) of its leaderboard row
    "first_run": ("1024 × 6 × 4 × 570", 14_008_320, 70.61, "GPT4-tok-run.txt", "1× Tesla T4"),
    "psgd": ("1024 × 5 × 4 × 300", 6_144_000, 37.17, "PSGD_run.txt", "1× Tesla T4"),
    "muon": ("1024 × 5 × 4 × 190", 3_891_200, 15.04, "Muon_run.txt", "1× Tesla T4"),
    "muon_3xlr": ("1024 × 8 × 4 × 160", 5_242_880, 14.86, "tweaks_run_nosave.txt", "1× Tesla T4"),
}


def dataclass_fields(path: Path, cls: str) -> set[str]:
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}


@pytest.mark.parametrize("record", SEED_RECORDS)
def test_record_budget_args_and_claims(record):
    from nanopoor.records import load_record

    rec = load_record(RECORDS / record)
    formula, tokens, time_min, log, hardware = PUBLISHED[record]
    full = rec.scale("full")
    assert (full["formula"], full["budget_tokens"]) == (formula, tokens)
    assert rec.scale("smoke")["track"] == "demo"
    known = dataclass_fields(RECORDS / record / "train.py", "Hyperparameters") | \
        dataclass_fields(RECORDS / record / "model.py", "GPTConfig") | HARNESS_ARGS
    for name in ("full", "smoke"):
        args = rec.scale(name)["args"]
        assert set(args) <= known, f"{name}: unknown args {set(args) - known}"
        assert args.get("compile") is (name == "full")  # compile at full scale, never in smoke
    claim = rec.claims[0]
    assert (claim["formula"], claim["tokens"], claim["time_min"], claim["hardware"]) == (formula, tokens, time_min, hardware)
    assert claim["person"] == "VatsaDev"
    assert claim["peer_log"] == f"nanopoor/{log}"
    assert claim["log"] == f"https://github.com/VatsaDev/NanoPoor/blob/main/logs/{log}"
    for c in rec.claims:
        notes = c["notes"]
        assert any("uint16" in n and "48.7%" in n for n in notes)
        assert any("is_causal=False" in n and "0.057" in n for n in notes)


def load_record_claims(record: str) -> list[dict]:
    return record_toml(record)["claims"]


def test_muon_carries_the_unofficial_a100_claim_and_3xlr_triples_lr():
    a100 = load_record_claims("muon")[1]
    assert (a100["time_min"], a100["tokens"], a100["formula"]) == (7.63, 6_963_200, "1024 × 10 × 4 × 170")
    assert a100["hardware"] == "1× NVIDIA A100" and a100["peer_log"] == "nanopoor/A100_run.txt"
    muon_lr = record_toml("muon")["scales"]["full"].get("args", {}).get("lr", 1e-3)
    assert record_toml("muon_3xlr")["scales"]["full"]["args"]["lr"] == pytest.approx(3 * muon_lr)


@pytest.mark.parametrize("record", SEED_RECORDS)
def test_claims_match_the_published_logs(record):
    """the claimed time is the elapsed time of the log's last eval, at the record's step count."""
    if not (SHARED / "peer-logs" / "nanopoor").is_dir():
        pytest.skip("../shared/peer-logs is not present")
    for claim in load_record_claims(record):
        text = (SHARED / "peer-logs" / claim["peer_log"]).read_text()
        steps = re.findall(r"^step: (\d+),.*elapsed time: ([\d.]+) min", text, flags=re.M)
        last_step, last_min = int(steps[-1][0]), float(steps[-1][1])
        assert last_step == int(claim["formula"].split(" × ")[-1])
        assert abs(last_min - claim["time_min"]) < 0.01
