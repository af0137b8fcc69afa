"""validation loss computed by the harness from the model's logits, in a fixed order.

the record hands over forward(x) -> logits; the harness cuts the val tokens into
non-overlapping windows of eval_seq_len inputs (targets shifted by one), runs them in file
order, and takes float32 cross-entropy over the real vocabulary (padding columns dropped).
the mean is over every predicted token, so the number does not depend on the batch size.
a full evaluation also hands one of its batches to the causality probe (supervisor.causality),
whose calls go through the same line as the evaluation's own."""
from __future__ import annotations

import math

# the compiled loss, one per process (filled on the first cuda evaluation; None: compiling failed)
_COMPILED: dict = {}


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


class StreamWindows:
    """an evaluation whose tokens stay in the data process: each batch's inputs are served when it
    is evaluated and its targets only once the forward has returned, so no token the model is
    about to be scored on is anywhere in this process while the record's code runs."""

    def __init__(self, client, kind: str, tokens: int, seq_len: int, batch_size: int, device, rank: int = 0,
                 world_size: int = 1):
        self.client, self.kind, self.device = client, kind, device
        self.plan = window_plan(tokens, seq_len, batch_size, rank, world_size)
        self._seen: list = []
        self.first_row = None

    def inputs(self, i: int):
        import torch

        x = torch.from_numpy(self.client.eval_inputs(self.kind)).to(self.device)   # (B, T)
        self._seen.append(x.flatten())
        if self.first_row is None:
            self.first_row = x[:1]
        return x

    def targets(self, i: int):
        import torch

        return torch.from_numpy(self.client.eval_targets(self.kind)).to(self.device)

    def pool(self):
        import torch

        return torch.cat(self._seen)   # only tokens already shown: replacement tokens for the probe


def val_loss(forward, source, vocab_size: int, world_size: int = 1, probe=None, device=None) -> tuple[float, int]:
    """(mean loss, predicted tokens) of forward over an evaluation source (TensorWindows or
    StreamWindows), batch by batch in order.

    under torchrun each rank's source holds windows rank::world_size and the sums are all-reduced.
    probe (a causality.Probe): the batches it picks (one at random, the last if shorter) are also
    run through the probe calls, from the same line as the evaluation's own calls."""
    import torch

    batches = source.plan
    probe_at = probe.pick(len(batches), len(batches[-1]) < len(batches[0])) if probe is not None and batches else set()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for i in range(len(batches)):
            x = source.inputs(i)                      # (B, T)
            calls = [("eval", x, None)] + (probe.calls(x, source.pool()) if i in probe_at else [])
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
                y = source.targets(i)                 # (B, T): served after the forward returned
                loss_sum += cross_entropy_sum(logits, y, vocab_size)
                count += y.numel()
            del base
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(loss_sum)
        dist.all_reduce(count)
    if probe is not None:
        probe.reduce(world_size, device)
    mean = (loss_sum / count).item()
    return (mean if math.isfinite(mean) else float("nan")), int(count.item())


def ce_sum(logits, y, vocab_size: int):
    """float32 cross-entropy summed over rows: logits (N, V_padded) in the model's dtype, y (N,)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits[:, :vocab_size].float(), y, reduction="sum")


def cross_entropy_sum(logits, y, vocab_size: int):
    """sum over every position of float32 cross-entropy over the real vocabulary, as a float64 scalar.

    logits (B, T, V_padded), y (B, T). on cuda the loss is compiled, so the float32 upcast happens
    inside one fused reduction instead of as a float32 copy of the logits (100k columns: the copy,
    log-softmax and gather moved ~8× the bytes of the fp16 logits and took most of an eval's time
    beyond the forward). elsewhere, and if compiling fails, rows go through eagerly in chunks of at
    most ~64M logits so the float32 copy stays small (a T4 has 15 GiB)."""
    import torch

    flat, targets = logits.flatten(0, 1), y.flatten()     # (B·T, V_padded), (B·T,)
    if flat.is_cuda:
        fn = _COMPILED.get("ce", ...)
        if fn is ...:
            fn = _COMPILED["ce"] = torch.compile(ce_sum, dynamic=True)
        if fn is not None:
            try:
                return fn(flat, targets, vocab_size).double()
            except Exception as e:  # no triton, an old gpu: the eager path gives the same number
                _COMPILED["ce"] = None
                print(f"harness: compiled loss unavailable ({type(e).__name__}); evaluating eagerly", flush=True)
    total = torch.zeros((), dtype=torch.float64, device=flat.device)
    rows = max(1, (1 << 26) // flat.shape[-1])
    for r in range(0, flat.shape[0], rows):
        total += ce_sum(flat[r:r + rows], targets[r:r + rows], vocab_size).double()
    return total
