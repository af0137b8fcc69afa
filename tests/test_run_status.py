"""every run status, from real child processes of the tiny record (run in parallel to save time)."""
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import FIXTURES, copy_record
from nanopoor.runner import run_record

pytestmark = pytest.mark.slow   # every test here starts real runs of the tiny record

CASES = {
    "clean": ({"warmup": True}, None),
    "crash": ({"crash_at": 2}, None),
    "nan": ({"nan_at": 2}, None),
    "budget": ({"extra_steps": 2}, None),
    "leak": ({"peek_future": True}, None),
    "timeout": ({"hang_at": 1}, 15),
    "inflated_clock": ({"inflate_clock": True}, None),
    "edits_itself": ({"touch_self": True}, None),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    root = tmp_path_factory.mktemp("status")

    def one(name):
        args, timeout = CASES[name]
        rec = copy_record(FIXTURES / "records" / "tiny", root / "records", name=f"tiny_{name}", args=args)
        d = run_record(rec, scale="smoke", seed=7, data_dir=tiny_data, out_root=root / "runs", timeout_s=timeout, quiet=True)
        return name, d

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, CASES))


def result(runs, name):
    return json.loads((runs[name] / "result.json").read_text())


def test_clean_run_completes_with_every_key(runs):
    r = result(runs, "clean")
    assert r["status"] == "completed", r["reason"]
    from nanopoor.result import RESULT_KEYS

    assert set(RESULT_KEYS) <= set(r), set(RESULT_KEYS) - set(r)
    assert r["class"] == "dev" and r["causal"] is True and r["tokens"] == 32 * 4 * 6
    assert r["warmup_time_ms"] > 0 and r["train_time_ms"] + r["eval_time_ms"] + r["warmup_time_ms"] < r["wallclock_ms"]
    assert set(r["files"]) == {"config.json", "events.jsonl", "log.txt", "loss.png"}
    types = [json.loads(line)["type"] for line in (runs["clean"] / "events.jsonl").read_text().splitlines()]
    assert types[0] == "run_start" and types[-1] == "run_end" and "warmup_end" in types and "causality" in types
    assert "val_loss:" in (runs["clean"] / "log.txt").read_text()


def test_exception_is_failed_with_traceback(runs):
    r = result(runs, "crash")
    assert r["status"] == "failed" and "deliberate crash" in r["reason"]
    assert "Traceback" in (runs["crash"] / "log.txt").read_text()


@pytest.mark.parametrize("name, reason", [("nan", "nan"), ("budget", "budget"), ("leak", "causality")])
def test_invalid_runs_say_why(runs, name, reason):
    r = result(runs, name)
    assert r["status"] == "invalid" and r["reason"].startswith(reason), r["reason"]


def test_a_record_cannot_claim_more_train_time_than_it_spent(runs):
    # the clock is the supervisor's: the record finds none in its process to inflate
    r = result(runs, "inflated_clock")
    assert r["status"] == "completed", r["reason"]
    assert "no clock in this process" in (runs["inflated_clock"] / "log.txt").read_text()
    assert r["train_time_ms"] + r["eval_time_ms"] + r["warmup_time_ms"] < r["wallclock_ms"]


def test_a_record_cannot_edit_its_files_while_it_runs(runs):
    # the run executes a read-only staged copy of the digested files: the record folder is never touched
    r = result(runs, "edits_itself")
    assert r["status"] == "failed" and "Read-only file system" in r["reason"], r["reason"]
    rec = runs["edits_itself"].parent.parent / "records" / "tiny_edits_itself"
    assert not (rec / "extra.txt").exists()


def test_timeout_is_killed_and_keeps_what_it_wrote(runs):
    r = result(runs, "timeout")
    assert r["status"] == "killed" and "timeout" in r["reason"]
    assert (runs["timeout"] / "events.jsonl").read_text().startswith('{"type": "run_start"')


def test_a_run_folder_is_never_reused(runs, tiny_data):
    rec = runs["clean"].parent.parent / "records" / "tiny_clean"
    before = (runs["clean"] / "result.json").read_bytes()
    with pytest.raises(FileExistsError):
        from nanopoor.result import write_result
        write_result(runs["clean"], {"status": "completed"})
    assert (runs["clean"] / "result.json").read_bytes() == before and rec.exists()


def _start_cli_run(tmp_path, tiny_data, args):
    rec = copy_record(FIXTURES / "records" / "tiny", tmp_path / "records", name="tiny_sig", args=args)
    cmd = [sys.executable, "-m", "nanopoor", "run", str(rec), "--data", str(tiny_data), "--runs", str(tmp_path / "runs"), "--seed", "3"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_training(runs_dir: Path, timeout=120):
    """until the run's supervisor has served its first batch (the tiny record then hangs at step 1)."""
    t0 = time.time()
    while not any('"train_start"' in p.read_text() for p in runs_dir.glob("*/events.jsonl")):
        assert time.time() - t0 < timeout, "the run never started training"
        time.sleep(0.2)
    time.sleep(1.0)  # the record is now inside its hang


def descendants(pid: int) -> set[int]:
    """every process below pid, from /proc (the supervisor, its sandboxes and the record's processes)."""
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, parent in parents.items() if parent in frontier} - out
        out |= frontier
    return out


def alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()}


def _stopped_run(tmp_path, tiny_data, stop) -> tuple[dict, subprocess.Popen, set[int]]:
    proc = _start_cli_run(tmp_path, tiny_data, {"hang_at": 1})
    _wait_for_training(tmp_path / "runs")
    started = descendants(proc.pid)
    assert any("harness.boot" in Path(f"/proc/{p}/cmdline").read_text(errors="replace") for p in alive(started))
    stop(proc, started)
    proc.communicate(timeout=120)
    (run_dir,) = (tmp_path / "runs").iterdir()
    time.sleep(0.5)
    return json.loads((run_dir / "result.json").read_text()), proc, alive(started)


def test_ctrl_c_is_aborted_and_stops_everything_it_started(tmp_path, tiny_data):
    r, proc, left = _stopped_run(tmp_path, tiny_data, lambda p, _: p.send_signal(signal.SIGINT))  # what Ctrl-C sends
    assert r["status"] == "aborted" and left == set(), left


def test_sigterm_from_outside_is_killed_and_stops_everything_it_started(tmp_path, tiny_data):
    # what `timeout` sends: the record's process ignored it before; now nothing of the run is left
    r, proc, left = _stopped_run(tmp_path, tiny_data, lambda p, _: p.send_signal(signal.SIGTERM))
    assert r["status"] == "killed" and "SIGTERM" in r["reason"] and left == set(), (r["reason"], left)
    assert proc.returncode == 2  # the cli says the run did not complete


def test_sigkill_of_the_record_is_killed(tmp_path, tiny_data):
    def kill_record(p, pids):
        for pid in alive(pids):
            if "harness.boot" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)

    r, proc, left = _stopped_run(tmp_path, tiny_data, kill_record)
    assert r["status"] == "killed" and "SIGKILL" in r["reason"], r["reason"]
    assert proc.returncode == 2 and left == set()
