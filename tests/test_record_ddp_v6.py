"""records/dense_muon_t4_ddp_v6 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
the cases dense_muon_t4_ddp_v3, v4 and v5 share (tests/ddp_record_cases.py), and v5's, which v6
keeps: each rank forms the gradient of, and steps, its share of the embedding's rows, and DDP's
gradients are views into its buckets; neither may change a number. what v6 changes (the order
of the collectives on the nccl stream) and the cuda graph exist on cuda only."""
from __future__ import annotations

import pytest

from ddp_record_cases import ROOT, DdpRecordCases, step_losses

DEMO_PADDED_VOCAB = 100288  # the demo track's cl100k vocabulary (100277) padded to a multiple of 64


class TestDenseMuonT4DdpV6(DdpRecordCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v6"
    EXTRA_JOBS = {"unsharded_four": ("smoke_unsharded", 4)}  # v4's whole embedding per rank, bucket copies

    def unscale(self, scaler, w, e):
        return scaler.unscale([w], extra=[e.grad])  # as v4: the gathered rows are a tensor of their own

    @pytest.mark.slow
    @pytest.mark.parametrize("name, rows", [("one", DEMO_PADDED_VOCAB), ("two", DEMO_PADDED_VOCAB // 2),
                                            ("four", DEMO_PADDED_VOCAB // 4), ("unsharded_four", DEMO_PADDED_VOCAB)])
    def test_each_rank_owns_its_share_of_the_embedding(self, runs, name, rows):
        assert f"embedding: {rows} of {DEMO_PADDED_VOCAB} rows per rank" in runs[name]["log"]

    @pytest.mark.slow
    def test_sharding_the_embedding_changes_no_number(self, runs):
        """4 ranks with the embedding's rows and AdamW shared, against 4 ranks that each step the
        whole embedding (and copy gradients into DDP's buckets): the same losses and parameters."""
        sharded, whole = runs["four"], runs["unsharded_four"]
        assert whole["status"] == "completed", (whole["reason"], whole["log"][-2000:])
        a, b = step_losses(sharded), step_losses(whole)
        assert sorted(a) == sorted(b) == [2, 4]
        assert max(abs(a[s] - b[s]) for s in a) < 1e-6, (a, b)
        assert abs(sharded["val_loss"] - whole["val_loss"]) < 1e-6
        checksum = [next(line for line in r["log"].splitlines() if line.startswith("replicas:")).split(",")[1]
                    for r in (sharded, whole)]
        assert checksum[0] == checksum[1], checksum  # the parameters' checksum, to 13 digits
