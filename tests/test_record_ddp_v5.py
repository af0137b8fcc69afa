"""records/dense_muon_t4_ddp_v5 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
the cases dense_muon_t4_ddp_v3 and v4 share (tests/ddp_record_cases.py), and v5's own: each rank
forms the gradient of, and steps, its share of the embedding's rows, and DDP's gradients are
views into its buckets; neither may change a number. the cuda graph runs on cuda only."""
from __future__ import annotations

import pytest

from ddp_record_cases import ROOT, DdpRecordCases, step_losses

# a newer data-parallel record supersedes this one: its full cases run with `make test-all`;
# `make test` runs one 2-rank smoke run of it (tests/test_superseded_ddp_records.py)
pytestmark = pytest.mark.archive

DEMO_PADDED_VOCAB = 100288  # the demo track's cl100k vocabulary (100277) padded to a multiple of 64


class TestDenseMuonT4DdpV5(DdpRecordCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v5"
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
