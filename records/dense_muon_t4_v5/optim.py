"""muon and AdamW for dense_muon_t4_v5, their parameter groups, the schedule and the fp16 step.

muon: momentum whose update is orthogonalised by a newton-schulz iteration. for each 2-d hidden
weight, the nesterov momentum of its gradient is replaced by the nearest semi-orthogonal matrix
(approximately U Vᵀ of its svd) and added with a fixed rms, so every direction of the matrix
moves at the same rate. the idea and the quintic coefficients are keller jordan's
(modded-nanogpt); this is our own implementation, v4's with two changes:
- a weight may ask to be orthogonalised in equal row blocks (`p.ns_split = 3` on the fused qkv
  matrix: q, k and v each get their own orthogonal update, as if they were three matrices);
- the momentum is a group setting the schedule moves (a lower momentum early, as modded-nanogpt's
  warm-up from 0.85 to 0.95 does; a run of a few dozen steps stays near the start value).

the iteration runs in float16 (float32 selectable): a t4 has fp16 tensor cores and no bf16 units.
fp16 is safe because the input is normalised to frobenius norm <= 1 first. the update is
scale-free, so the loop must GradScaler.unscale_() first and skip a step whose gradients
overflowed; `opt.found_inf` (a 0-d device tensor) makes that skip without a host sync, the way
torch's fused AdamW reads the same attribute.

the rest of the file is what train.py and benchmarks/t4_record_sweep.py share, so the sweep
trains exactly what the record trains: which parameter goes to which optimizer at which learning
rate, the learning-rate and momentum schedule, and one optimizer step under the loss scaler."""
from __future__ import annotations

from collections import defaultdict

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # quintic: pushes every singular value into ~[0.7, 1.2] in 5 steps


def newton_schulz(G: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32, eps: float = 1e-7) -> torch.Tensor:
    """G (k, m, n) -> approximately the orthogonal factor U Vᵀ of each matrix, iterated in `dtype`."""
    a, b, c = NS_COEFFS
    X = G.float()
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the short side: X Xᵀ is (k, min, min)
        X = X.mT
    # spectral norm <= frobenius norm <= 1: every later product stays bounded, even in fp16
    X = (X / (X.norm(dim=(-2, -1), keepdim=True) + eps)).to(dtype)
    for _ in range(steps):
        A = torch.bmm(X, X.mT)  # (k, m, m)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b·A + c·A²
        X = torch.baddbmm(X, B, X, beta=a, alpha=1.0)  # a·X + B·X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """muon for 2-d weights. matrices of one shape (after splitting) are orthogonalised together,
    as one batched iteration (fewer, larger matmuls)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32, split: bool = True):
        params = list(params)
        if any(p.dim() != 2 for p in params):
            raise ValueError("muon takes 2-d weight matrices only; give embeddings, heads and gains to AdamW")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype, self.split = ns_dtype, split

    def _blocks(self, p) -> int:
        return getattr(p, "ns_split", 1) if self.split else 1

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        found_inf = getattr(self, "found_inf", None)  # 0-d device tensor, nonzero: skip this step
        take = None if found_inf is None else found_inf == 0
        for group in self.param_groups:
            by_shape = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    by_shape[(p.shape, self._blocks(p))].append(p)
            for (shape, blocks), ps in by_shape.items():
                bufs = []
                for p in ps:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    bufs.append(state["momentum_buffer"])
                grads = [p.grad for p in ps]
                # buf = momentum * buf + (1 - momentum) * grad; nesterov looks one step ahead
                for buf, grad in zip(bufs, grads):
                    if take is None:
                        buf.lerp_(grad, 1 - group["momentum"])
                    else:  # a skipped step leaves the momentum as it was (an inf grad would poison it)
                        buf.copy_(torch.where(take, buf.lerp(grad, 1 - group["momentum"]), buf))
                g = torch.stack(grads).lerp_(torch.stack(bufs), group["momentum"]) if group["nesterov"] else torch.stack(bufs)
                rows, cols = shape[0] // blocks, shape[1]
                g = g.view(len(ps) * blocks, rows, cols)  # (k·blocks, rows, cols)
                update = newton_schulz(g, group["ns_steps"], self.ns_dtype).view(len(ps), *shape)
                # same rms per element whatever the aspect ratio: tall matrices get sqrt(rows / cols)
                scale = max(1.0, rows / cols) ** 0.5
                if take is not None:  # a skipped step moves no weight (its update is nan)
                    update = torch.where(take, update, 0.0)
                for p, u in zip(ps, update.unbind(0)):
                    p.add_(u.to(p.dtype), alpha=-group["lr"] * scale)
        return loss


