"""Muon for the hidden matrices: heavy-ball momentum, then the update replaced by the nearest
semi-orthogonal matrix (all singular values ~1), found by a Newton-Schulz iteration.

the iteration runs in float32: a t4 has no native bf16 (torch reports bf16 as supported there
because it is emulated, and emulated bf16 matmuls are slower than fp32 ones), so the bf16
iteration modded-nanogpt uses on h100s would be both slower and less exact here."""
import torch


def newton_schulz5(G, steps: int = 5, eps: float = 1e-7):
    """approximately orthogonalise G (..., m, n): U V^T of its svd, with singular values pushed
    into roughly [0.7, 1.2]. the quintic x -> a x + b x^3 + c x^5 with (a, b, c) =
    (3.4445, -4.7750, 2.0315) is tuned to raise small singular values as fast as possible."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.float()
    tall = X.size(-2) > X.size(-1)
    if tall:  # iterate on the wide side: X @ X^T is then the smaller gram matrix
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)  # spectral norm <= frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if tall else X


class Muon(torch.optim.Optimizer):
    """for 2-d weights only. lr is in units of the orthogonalised update's spectral norm; the
    update of a tall matrix (rows > cols) is scaled by sqrt(rows / cols), as in keller jordan's
    muon, so every matrix moves its outputs by a comparable amount."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-d weights; got a tensor of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:  # e.g. a routed expert no token chose in this step
                    continue
                g = p.grad.float()
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(g)
                g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                update = newton_schulz5(g, group["ns_steps"])
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-lr * scale)
