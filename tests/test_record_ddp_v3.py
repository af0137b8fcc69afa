"""records/dense_muon_t4_ddp_v3 through the runner on 1, 2 and 4 gloo ranks (torchrun on the cpu):
one process trains like dense_muon_t4_v2 (its newton-schulz groups the mlp's two shapes, its
loss is read back only at evaluations); more ranks, which exchange the embedding's gradient as
gathered trunk-input gradients, deal newton-schulz out by cost and gather the updates in one
buffer, train like one within float32 rounding and end with identical replicas. the cases are
tests/ddp_record_cases.py's, which v4 shares."""
from __future__ import annotations

import pytest

from ddp_record_cases import ROOT, DdpRecordCases

# a newer data-parallel record supersedes this one: its full cases run with `make test-all`;
# `make test` runs one 2-rank smoke run of it (tests/test_superseded_ddp_records.py)
pytestmark = pytest.mark.archive


class TestDenseMuonT4DdpV3(DdpRecordCases):
    RECORD = ROOT / "records" / "dense_muon_t4_ddp_v3"
