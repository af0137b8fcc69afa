"""records/dense_muon_t4_ddp_v6 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
the cases dense_muon_t4_ddp_v3 to v5 share, and v5's, which v6 keeps (ShardedEmbeddingCases in
tests/ddp_record_cases.py): each rank forms the gradient of, and steps, its share of the
embedding's rows, and DDP's gradients are views into its buckets; neither may change a number.
what v6 changes (the order of the collectives on the nccl stream) and the cuda graph exist on
cuda only."""
from __future__ import annotations

from ddp_record_cases import ROOT, ShardedEmbeddingCases


class TestDenseMuonT4DdpV6(ShardedEmbeddingCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v6"
