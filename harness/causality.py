"""the causality check, run untimed on every evaluated model.

a language model's logits at position t may depend on tokens 0..t only. we feed a val window,
then the same window with every token after t replaced by random ones, and measure how far the
logits at positions <= t moved. we also replace a whole other batch row and measure row 0: a
model that pools statistics across the batch leaks too. a repeat of the unchanged input gives
the noise floor (nondeterministic kernels); a leak must stand clearly above it."""
from __future__ import annotations

ABS_TOLERANCE = 1e-2   # logits units; the seed's leak measured 0.057 with a single change
NOISE_FACTOR = 4.0


def check_causality(forward, window: "torch.Tensor", vocab_size: int, seed: int = 0) -> dict:
    """window: (2, T) int64 on the model's device. returns the event fields."""
    import torch

    B, T = window.shape
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand_like(n: int) -> torch.Tensor:
        return torch.randint(0, vocab_size, (n,), generator=gen).to(window.device)

    def run(x):
        with torch.no_grad():
            return forward(x)[..., :vocab_size].float()

    base = run(window)
    noise = (run(window) - base).abs().max().item()
    positions = sorted({max(0, T // 4 - 1), T // 2 - 1, (3 * T) // 4 - 1})
    max_leak, worst = 0.0, None
    for t in positions:
        x = window.clone()
        x[:, t + 1:] = rand_like((T - t - 1) * B).view(B, T - t - 1)
        leak = (run(x)[:, : t + 1] - base[:, : t + 1]).abs().max().item()
        if leak > max_leak:
            max_leak, worst = leak, t
    cross = 0.0
    if B > 1:
        x = window.clone()
        x[1:] = rand_like((B - 1) * T).view(B - 1, T)
        cross = (run(x)[0] - base[0]).abs().max().item()
    tol = ABS_TOLERANCE + NOISE_FACTOR * noise
    return {
        "passed": bool(max_leak <= tol and cross <= tol),
        "max_leak": max_leak,
        "worst_position": worst,
        "cross_batch_leak": cross,
        "noise": noise,
        "tolerance": tol,
        "positions": positions,
        "seq_len": T,
    }
