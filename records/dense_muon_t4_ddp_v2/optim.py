"""muon with its newton-schulz work shared over the data-parallel ranks.

for each 2-d hidden weight, the nesterov momentum of its gradient is replaced by the nearest
semi-orthogonal matrix (approximately U Vᵀ of its svd) and added with a fixed rms, so every
direction of the matrix moves at the same rate. the idea and the quintic coefficients are
keller jordan's (modded-nanogpt); this is our own implementation. the iteration is
dense_muon_t4_v2's (fp16 on cuda: a t4 has no bf16 units), and so is the device-side skip of an
overflowed step (`opt.found_inf`, read with torch.where, never on the host).

what is new: every rank holds the same averaged gradients, and in dense_muon_t4_ddp every rank
orthogonalised every matrix, a cost that does not shrink with more gpus. here the matrices of
one shape are cut into world_size equal shares (the last padded with zeros); a rank keeps the
momentum of its own share only, orthogonalises it, and an all-gather hands every rank all the
updates, which each applies to its full replica. the updates are the same numbers one rank
computes (the gather copies fp16 values exactly), so the replicas stay identical. each shape's
gather runs on the communication stream while the next shape is orthogonalised.

`launch()` (momentum, iteration, gathers started) and `apply()` (wait, add) are the two halves
of `step()`, separate so a profile can time them."""
from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.distributed as dist

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
    """muon for 2-d weights; matrices of one shape are orthogonalised as one batched iteration,
    each rank its share of them (rank r: matrices r·share … (r+1)·share − 1 of each shape)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1):
        params = list(params)
        if any(p.dim() != 2 for p in params):
            raise ValueError("muon takes 2-d weight matrices only; give embeddings, heads and gains to AdamW")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype, self.rank, self.world_size = ns_dtype, rank, world_size

    def _own_updates(self, ps: list, group: dict, take) -> torch.Tensor | None:
        """momentum and newton-schulz for this rank's matrices ps: (len(ps), m, n), or None."""
        if not ps:
            return None
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
        update = newton_schulz(g, group["ns_steps"], self.ns_dtype)  # (k, m, n)
        if take is not None:  # a skipped step moves no weight (its update is nan)
            update = torch.where(take, update, 0.0)
        return update

    @torch.no_grad()
    def launch(self) -> list:
        """this rank's share of the updates, and their all-gathers started: the pending list for apply()."""
        found_inf = getattr(self, "found_inf", None)  # 0-d device tensor, nonzero: skip this step
        take = None if found_inf is None else found_inf == 0
        pending = []
        for group in self.param_groups:
            by_shape = defaultdict(list)
            for p in group["params"]:
                if p.grad is not None:
                    by_shape[p.shape].append(p)
            for shape, ps in by_shape.items():
                # same rms per element whatever the aspect ratio: tall matrices get sqrt(m / n)
                alpha = -group["lr"] * max(1.0, shape[0] / shape[1]) ** 0.5
                share = math.ceil(len(ps) / self.world_size)
                own = self._own_updates(ps[self.rank * share:(self.rank + 1) * share], group, take)
                if self.world_size == 1:
                    pending.append((ps, own, alpha, None))
                    continue
                dtype = self.ns_dtype if ps[0].is_cuda else torch.float32  # what newton_schulz returns
                local = torch.zeros((share, *shape), dtype=dtype, device=ps[0].device)
                if own is not None:
                    local[: own.size(0)] = own  # the last shares are padded with zeros
                gathered = torch.empty((share * self.world_size, *shape), dtype=dtype, device=ps[0].device)
                work = dist.all_gather_into_tensor(gathered, local, async_op=True)
                pending.append((ps, gathered, alpha, work))
        return pending

    @torch.no_grad()
    def apply(self, pending: list) -> None:
        """every matrix's update added to its weight, on every rank."""
        for ps, update, alpha, work in pending:
            if work is not None:
                work.wait()
            for p, u in zip(ps, update.unbind(0)):  # the padding rows past len(ps) are dropped
                p.add_(u.to(p.dtype), alpha=alpha)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.apply(self.launch())
        return loss
