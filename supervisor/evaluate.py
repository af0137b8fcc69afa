"""validation loss computed by the harness from the model's logits, in a fixed order.

the record hands over forward(x) -> logits; the harness cuts the val tokens into
non-overlapping windows of eval_seq_len inputs (targets shifted by one), runs them in file
order, and takes float32 cross-entropy over the real vocabulary (padding columns dropped).
the mean is over every predicted token, so the number does not depend on the batch size.
a full evaluation also hands one of its batches to the causality probe (supervisor.causality),
whose calls go through the same line as the evaluation's own."""
from __future__ import annotations

import math


def num_windows(tokens: int, seq_len: int) -> int:
    return max(0, (tokens - 1) // seq_len)


def window_plan(tokens: int, seq_len: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """the window ids of each of this rank's evaluation batches: windows rank::world_size, in order."""
    n = num_windows(tokens, seq_len)
    if n == 0:
        raise ValueError(f"an evaluation of {tokens} tokens holds no window of {seq_len + 1}")
    mine = list(range(rank, n, world_size))
    return [mine[b:b + batch_size] for b in range(0, len(mine), batch_size)]


def cut_windows(tokens, ids, seq_len: int):
    """(B, T + 1) windows of a 1-d token array or tensor: window w is tokens[w·T : w·T + T + 1]."""
    import numpy as np

    starts = np.asarray(ids)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    if hasattr(tokens, "device"):
        import torch

        return tokens[torch.as_tensor(starts, device=tokens.device)]
    return np.asarray(tokens)[starts]


class TensorWindows:
    """an evaluation over tokens already in this process (the progress slice)."""

    def __init__(self, tokens, seq_len: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.tokens, self.seq_len = tokens, seq_len
        self.plan = window_plan(tokens.numel(), seq_len, batch_size, rank, world_size)
        self._chunk = None

    def inputs(self, i: int):
        self._chunk = cut_windows(self.tokens, self.plan[i], self.seq_len)  # (B, T + 1)
        return self._chunk[:, :-1]

    def targets(self, i: int):
        return self._chunk[:, 1:]

    def pool(self):
        return self.tokens


def claim_loss(model, source, vocab_size: int, probe=None, keep=None, device=None, probe_models=None) -> tuple[float, int, float]:
    """(mean loss, predicted tokens, forward ms) of the claim's model over an evaluation source,
    its batches in the source's plan order (the scorer shuffles it).

    probe (a causality.Probe): the batches it picks (one at random, the last if shorter) are also
    run through the probe calls. keep: a dict the scorer passes to remember a few batches' logits
    at sampled positions ({batch index: positions}), filled with those logits, so the same
    batches can be asked for again later and compared (a forward that keeps state between calls
    answers differently)."""
    import time

    import torch

    batches = source.plan
    probe_at = probe.pick(batches) if probe is not None else set()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    forward_ns = 0
    with torch.no_grad():
        for i in range(len(batches)):
            x = source.inputs(i)                      # (B, T)
            calls = [("eval", x, None)] + (probe.calls(x, source.pool()) if i in probe_at else [])
            base = None
            for kind, xin, cuts in calls:
                t0 = time.perf_counter_ns()
                logits = (probe_models or {}).get(kind, model)(xin)   # (B, T, V_padded)
                forward_ns += time.perf_counter_ns() - t0
                if logits.shape[:2] != x.shape or logits.shape[-1] < vocab_size:
                    raise ValueError(f"forward returned logits of shape {tuple(logits.shape)}; expected ({x.shape[0]}, {x.shape[1]}, >= {vocab_size})")
                if kind != "eval":
                    probe.observe(kind, cuts, base, logits)
                    continue
                if len(calls) > 1:  # a copy: the next call may reuse the output buffer
                    base = logits[..., :vocab_size].clone()
                if keep is not None and i in keep:
                    keep[i] = (keep[i][0], logits[:, keep[i][0], :vocab_size].float().cpu())
                loss_sum += cross_entropy_sum(logits, source.targets(i), vocab_size)
                count += x.numel()
            del base
    mean = (loss_sum / count).item()
    return (mean if math.isfinite(mean) else float("nan")), int(count.item()), forward_ns / 1e6


def ce_sum(logits, y, vocab_size: int):
    """float32 cross-entropy summed over rows: logits (N, V_padded) in the model's dtype, y (N,)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :vocab_size].float(), y, reduction="sum")


def cross_entropy_sum(logits, y, vocab_size: int):
    """sum over every position of float32 cross-entropy over the real vocabulary, as a float64 scalar.

    logits (B, T, V_padded), y (B, T). rows go through in chunks of at most ~128M logits, so the
    float32 copy stays small (a T4 has 15 GiB): a whole batch's float32 logits would be gigabytes."""
    import torch

    flat, targets = logits.flatten(0, 1), y.flatten()     # (B·T, V_padded), (B·T,)
    total = torch.zeros((), dtype=torch.float64, device=flat.device)
    rows = max(1, (1 << 27) // flat.shape[-1])
    for r in range(0, flat.shape[0], rows):
        total += ce_sum(flat[r:r + rows], targets[r:r + rows], vocab_size).double()
    return total
