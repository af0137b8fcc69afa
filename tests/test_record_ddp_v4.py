"""records/dense_muon_t4_ddp_v4 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
one process trains like dense_muon_t4_v2; more ranks, which exchange the embedding's gradient as
gathered trunk-input gradients (unscaled and checked for overflow before they are summed), deal
newton-schulz out by cost and gather the updates in one buffer, train like one within float32
rounding and end with identical replicas. the cuda graph of its forward + backward runs on cuda
only; the cpu runs take the eager path it replaces (cuda_graph is ignored there). the cases are
tests/ddp_record_cases.py's, which v3 shares; the unscaled rows are v4's own."""
from __future__ import annotations

import pytest

from ddp_record_cases import ROOT, DdpRecordCases, load_optim

# a newer data-parallel record supersedes this one: its full cases run with `make test-all`;
# `make test` runs one 2-rank smoke run of it (tests/test_superseded_ddp_records.py)
pytestmark = pytest.mark.archive


class TestDenseMuonT4DdpV4(DdpRecordCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v4"

    def unscale(self, scaler, w, e):
        return scaler.unscale([w], extra=[e.grad])  # e's gradient as a tensor of its own, as train.py's rows

    def test_rows_unscaled_before_the_sum_give_the_same_gradient(self):
        """v4 unscales the gathered embedding rows, then sums them into the embedding's gradient; v3
        summed, then unscaled. the scale is a power of two, so both give the same bits, and an
        overflowed row raises the flag."""
        import torch

        optim = load_optim(self.RECORD)
        torch.manual_seed(0)
        vocab, n, width = 50, 400, 8
        ids = torch.randint(0, vocab, (n,))
        rows = torch.randn(n, width) * 2.0 ** 16 * 1e-3  # loss-scaled trunk-input gradients
        scaler = optim.LossScaler("cpu", enabled=True)
        summed_first = torch.ops.aten.embedding_dense_backward(rows, ids, vocab, -1, False)
        weight = torch.nn.Parameter(torch.zeros(vocab, width))
        weight.grad = summed_first.clone()
        assert scaler.unscale([weight]).item() == 0.0  # v3: the sum, unscaled
        unscaled_rows = rows.clone()
        assert scaler.unscale([], extra=[unscaled_rows]).item() == 0.0  # v4: the rows, unscaled
        assert torch.equal(torch.ops.aten.embedding_dense_backward(unscaled_rows, ids, vocab, -1, False), weight.grad)
        rows[7, 3] = float("inf")
        assert scaler.unscale([], extra=[rows]).item() == 1.0
