"""muon with its newton-schulz work split evenly over the data-parallel ranks.

for each 2-d hidden weight, the nesterov momentum of its gradient is replaced by the nearest
semi-orthogonal matrix (approximately U Vᵀ of its svd) and added with a fixed rms, so every
direction of the matrix moves at the same rate. the idea and the quintic coefficients are
keller jordan's (modded-nanogpt); this is our own implementation. the iteration is
dense_muon_t4_v2's (fp16 on cuda: a t4 has no bf16 units), and so is the device-side skip of an
overflowed step (`opt.found_inf`, read with torch.where, never on the host).

what changes from dense_muon_t4_ddp_v2, which cut each shape's 6 matrices into equal shares (on
4 ranks 2, 2, 2 and 0 of every shape: one rank idle, a quarter of the gather zeros):
- a matrix and its transpose cost the same (the iteration runs on the short side), so the
  mlp's (3072, 768) and (768, 3072) matrices are one group of 12 (768, 3072) matrices.
- `plan()` deals the matrices to the ranks by cost, largest first, each to the least-loaded
  rank: on 4 ranks every rank gets 3 mlp matrices and the attention matrices balance the rest
  (the largest load is 6% over an even split, against 33% in v2).
- a rank packs its updates into one flat fp16 buffer and one all-gather hands every rank all of
  them (one collective a step instead of one per shape, no padding matrices).
- the iteration and the gather run while AdamW steps: `launch()` (momentum, iteration, gather
  started) and `apply()` (wait, add) are separate, and train.py runs launch() on a second cuda
  stream while AdamW steps on the first.
the gather copies fp16 values exactly, so every replica adds the same numbers.

`LossScaler` is torch's GradScaler schedule with one pass over the gradients where v2 took three."""
from __future__ import annotations

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


def oriented(shape) -> tuple[int, int]:
    """the shape the iteration runs on: (short side, long side)."""
    return (min(shape), max(shape))


