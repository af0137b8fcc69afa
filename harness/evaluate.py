"""validation loss computed by the harness from the model's logits, in a fixed order.

the record hands over forward(x) -> logits; the harness cuts the val tokens into
non-overlapping windows of eval_seq_len inputs (targets shifted by one), runs them in file
order, and takes float32 cross-entropy over the real vocabulary (padding columns dropped).
the mean is over every predicted token, so the number does not depend on the batch size.
a full evaluation also hands one of its batches to the causality probe (harness.causality),
whose calls go through the same line as the evaluation's own."""
from __future__ import annotations

import math


def num_windows(tokens: int, seq_len: int) -> int:
    return max(0, (tokens - 1) // seq_len)


def val_loss(forward, val: "torch.Tensor", seq_len: int, batch_size: int, vocab_size: int,
             rank: int = 0, world_size: int = 1, probe=None) -> tuple[float, int]:
    """(mean loss, predicted tokens) over val (1-d int64 tensor on the model's device).

    under torchrun each rank takes windows rank::world_size and the sums are all-reduced.
    probe (a causality.Probe): one batch, picked at random, is also run through the probe calls,
    from the same line as the evaluation's own calls."""
    import torch
    import torch.nn.functional as F

    n = num_windows(val.numel(), seq_len)
    if n == 0:
        raise ValueError(f"val split of {val.numel()} tokens holds no window of {seq_len + 1}")
    mine = list(range(rank, n, world_size))
    batches = [mine[b:b + batch_size] for b in range(0, len(mine), batch_size)]
    probe_at = probe.pick((n // world_size) // batch_size) if probe is not None else -1
    loss_sum = torch.zeros((), dtype=torch.float64, device=val.device)
    count = torch.zeros((), dtype=torch.float64, device=val.device)
    with torch.no_grad():
        for i, ids in enumerate(batches):
            idx = torch.tensor(ids, device=val.device)
            starts = idx[:, None] * seq_len + torch.arange(seq_len + 1, device=val.device)[None, :]
            chunk = val[starts]                       # (B, T+1)
            x, y = chunk[:, :-1], chunk[:, 1:]        # (B, T) each
            calls = [("eval", x, None)] + (probe.calls(x) if i == probe_at else [])
            base = None
            for kind, xin, cuts in calls:
                logits = forward(xin)                 # (B, T, V_padded); one call site for eval and probe
                if logits.shape[:2] != x.shape or logits.shape[-1] < vocab_size:
                    raise ValueError(f"forward returned logits of shape {tuple(logits.shape)}; expected ({x.shape[0]}, {x.shape[1]}, >= {vocab_size})")
                if kind != "eval":
                    probe.observe(kind, cuts, base, logits)
                    continue
                if len(calls) > 1:  # a copy: compiled graphs may reuse the output buffer on the next call
                    base = logits[..., :vocab_size].clone()
                # rows in chunks of at most ~64M logits keep the float32 copy small (a T4 has 15 GiB)
                rows = max(1, (1 << 26) // (x.shape[1] * logits.shape[-1]))
                for r in range(0, x.shape[0], rows):
                    lr = logits[r:r + rows, :, :vocab_size].float().flatten(0, 1)
                    loss_sum += F.cross_entropy(lr, y[r:r + rows].flatten(), reduction="sum").double()
                count += y.numel()
            del base
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(loss_sum)
        dist.all_reduce(count)
    if probe is not None:
        probe.reduce(world_size, val.device)
    mean = (loss_sum / count).item()
    return (mean if math.isfinite(mean) else float("nan")), int(count.item())
