"""records/dense_muon_t4_ddp_v5 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
the cases dense_muon_t4_ddp_v3 and v4 share (tests/ddp_record_cases.py), and v5's own, which v6
shares (ShardedEmbeddingCases): each rank forms the gradient of, and steps, its share of the
embedding's rows, and DDP's gradients are views into its buckets; neither may change a number.
the cuda graph runs on cuda only."""
from __future__ import annotations

import pytest

from ddp_record_cases import ROOT, ShardedEmbeddingCases

# a newer data-parallel record supersedes this one: its full cases run with `make test-all`;
# `make test` runs one 2-rank smoke run of it (tests/test_superseded_ddp_records.py)
pytestmark = pytest.mark.archive


class TestDenseMuonT4DdpV5(ShardedEmbeddingCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v5"
