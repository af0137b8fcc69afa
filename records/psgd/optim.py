"""PSGD Kron (Xi-Lin Li's preconditioned SGD with Kronecker-factored preconditioners), written
for 2-d weights.

for a weight W (m, n) with momentum G the preconditioner is P = (Qr^T Qr) kron (Ql^T Ql) with
Ql (m, m) and Qr (n, n) upper-triangular (or diagonal, for a side longer than max_dense_dim),
so the update is Ql^T Ql G Qr^T Qr. P is fitted online so that it whitens the gradient:
with a random probe V, A = Ql G Qr^T and B = Ql^-T V Qr^-1, the criterion is driven towards
A A^T = B B^T (and A^T A = B^T B), by a normalised step on the Lie group of triangular
matrices. the fit runs with probability p each step (1 for the first `flat_steps`, then
decaying to min_prob), which is where PSGD's cost goes."""
import math

import torch


def _norm_lower_bound(S):
    """a cheap lower bound on the spectral norm of the symmetric psd matrix S: one step of
    power iteration from S's largest column (exact for rank one, never above the true norm)."""
    scale = S.abs().max().clamp(min=1e-30)  # no branch on the value: no device sync per matrix
    S = S / scale
    col = S[:, torch.argmax((S * S).sum(dim=0))]
    x = col @ S
    x = x / x.norm().clamp(min=1e-30)
    return (S @ x).norm() * scale


def _fit_side(Q, AA, BB, precond_lr: float, tiny: float = 1e-30):
    """one step of Q towards whitening on one side: AA = A A^T and BB = B B^T for that side
    (full matrices for a triangular Q, their diagonals for a diagonal Q)."""
    if Q.dim() == 1:
        step = precond_lr / (AA + BB).max().clamp(min=tiny)
        Q.sub_(step * (AA - BB) * Q)
    else:
        step = precond_lr / _norm_lower_bound(AA + BB).clamp(min=tiny)
        Q.sub_(step * torch.triu(AA - BB) @ Q)


class Kron(torch.optim.Optimizer):
    """momentum (debiased), preconditioned by the fitted Kronecker factors, clipped to an rms of
    1.1 (a fresh preconditioner can be badly scaled), then applied with decoupled weight decay."""

    def __init__(self, params, lr: float = 3e-4, b1: float = 0.9, weight_decay: float = 0.0,
                 precond_lr: float = 0.1, max_dense_dim: int = 8192, flat_steps: int = 500,
                 prob_decay: float = 0.001, min_prob: float = 0.03, max_update_rms: float = 1.1):
        defaults = dict(lr=lr, b1=b1, weight_decay=weight_decay, precond_lr=precond_lr, max_dense_dim=max_dense_dim,
                        flat_steps=flat_steps, prob_decay=prob_decay, min_prob=min_prob, max_update_rms=max_update_rms)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Kron takes 2-d weights; got a tensor of shape {tuple(p.shape)}")

    @staticmethod
    def update_probability(step: int, group: dict) -> float:
        """1 for the first flat_steps, then exp decay to min_prob (the schedule of kron_torch)."""
        p = math.exp(-group["prob_decay"] * max(0, step - group["flat_steps"]))
        return max(group["min_prob"], min(1.0, p))

    def _init_state(self, p, group):
        state = self.state[p]
        state["step"] = 0
        state["momentum"] = torch.zeros_like(p, dtype=torch.float32)
        for side, dim in (("Ql", p.size(0)), ("Qr", p.size(1))):
            dense = dim <= group["max_dense_dim"]
            state[side] = torch.eye(dim, device=p.device) if dense else torch.ones(dim, device=p.device)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:  # e.g. a routed expert no token chose in this step
                    continue
                state = self.state[p] if self.state[p] else self._init_state(p, group)
                state["step"] += 1
                t = state["step"]
                m = state["momentum"]
                m.mul_(group["b1"]).add_(p.grad.float(), alpha=1 - group["b1"])
                G = m / (1 - group["b1"] ** t)
                Ql, Qr = state["Ql"], state["Qr"]
                if torch.rand(()) < self.update_probability(t, group):
                    self._fit(Ql, Qr, G, group["precond_lr"])
                update = self._precondition(Ql, Qr, G)
                rms = update.square().mean().sqrt()
                update.mul_(torch.clamp(group["max_update_rms"] / (rms + 1e-6), max=1.0))
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-group["lr"])

    @staticmethod
    def _fit(Ql, Qr, G, precond_lr: float):
        V = torch.randn_like(G)
        # A = Ql G Qr^T
        A = (Ql[:, None] * G) if Ql.dim() == 1 else Ql @ G
        A = (A * Qr[None, :]) if Qr.dim() == 1 else A @ Qr.T
        # B = Ql^-T V Qr^-1, by triangular solves (division for a diagonal side)
        B = (V / Qr[None, :]) if Qr.dim() == 1 else torch.linalg.solve_triangular(Qr, V, upper=True, left=False)
        B = (B / Ql[:, None]) if Ql.dim() == 1 else torch.linalg.solve_triangular(Ql.T, B, upper=False)
        if Ql.dim() == 1:
            _fit_side(Ql, (A * A).sum(1), (B * B).sum(1), precond_lr)
        else:
            _fit_side(Ql, A @ A.T, B @ B.T, precond_lr)
        if Qr.dim() == 1:
            _fit_side(Qr, (A * A).sum(0), (B * B).sum(0), precond_lr)
        else:
            _fit_side(Qr, A.T @ A, B.T @ B, precond_lr)

    @staticmethod
    def _precondition(Ql, Qr, G):
        # Ql^T Ql G Qr^T Qr
        X = (Ql * Ql)[:, None] * G if Ql.dim() == 1 else Ql.T @ (Ql @ G)
        return X * (Qr * Qr)[None, :] if Qr.dim() == 1 else (X @ Qr.T) @ Qr
