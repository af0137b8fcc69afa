"""benchmarks/ddp_profile.py, the data-parallel step profile: its cpu dry run on two gloo ranks
(each record's phases, v5's switches as labelled variants, v6's order of the gathers), its summary tables, and the layout of
a step it shares with the records' train.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "benchmarks" / "ddp_profile.py"
V5 = "dense_muon_t4_ddp_v5"
V6 = "dense_muon_t4_ddp_v6"
sys.path.insert(0, str(PROFILE.parent))  # ddp_profile and trace_overlap are scripts, not a package


def _profile_module():
    import ddp_profile

    return ddp_profile


def test_profile_layout_is_each_records_own():
    """the profile cuts a step as each record's train.py does (their logs print the same numbers)."""
    layout = _profile_module().layout
    assert [layout("dense_muon_t4_ddp_v2", 16, 2, n) for n in (1, 2, 4)] == [(2, 16), (1, 16), (1, 8)]
    assert [layout(V5, 16, 2, n) for n in (1, 2, 4)] == [(2, 16), (1, 16), (1, 8)]
    assert [layout("dense_muon_t4_ddp", 8, 4, n) for n in (1, 2, 4, 8)] == [(4, 8), (2, 8), (1, 8), (4, 1)]


@pytest.mark.parametrize("text, knobs", [("shard_embed=0,bucket_view=1", {"shard_embed": 0, "bucket_view": 1}), ("", {})])
def test_v5_knobs_parse(text, knobs):
    assert _profile_module().parse_knobs(text) == knobs


@pytest.mark.parametrize("text", ["shard=1", "shard_embed=2", "bucket_view"])
def test_a_wrong_knob_is_one_clear_line(text):
    with pytest.raises(SystemExit, match="--v5-knobs: .* is not shard_embed=0|1 or bucket_view=0|1"):
        _profile_module().parse_knobs(text)


def _kernel(name: str, start_us: float, dur_us: float, stream: int) -> dict:
    return {"ph": "X", "cat": "kernel", "name": name, "ts": start_us, "dur": dur_us, "tid": stream}


def test_overlap_splits_communication_into_hidden_and_exposed():
    """an all-reduce from 0 to 10 ms beside a backward from 5 to 20 ms, then a gather alone from 25
    to 28 ms, over 2 steps: per step 6.5 ms of communication, 2.5 hidden, 4 exposed, 7.5 of
    compute and 2.5 idle (nothing ran from 20 to 25 ms); cpu and instant events are not kernels."""
    from trace_overlap import overlap

    events = [_kernel("ncclDevKernel_AllReduce_Sum_f16_RING_LL", 0, 10_000, 20),
              _kernel("nvjet_backward", 5_000, 10_000, 7), _kernel("triton_backward", 12_000, 8_000, 7),
              _kernel("ncclDevKernel_AllGather_RING_LL", 25_000, 3_000, 20),
              {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 50_000},
              {"ph": "i", "cat": "kernel", "name": "marker", "ts": 1}]
    assert overlap(events, steps=2) == {"steps": 2, "kernels": 4, "comm_ms": 6.5, "hidden_ms": 2.5, "exposed_ms": 4.0,
                                        "compute_ms": 7.5, "idle_ms": 2.5}


@pytest.mark.slow
@pytest.mark.archive   # two gloo ranks and inductor: 15 s on 2 cores; make test-all runs it, the profile itself runs on a gpu
def test_profile_dry_run_on_two_gloo_ranks(tmp_path):
    out = tmp_path / "prof.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(PROFILE),
                           "--dry-run", "--out", str(out), "--records", "dense_muon_t4_ddp", "dense_muon_t4_ddp_v2", V5, V6,
                           "--v5-knobs", "shard_embed=1,bucket_view=1", "shard_embed=0,bucket_view=0", "--timeline"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prof = json.loads(out.read_text())
    assert prof["ranks"] == 2 and prof["dry_run"] is True
    assert sorted(prof["records"]) == ["dense_muon_t4_ddp", "dense_muon_t4_ddp_v2",
                                       f"{V5} shard_embed=0,bucket_view=0", f"{V5} shard_embed=1,bucket_view=1", V6]
    v2, parent = prof["records"]["dense_muon_t4_ddp_v2"], prof["records"]["dense_muon_t4_ddp"]
    v5 = prof["records"][f"{V5} shard_embed=1,bucket_view=1"]
    assert set(v2["phases_ms"]) == {"forward_backward", "unscale_norm", "adamw", "muon_ns", "muon_gather", "rest"}
    assert set(parent["phases_ms"]) == {"forward_backward", "unscale_norm", "adamw", "muon", "rest"}
    for r in (v5, prof["records"][V6]):
        assert set(r["phases_ms"]) == {"forward_backward", "embed_gather", "unscale_norm", "adamw_beside_muon_ns", "muon_gather", "rest"}
    for r in prof["records"].values():
        assert len(r["per_rank"]) == 2 and r["step_ms"] > 0 and r["compute_only_ms"] > 0
        assert sum(r["phases_ms"].values()) <= r["step_ms"] * 2  # the phases lie inside the step (max over ranks)
    assert (v2["micro_steps"], v2["micro_rows"]) == (1, 16) and (parent["micro_steps"], parent["micro_rows"]) == (2, 8)
    assert prof["comm_alone"]["allreduce_grads"]["bytes"] > 0
    # --timeline: rank 0's chrome trace per record, and its overlap figures (no gpu kernels on the cpu)
    assert (tmp_path / f"prof.{V6}.trace.timeline.json.gz").is_file()
    assert prof["records"][V6]["timeline_rank0"] == {"steps": 10, "kernels": 0, "comm_ms": 0.0, "hidden_ms": 0.0,
                                                     "exposed_ms": 0.0, "compute_ms": 0.0, "idle_ms": 0.0}
    # a 2-rank profile alone: no 1-rank row to take a speed-up from, and a missing file is left out
    table = subprocess.run([sys.executable, str(PROFILE), "--summary", str(out), str(tmp_path / "ddp-profile-n1.json")],
                           capture_output=True, text=True, env=env, timeout=60)
    assert table.returncode == 0, table.stderr
    assert "| dense_muon_t4_ddp_v2 | 2 | 1 × 16 |" in table.stdout
    assert f"| {V5} shard_embed=0,bucket_view=0 | 2 | 1 × 16 |" in table.stdout
    assert "nan" not in table.stdout and "| — | — |" in table.stdout


def test_overlap_of_a_missing_trace_is_one_clear_line(tmp_path, monkeypatch):
    import trace_overlap

    monkeypatch.setattr(sys, "argv", ["trace_overlap.py", str(tmp_path / "none.json.gz")])
    with pytest.raises(SystemExit, match=r"^error: no trace at .*none.json.gz; give the .json\(.gz\) file"):
        trace_overlap.main()
