"""muon: momentum whose update is orthogonalised by a newton-schulz iteration.

for each 2-d hidden weight, the nesterov momentum of its gradient is replaced by the nearest
semi-orthogonal matrix (approximately U Vᵀ of its svd) and added with a fixed rms, so every
direction of the matrix moves at the same rate. the idea and the quintic coefficients are
keller jordan's (modded-nanogpt); this is our own implementation.

the iteration runs in float16 by default (float32 selectable). a t4 has fp16 tensor cores but no
bf16 units (torch emulates bf16 there), so the bf16 iteration of the h100 speedruns would be
slow on the hardware this record targets, and float32 runs on its ~8 TFLOP/s simt units. fp16
is safe here: the input is normalised to frobenius norm <= 1 first, so every intermediate stays
within a few units of zero (fp16 overflows at 65504), and fp16 keeps three more mantissa bits
than bf16. on an h100 a bf16 iteration would be as fast; we keep t4 semantics everywhere.

the update is scale-free (the iteration normalises its input), so a loss-scaled gradient would
give the same update as an unscaled one, and an overflowed one garbage: the training loop must
GradScaler.unscale_() this optimizer and skip the step when the gradients hold inf/nan.

the skip never stops the host: a loop that sets `opt.found_inf` (a 0-d tensor on the device,
nonzero when the step must be skipped) gets the momentum and the weights selected on the device
with torch.where, the way torch's fused AdamW reads the same attribute. without it (`found_inf`
unset) every step is taken. in dense_muon_t4 the skip was a python `if` on a device value: one
host sync per step, during which the gpu ran dry."""
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
    """muon for 2-d weights. matrices of one shape are orthogonalised together, as one batched
    iteration (fewer, larger matmuls)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32):
        params = list(params)
        if any(p.dim() != 2 for p in params):
            raise ValueError("muon takes 2-d weight matrices only; give embeddings, heads and gains to AdamW")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        found_inf = getattr(self, "found_inf", None)  # 0-d device tensor, nonzero: skip this step
        take = None if found_inf is None else found_inf == 0
        for group in self.param_groups:
            by_shape = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    by_shape[p.shape].append(p)
            for shape, ps in by_shape.items():
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
                if group["nesterov"]:
                    g = torch.stack(grads).lerp_(torch.stack(bufs), group["momentum"])  # (k, m, n)
                else:
                    g = torch.stack(bufs)
                update = newton_schulz(g, group["ns_steps"], self.ns_dtype)  # (k, m, n)
                # same rms per element whatever the aspect ratio: tall matrices get sqrt(m / n)
                scale = max(1.0, shape[0] / shape[1]) ** 0.5
                if take is not None:  # a skipped step moves no weight (its update is nan)
                    update = torch.where(take, update, 0.0)
                for p, u in zip(ps, update.unbind(0)):
                    p.add_(u.to(p.dtype), alpha=-group["lr"] * scale)
        return loss
