"""the evaluation's loss and the probe's differences: fast paths give the reference numbers."""
import torch
import torch.nn.functional as F

from supervisor.causality import max_diff
from supervisor.evaluate import cross_entropy_sum


def logits_and_targets(B=3, T=16, V=200, pad=56, dtype=torch.float16):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(B, T, V + pad, generator=g) * 5).to(dtype)
    logits[..., V:] = 30.0  # padding columns must not count
    return logits, torch.randint(0, V, (B, T), generator=g), V


def reference(logits, y, V):
    return F.cross_entropy(logits[..., :V].double().flatten(0, 1), y.flatten(), reduction="sum").item()


def test_eager_loss_matches_float64_reference():
    logits, y, V = logits_and_targets()
    got = cross_entropy_sum(logits, y, V)
    assert got.dtype == torch.float64
    assert abs(got.item() - reference(logits, y, V)) < 1e-3


def test_max_diff_per_pair():
    a, _, _ = logits_and_targets()
    a[1, 5, 3], a[2, 0, 0] = 1.0, 2.0
    b = a.clone()
    b[1, 5, 3], b[2, 0, 0] = 1.5, 1.75
    got = max_diff([(a, b), (a[0], b[0]), (a[2, :1], b[2, :1]), (a[:0], b[:0])])
    assert got == [0.5, 0.0, 0.25, 0.0]
