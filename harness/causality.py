"""the causality check, run on every full evaluation, inside it.

a language model's logits at position t may depend on tokens 0..t only. the probe takes one
batch of the evaluation itself (same shape, same call site, chosen at random), and runs the
model again on copies of it:

- the same batch again: the noise floor (nondeterministic kernels);
- each row with every token after a random position t_r replaced by random tokens: the logits
  at positions <= t_r must not move (a model that peeks at x[t+1], or mixes statistics over the
  whole sequence, moves them);
- every row but the first replaced: the first row must not move (pooling across the batch).

positions and the batch come from the operating system's randomness, and the probe calls are
indistinguishable by shape or call stack from the evaluation's own, so a record cannot answer
the probe differently from the evaluation. a leak must stand clearly above the noise floor."""
from __future__ import annotations

import random

ABS_TOLERANCE = 1e-2   # logits units; the seed's leak measured 0.057 with a single change
NOISE_FACTOR = 4.0
SUFFIX_CALLS = 2       # probe calls with per-row random cut positions (B positions tested per call)


class Probe:
    """collects the leak measurements of one or more evaluations (val, held-out)."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self._sys = random.SystemRandom()   # not the seeded generators the record can replay
        self._gen = None
        self.max_leak = 0.0
        self.noise = 0.0
        self.cross = 0.0
        self.worst = None
        self.positions: list[int] = []
        self.seq_len = 0
        self.batches = 0

    def pick(self, full_batches: int) -> int:
        """which batch of an evaluation to probe (among those every rank holds in full)."""
        return self._sys.randrange(max(1, full_batches))

    def calls(self, x):
        """(kind, input, cut positions) for the probe calls on batch x: (B, T) int64."""
        import torch

        if self._gen is None:
            self._gen = torch.Generator(device="cpu").manual_seed(self._sys.getrandbits(62))
        B, T = x.shape
        self.seq_len = T
        out = [("noise", x.clone(), None)]
        for c in range(SUFFIX_CALLS):
            hi = T - 1 if c == 0 else max(1, T // 2)   # the second call cuts early: long suffixes
            cuts = [self._sys.randrange(hi) for _ in range(B)]
            xp = x.clone()
            for r, t in enumerate(cuts):
                xp[r, t + 1:] = self._random((T - t - 1,), x.device)
            out.append(("suffix", xp, cuts))
        if B > 1:
            xc = x.clone()
            xc[1:] = self._random((B - 1, T), x.device)
            out.append(("cross", xc, None))
        return out

    def _random(self, shape, device):
        import torch

        return torch.randint(0, self.vocab_size, shape, generator=self._gen).to(device)

    def observe(self, kind: str, cuts, base, logits) -> None:
        """compare the probe call's logits with the evaluation's (both (B, T, >= vocab))."""
        V = self.vocab_size
        if kind == "noise":
            self.noise = max(self.noise, _max_diff([(logits[..., :V], base[..., :V])])[0])
            self.batches += 1
        elif kind == "suffix":
            leaks = _max_diff([(logits[r, : t + 1, :V], base[r, : t + 1, :V]) for r, t in enumerate(cuts)])
            for t, leak in zip(cuts, leaks):
                self.positions.append(t)
                if leak > self.max_leak:
                    self.max_leak, self.worst = leak, t
        elif kind == "cross":
            self.cross = max(self.cross, _max_diff([(logits[0, :, :V], base[0, :, :V])])[0])

    def reduce(self, world_size: int, device) -> None:
        """under torchrun every rank probed its own batch: take the worst over ranks."""
        if world_size > 1:
            import torch
            import torch.distributed as dist

            t = torch.tensor([self.max_leak, self.noise, self.cross], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            self.max_leak, self.noise, self.cross = (float(v) for v in t.tolist())

    def result(self) -> dict:
        tol = ABS_TOLERANCE + NOISE_FACTOR * self.noise
        return {
            "passed": bool(self.batches > 0 and self.max_leak <= tol and self.cross <= tol),
            "max_leak": self.max_leak,
            "worst_position": self.worst,
            "cross_batch_leak": self.cross,
            "noise": self.noise,
            "tolerance": tol,
            "positions": sorted(set(self.positions)),
            "probed_batches": self.batches,
            "seq_len": self.seq_len,
        }


def _max_diff(pairs) -> list[float]:
    """max |a - b| of each (a, b) pair of logit tensors, read back in one copy. the difference is
    taken in the logits' own dtype a row at a time, so no float32 copy of the logits is made (two
    fp16 values of like size subtract exactly; otherwise the error is under 2**-11 of the difference)."""
    import torch

    per_pair = []
    for a, b in pairs:
        rows = zip(a.unbind(0), b.unbind(0)) if a.dim() > 2 else [(a, b)]
        m = [(ra - rb).abs().amax().float() for ra, rb in rows if ra.numel()]
        per_pair.append(torch.stack(m).amax() if m else torch.zeros((), device=a.device))
    return torch.stack(per_pair).cpu().tolist() if per_pair else []


def check_causality(forward, window: "torch.Tensor", vocab_size: int, seed: int = 0) -> dict:
    """the probe on its own, for one batch: window (B, T) int64 on the model's device."""
    import torch

    probe = Probe(vocab_size)
    with torch.no_grad():
        base = forward(window)[..., :vocab_size].clone()
        for kind, x, cuts in probe.calls(window):
            probe.observe(kind, cuts, base, forward(x))
    return probe.result()