def plan(shapes: list, world_size: int) -> list[int]:
    """the rank that orthogonalises each matrix: largest cost first, each to the least-loaded
    rank (ties to the lower rank), so every rank computes the same plan."""
    cost = [m * m * n for m, n in map(oriented, shapes)]  # the iteration's flops scale with short² · long
    load, owner = [0] * world_size, [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: (-cost[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        owner[i], load[r] = r, load[r] + cost[i]
    return owner


class Muon(torch.optim.Optimizer):
    """muon for 2-d weights, each rank orthogonalising the matrices `plan()` gives it, matrices
    of one oriented shape as one batched iteration; one group of parameters (one lr)."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1):
        params = list(params)
        if any(p.dim() != 2 for p in params):
            raise ValueError("muon takes 2-d weight matrices only; give embeddings, heads and gains to AdamW")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        if len(self.param_groups) != 1:
            raise ValueError("this muon takes one group of parameters")
        self.ns_dtype, self.rank, self.world_size = ns_dtype, rank, world_size
        self.owner = plan([p.shape for p in params], world_size)
        # this rank's matrices by oriented shape, in parameter order: what it iterates and packs
        self.own = defaultdict(list)
        for p, r in zip(params, self.owner):
            if r == rank:
                self.own[oriented(p.shape)].append(p)
        # every rank's matrices in the order its buffer holds them, and the buffer's size (elements)
        shapes = sorted({oriented(p.shape) for p in params})
        self.packed = [[p for shape in shapes for p, owner in zip(params, self.owner) if oriented(p.shape) == shape and owner == r]
                       for r in range(world_size)]
        self.numel = max(sum(p.numel() for p in ps) for ps in self.packed)

    def _momentum(self, p: torch.Tensor, group: dict, take) -> torch.Tensor:
        """the nesterov-looked-ahead momentum of p's gradient, oriented (short, long)."""
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        # buf = momentum * buf + (1 - momentum) * grad; nesterov looks one step ahead
        if take is None:
            buf.lerp_(p.grad, 1 - group["momentum"])
        else:  # a skipped step leaves the momentum as it was (an inf grad would poison it)
            buf.copy_(torch.where(take, buf.lerp(p.grad, 1 - group["momentum"]), buf))
        g = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
        return g.mT if p.size(0) > p.size(1) else g

    @torch.no_grad()
    def launch(self):
        """this rank's updates, packed, and their all-gather started: the pending state for apply()."""
        group = self.param_groups[0]
        found_inf = getattr(self, "found_inf", None)  # 0-d device tensor, nonzero: skip this step
        take = None if found_inf is None else found_inf == 0
        device = group["params"][0].device
        dtype = self.ns_dtype if device.type == "cuda" else torch.float32  # what newton_schulz returns
        local = torch.zeros(self.numel, dtype=dtype, device=device)  # (numel,) this rank's updates, flat
        offset = 0
        for shape in sorted(self.own):
            ps = self.own[shape]
            update = newton_schulz(torch.stack([self._momentum(p, group, take) for p in ps]), group["ns_steps"], self.ns_dtype)
            if take is not None:  # a skipped step moves no weight (its update is nan)
                update = torch.where(take, update, 0.0)
            local[offset: offset + update.numel()] = update.reshape(-1)  # (k, short, long) flat
            offset += update.numel()
        if self.world_size == 1:
            return local.unsqueeze(0), None
        gathered = torch.empty(self.world_size * self.numel, dtype=dtype, device=device)  # (ranks · numel,)
        work = dist.all_gather_into_tensor(gathered, local, async_op=True)
        return gathered.view(self.world_size, self.numel), work

    @torch.no_grad()
    def apply(self, pending) -> None:
        """every matrix's update added to its weight, on every rank."""
        gathered, work = pending
        if work is not None:
            work.wait()
        lr = self.param_groups[0]["lr"]
        for ps, flat in zip(self.packed, gathered.unbind(0)):
            offset = 0
            for p in ps:
                u = flat[offset: offset + p.numel()].view(oriented(p.shape))  # (short, long)
                offset += p.numel()
                # same rms per element whatever the aspect ratio: tall matrices get sqrt(m / n)
                alpha = -lr * max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_((u.mT if p.size(0) > p.size(1) else u).to(p.dtype), alpha=alpha)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        self.apply(self.launch())
        return loss


class LossScaler:
    """fp16 loss scaling with torch.amp.GradScaler's schedule and kernels (start at 2^16, halve
    after an overflow, double after 2000 clean steps), for one device. where v2 called
    GradScaler.unscale_ once per optimizer and then took a gradient norm to get one overflow
    flag for both, unscale() checks and unscales every gradient in one pass and returns the flag
    (0-d, as GradScaler's: fused AdamW subtracts it from its 0-d step counts; on the device,
    never read on the host). disabled (the cpu): scale() and
    unscale() leave the gradients as they are and the flag says whether any is not finite."""

    def __init__(self, device, enabled: bool = True, init_scale: float = 2.0 ** 16, growth_interval: int = 2000):
        self.enabled, self.growth_interval = enabled, growth_interval
        self.scale_t = torch.full((), init_scale, dtype=torch.float32, device=device)
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device=device)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_t if self.enabled else loss

    def unscale(self, params, extra=()) -> torch.Tensor:
        """every gradient, and every tensor in `extra` (gradients not held in a .grad), divided by
        the scale; the 0-d flag, 1.0 when any was inf or nan."""
        grads = [p.grad for p in params if p.grad is not None] + list(extra)
        found_inf = torch.zeros((), dtype=torch.float32, device=self.scale_t.device)
        if self.enabled:
            inv_scale = self.scale_t.double().reciprocal().float()  # as GradScaler rounds it
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale)
        else:
            for g in grads:
                found_inf += (~torch.isfinite(g)).any()
        return found_inf

    def update(self, found_inf: torch.Tensor) -> None:
        if self.enabled:
            torch._amp_update_scale_(self.scale_t, self.growth_tracker, found_inf, 2.0, 0.5, self.growth_interval)

    def state_dict(self) -> dict:
        return {"scale": self.scale_t.clone(), "growth_tracker": self.growth_tracker.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.scale_t.copy_(state["scale"])
        self.growth_tracker.copy_(state["growth_tracker"])
