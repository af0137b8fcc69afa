"""torchrun on the cpu (gloo, 2 ranks): same tokens and val loss as 1 rank; a failing rank fails the run."""
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FIXTURES, copy_record
from nanopoor.runner import run_record

pytestmark = pytest.mark.slow   # torchrun runs of the tiny record

VAL_LOSS_TOLERANCE = 1e-3  # same gradients up to float32 summation order


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("ddp")
    ok = copy_record(FIXTURES / "records" / "tiny", root / "records", name="tiny_ddp")
    crash = copy_record(FIXTURES / "records" / "tiny", root / "records", name="tiny_rank_crash", args={"crash_rank": 1})
    jobs = {"one": (ok, 1), "two": (ok, 2), "crash": (crash, 2)}

    def go(item):
        name, (rec, n) = item
        d = run_record(rec, scale="smoke", seed=21, data_dir=tiny_data, out_root=root / "runs", nproc=n, quiet=True, timeout_s=300)
        return name, json.loads((d / "result.json").read_text()) | {"dir": str(d)}

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(go, jobs.items()))


def test_two_ranks_match_one_rank(ddp_runs):
    one, two = ddp_runs["one"], ddp_runs["two"]
    assert one["status"] == two["status"] == "completed", (one["reason"], two["reason"])
    assert one["tokens"] == two["tokens"] == 32 * 4 * 6  # counted once, globally
    assert abs(one["val_loss"] - two["val_loss"]) < VAL_LOSS_TOLERANCE
    assert two["nproc"] == 2 and two["class"] == "dev"


def test_only_rank_zero_writes_events(ddp_runs):
    lines = open(f"{ddp_runs['two']['dir']}/events.jsonl").read().splitlines()
    assert sum(json.loads(ln)["type"] == "run_start" for ln in lines) == 1


def test_a_failing_rank_fails_the_run_with_its_traceback(ddp_runs):
    r = ddp_runs["crash"]
    assert r["status"] == "failed" and r["reason"].startswith("rank 1:") and "deliberate crash on rank 1" in r["reason"]
    assert "deliberate crash on rank 1" in open(f"{r['dir']}/log.txt").read()
    # no rank is left running
    left = subprocess.run(["pgrep", "-f", "tiny_rank_crash/train.py"], capture_output=True, text=True).stdout.strip()
    assert left == ""
