"""the causality check, run inside the claim's evaluation and the held-out check.

a language model's logits at position t may depend on tokens 0..t of its own window only. the
probe takes batches of the evaluation itself (one chosen at random among all of them, and the
last one too when it is shorter: every batch shape the evaluation uses), and runs the model again
on altered copies, from the same line of code, with the same shapes:

- the same batch again: a forward that does not give the same logits twice is its own finding
  (a model left in training mode with dropout looks like this too). noise up to NOISE_CEILING is
  float non-determinism and widens the tolerance by at most NOISE_FACTOR × NOISE_CEILING; above it,
  the probe fails: noise can never buy a leak room;
- each row with every token after a random position t_r replaced: the logits at positions <= t_r
  must not move. t_r is drawn over every position, so no position is safe;
- the odd rows replaced, then the even rows: the rows left alone must not move at any position,
  the last included (rows are consecutive val windows; a row that reads its neighbour, e.g. row r's
  last position peeking at row r + 1's first token, moves).

replacement tokens are real tokens cut from other places of the same evaluation, so an altered
row looks like any other window. positions, batches and cut points come from the operating
system's randomness, which the record cannot replay."""
from __future__ import annotations

import random

ABS_TOLERANCE = 1e-2   # logits units; the seed's leak measured 0.057 with a single change
NOISE_FACTOR = 4.0
NOISE_CEILING = 2.5e-3  # logits units: two identical forward calls may differ this much at most
SUFFIX_CALLS = 2       # probe calls with per-row random cut positions (B positions tested per call)


class Probe:
    ALTERED = ("suffix", "cross")   # the kinds of call that send an altered copy of a batch
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
        self.shapes: set[tuple[int, int]] = set()
        self.batches = 0

    def pick(self, plan: list) -> set[int]:
        """which batches of an evaluation to probe (plan: each batch's windows, in the order they
        run): one at random, and every batch shorter than the others (the short last one, wherever
        the order put it), so every batch shape the evaluation uses is probed."""
        if not plan:
            return set()
        full = max(len(b) for b in plan)
        return {self._sys.randrange(len(plan))} | {i for i, b in enumerate(plan) if len(b) < full}

    def calls(self, x, pool):
        """(kind, input, rows or cuts) for the probe calls on batch x: (B, T) int64; pool: the
        evaluation's 1-d tokens, where replacement tokens are cut from. the cut ("suffix") copies
        come before the row-swapped ("cross") ones, which hold whole rows of x: a pickled forward's
        probe server (supervisor/scoring.py) answers them in this order."""
        import torch

        if self._gen is None:
            self._gen = torch.Generator(device="cpu").manual_seed(self._sys.getrandbits(62))
        B, T = x.shape
        self.shapes.add((B, T))
        out = [("noise", x.clone(), None)]
        for c in range(SUFFIX_CALLS):
            hi = T - 1 if c == 0 else max(1, T // 2)   # the second call cuts early: long suffixes
            cuts = [self._sys.randrange(max(1, hi)) for _ in range(B)]
            xp = x.clone()
            for r, t in enumerate(cuts):
                xp[r, t + 1:] = self._real(pool, T - t - 1, x[r, t + 1:])
            out.append(("suffix", xp, cuts))
        if B > 1:
            for parity in (1, 0):  # replace the odd rows, keep the even ones; then the other way
                xc = x.clone()
                changed = list(range(parity, B, 2))
                for r in changed:
                    xc[r] = self._real(pool, T, x[r])
                kept = [r for r in range(B) if r % 2 != parity]
                out.append(("cross", xc, kept))
        return out

    def _real(self, pool, n: int, old):
        """n real tokens from a random place of the evaluation's tokens, different from `old`."""
        import torch

        if n <= 0:
            return old
        for _ in range(8):
            start = self._sys.randrange(max(1, pool.numel() - n))
            seg = pool[start:start + n]
            if seg.numel() == n and not torch.equal(seg, old):
                return seg
        return torch.randint(0, self.vocab_size, (n,), generator=self._gen).to(old.device)

    def observe(self, kind: str, arg, base, logits) -> None:
        """compare the probe call's logits with the evaluation's (both (B, T, >= vocab))."""
        V = self.vocab_size
        if kind == "noise":
            self.noise = max(self.noise, max_diff([(logits[..., :V], base[..., :V])])[0])
            self.batches += 1
        elif kind == "suffix":
            leaks = max_diff([(logits[r, : t + 1, :V], base[r, : t + 1, :V]) for r, t in enumerate(arg)])
            for t, leak in zip(arg, leaks):
                self.positions.append(t)
                if leak > self.max_leak:
                    self.max_leak, self.worst = leak, t
        elif kind == "cross":
            self.cross = max([self.cross, *max_diff([(logits[r, :, :V], base[r, :, :V]) for r in arg])])

    def reduce(self, world_size: int, device) -> None:
        """under torchrun every rank probed its own batches: take the worst over ranks."""
        if world_size > 1:
            import torch
            import torch.distributed as dist

            t = torch.tensor([self.max_leak, self.noise, self.cross, -float(self.batches)], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            self.max_leak, self.noise, self.cross = (float(v) for v in t.tolist()[:3])
            self.batches = int(-t.tolist()[3])  # the fewest any rank probed

    def result(self) -> dict:
        deterministic = self.noise <= NOISE_CEILING
        tol = ABS_TOLERANCE + NOISE_FACTOR * min(self.noise, NOISE_CEILING)
        return {
            "passed": bool(self.batches > 0 and deterministic and self.max_leak <= tol and self.cross <= tol),
            "deterministic": deterministic,
            "max_leak": self.max_leak,
            "worst_position": self.worst,
            "cross_batch_leak": self.cross,
            "noise": self.noise,
            "noise_ceiling": NOISE_CEILING,
            "tolerance": tol,
            "positions": sorted(set(self.positions)),
            "probed_batches": self.batches,
            "shapes": sorted(self.shapes),
        }


def max_diff(pairs) -> list[float]:
    """max |a - b| of each (a, b) pair of logit tensors, read back in one copy. the difference is
    taken in the logits' own dtype a row at a time, so no float32 copy of the logits is made (two
    fp16 values of like size subtract exactly; otherwise the error is under 2**-11 of the difference).
    a nan anywhere in the difference counts as an infinite one."""
    import torch

    per_pair = []
    for a, b in pairs:
        rows = zip(a.unbind(0), b.unbind(0)) if a.dim() > 2 else [(a, b)]
        m = [torch.nan_to_num((ra - rb).abs().amax().float(), nan=float("inf")) for ra, rb in rows if ra.numel()]
        per_pair.append(torch.stack(m).amax() if m else torch.zeros((), device=a.device))
    return torch.stack(per_pair).cpu().tolist() if per_pair else []