# -- what goes where ----------------------------------------------------------------------------
def build_optimizers(model, hp, on_cuda: bool) -> tuple[torch.optim.AdamW, Muon]:
    """AdamW for the embedding, the value embeddings, the head, the logit bias and every small
    parameter (gains, mixing scalars, skip weights, the attention gates); muon for the blocks'
    matrices (and the low-rank head's first matrix). hp: the record's Hyperparameters."""
    gates = [p for n, p in model.blocks.named_parameters() if n.endswith("attn.gate")]
    hidden = [p for n, p in model.blocks.named_parameters() if p.dim() == 2 and not n.endswith("attn.gate")]
    if model.cfg.head_rank:
        hidden.append(model.head_down.weight)
    bias = [model.logit_bias] if model.logit_bias is not None else []
    small = [p for p in model.parameters() if p.dim() < 2 and not any(p is b for b in bias)] + gates
    groups = [{"params": [model.embed.weight], "lr": hp.embed_lr, "name": "embed"},
              {"params": list(model.value_embeds.parameters()), "lr": hp.value_embed_lr, "name": "value_embeds"},
              {"params": [model.lm_head.weight], "lr": hp.head_lr, "name": "head"},
              {"params": small, "lr": hp.scalar_lr, "name": "scalars"},
              {"params": bias, "lr": hp.bias_lr, "name": "logit_bias"}]
    if hp.ns_dtype not in ("float32", "float16"):
        raise ValueError(f"ns_dtype must be float32 or float16 (a t4 has no bf16 units), not {hp.ns_dtype!r}")
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], betas=(hp.adam_beta1, hp.adam_beta2), eps=hp.adam_eps,
                              weight_decay=0.0, fused=on_cuda)
    muon = Muon(hidden, lr=hp.muon_lr, momentum=hp.muon_momentum_start, ns_steps=hp.ns_steps,
                ns_dtype=getattr(torch, hp.ns_dtype) if on_cuda else torch.float32, split=hp.muon_split_qkv)
    for opt in (adamw, muon):
        for group in opt.param_groups:
            group["peak_lr"] = group["lr"]
    return adamw, muon


# -- the schedule -------------------------------------------------------------------------------
def lr_factor(step: int, steps: int, hp) -> float:
    """the multiplier of every learning rate at 1-based `step` of `steps`: an optional linear
    warm-up, a hold, then a linear cool-down over the last cooldown_frac of the run towards
    final_lr_frac. the cool-down is read at the step's start (step - 1), so the last step still
    moves the weights (v4's last step had lr 0)."""
    if step <= hp.warmup_steps:
        return step / hp.warmup_steps
    progress = (step - 1) / steps  # 0 at the first step, < 1 at the last
    if progress < 1.0 - hp.cooldown_frac:
        return 1.0
    left = (1.0 - progress) / hp.cooldown_frac  # 1 -> 1/(steps·cooldown_frac) over the cool-down
    return hp.final_lr_frac + (1.0 - hp.final_lr_frac) * left


def muon_momentum(step: int, hp) -> float:
    """muon's momentum at 1-based `step`: linear from muon_momentum_start to muon_momentum over
    momentum_warmup_steps (modded-nanogpt's warm-up is 300 steps: a short run stays near the start)."""
    frac = min((step - 1) / hp.momentum_warmup_steps, 1.0) if hp.momentum_warmup_steps else 1.0
    return (1.0 - frac) * hp.muon_momentum_start + frac * hp.muon_momentum


def attention_window(step: int, steps: int, hp) -> int:
    """the windowed layers' window at 1-based `step`: linear from window_start to window_end (tokens)."""
    frac = (step - 1) / max(1, steps - 1)
    return int(round(hp.window_start + (hp.window_end - hp.window_start) * frac))


def set_schedule(model, adamw, muon, step: int, steps: int, hp) -> None:
    factor = lr_factor(step, steps, hp)
    for opt in (adamw, muon):
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * factor
    for group in muon.param_groups:
        group["momentum"] = muon_momentum(step, hp)
    if model.cfg.window_layers:
        model.window.fill_(attention_window(step, steps, hp))  # in place, on the device: no recompile, no sync


# -- one optimizer step under the fp16 loss scaler ----------------------------------------------
def optimizer_step(model, optimizers, scaler, on_cuda: bool) -> torch.Tensor:
    """unscale, then every optimizer steps, or none when a gradient overflowed; returns the 0-d
    skip flag (1.0: skipped) without reading it back on cuda."""
    # muon's update is scale-free: it must see the true gradients, and none after an overflow
    for opt in optimizers:
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))  # measures, never clips
    found_inf = (~torch.isfinite(grad_norm)).float()  # 0-d, stays on the device
    if on_cuda:
        for opt in optimizers:  # fused AdamW and our muon both skip on this flag, no sync
            opt.found_inf = found_inf
            opt.step()
            del opt.found_inf
    elif not found_inf:  # the cpu's AdamW is not fused and takes no flag; a sync costs nothing there
        for opt in optimizers:
            opt.step()
    scaler.update()  # lowers the loss scale after an overflow
    model.zero_grad(set_to_none=True)
    return found_inf
