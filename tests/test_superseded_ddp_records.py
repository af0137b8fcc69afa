"""the data-parallel records a newer one supersedes: one 2-rank smoke run each (`make test-all`).

their code is frozen, so what can break them is the harness; a run on 2 gloo ranks exercises the
harness's side of data parallelism (torchrun, the sharded batches, the handover from rank 0) for
each of them. `make test` covers that side with the newest record (tests/test_record_ddp_v6.py)
and tests/test_distributed.py; these runs, and the records' full cases (1, 2 and 4 ranks against
one process, micro-step accumulation, the compiled path), are marked `archive`."""
from __future__ import annotations

from pathlib import Path

import pytest

from ddp_runs import assert_identical_replicas, run_jobs

ROOT = Path(__file__).resolve().parents[1]

SUPERSEDED = ["dense_muon_t4_ddp", "dense_muon_t4_ddp_v2", "dense_muon_t4_ddp_v3", "dense_muon_t4_ddp_v4", "dense_muon_t4_ddp_v5"]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory) -> dict[str, dict]:
    jobs = {name: (ROOT / "records" / name, "smoke", 2) for name in SUPERSEDED}
    return run_jobs(jobs, tiny_data, tmp_path_factory.mktemp("superseded"), seed=7)


@pytest.mark.slow
@pytest.mark.archive
@pytest.mark.parametrize("name", SUPERSEDED)
def test_a_superseded_record_still_trains_on_two_ranks(runs, name):
    r = runs[name]
    assert r["status"] == "completed", (r["reason"], r["log"][-2000:])
    assert r["nproc"] == 2 and r["causal"] is True
    assert r["tokens"] == r["budget_tokens"]  # counted once, globally
    assert_identical_replicas(r)
