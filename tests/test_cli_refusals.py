"""what a new user trips on, typed as they type it: a re-run of a committed run refused on a cpu
like every other full-scale run, a reproduction that does not reproduce exits non-zero, folders
that cannot be written, a record with a syntax error, a timeout of no seconds, a dataset hint that
names the folder asked for, and an offline fineweb-edu build that says one line."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, copy_record
from nanopoor import runner

REPO = Path(__file__).resolve().parents[1]
COMMITTED_RUN = "20261126T020531Z-dense_muon_t4_v4-full-s233212252-6956"


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(res, *needles, code=1):
    assert res.exit_code == code, res.output
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def committed_run(tmp_path, monkeypatch) -> Path:
    """a fresh folder holding one committed run of the board's rank 1 and its record, as a clone has them."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "runs" / COMMITTED_RUN, tmp_path / "runs" / COMMITTED_RUN)
    shutil.copytree(REPO / "records" / "dense_muon_t4_v4", tmp_path / "records" / "dense_muon_t4_v4")
    return Path("runs") / COMMITTED_RUN


# --- a re-run of a committed run ---------------------------------------------------------------
def test_reproducing_a_run_folder_on_a_cpu_is_refused_like_run(app, committed_run, monkeypatch):
    monkeypatch.setattr(runner, "has_gpu", lambda: False)
    started = []
    monkeypatch.setattr(runner, "run_record", lambda *a, **k: started.append(a))
    line = one_line(invoke(app, "reproduce", committed_run), "error: reproduce records/dense_muon_t4_v4 --scale full needs a gpu",
                    "this machine has none", "--allow-cpu", "--scale smoke", "the docs dataset at data/docs")
    assert "on 1× NVIDIA H200 it trained in" in line   # what it would cost, from the committed runs
    assert started == [] and not Path("dev-runs").exists()


def _fake_rerun(monkeypatch, **result):
    """the runner replaced by one that writes a finished re-run with these result fields."""
    def run_record(record, *, out_root, reproduces, **kw):
        d = Path(out_root) / f"rerun-of-{reproduces}"
        d.mkdir(parents=True)
        base = {"run_id": d.name, "record": Path(record).name, "status": "completed", "reason": "", "machine": "other"}
        (d / "result.json").write_text(json.dumps({**base, **result}))
        return d

    monkeypatch.setattr(runner, "preflight", lambda *a, **k: [])   # as on a gpu with the dataset
    monkeypatch.setattr(runner, "run_record", run_record)


@pytest.mark.parametrize("result, why", [
    ({"status": "killed", "reason": "out of memory", "val_loss": None}, "the re-run ended killed: out of memory"),
    ({"status": "failed", "reason": "exit code 1", "val_loss": None}, "the re-run ended failed: exit code 1"),
    ({"status": "invalid", "reason": "causality", "val_loss": 5.66}, "the re-run ended invalid: causality"),
    ({"val_loss": 5.75}, "more than the track's 0.02 nats"),
])
def test_a_rerun_that_does_not_reproduce_exits_2_with_why(app, committed_run, monkeypatch, result, why):
    _fake_rerun(monkeypatch, **result)
    res = invoke(app, "reproduce", committed_run, "--runs", "elsewhere")
    assert res.exit_code == 2, res.output
    [line] = res.stderr.strip().splitlines()   # one line, on stderr, saying why
    assert line.startswith("not reproduced: ") and why in line, line
    assert "not reproduced" in res.stdout   # the summary says it too
    res = invoke(app, "reproduce", committed_run, "--runs", "elsewhere2", "--format", "json")
    assert res.exit_code == 2 and json.loads(res.stdout)["reproduced"] is False


def test_a_rerun_within_seed_noise_exits_0(app, committed_run, monkeypatch):
    original = json.loads((committed_run / "result.json").read_text())["val_loss"]
    _fake_rerun(monkeypatch, val_loss=original + 0.004)
    res = invoke(app, "reproduce", committed_run, "--runs", "elsewhere", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["reproduced"] is True and "within the track's 0.02 nats" in out["why"]


# --- folders that cannot be written ------------------------------------------------------------
@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """tmp_path/ro as a read-only mount looks to the tool (root ignores a chmod, so access() is faked)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access

    def access(path, mode, **kw):
        if (mode & os.W_OK) and (Path(path) == ro or ro in Path(path).parents):
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    return ro


def test_a_read_only_runs_folder_is_one_line_before_anything_runs(app, tmp_path, monkeypatch, read_only, tiny_data):
    monkeypatch.chdir(tmp_path)
    copy_record(FIXTURES / "records" / "tiny", Path("records"))
    started = []
    monkeypatch.setattr(runner, "run_record", lambda *a, **k: started.append(a))
    for verb in (["run", "tiny"], ["submit", "tiny", "--scale", "smoke"]):
        one_line(invoke(app, *verb, "--data", tiny_data, "--runs", read_only / "runs"),
                 f"error: cannot write {(read_only / 'runs').as_posix()}", "--runs DIR")
    one_line(invoke(app, "demo", "--runs", read_only), "error: cannot write", "--runs DIR")
    assert started == []


def test_leaderboard_out_on_a_read_only_folder_is_one_line(app, tmp_path, monkeypatch, read_only):
    monkeypatch.chdir(REPO)
    one_line(invoke(app, "leaderboard", "--out", read_only / "leaderboard.md"), "error: cannot write", "--out PATH")
    assert not list(read_only.iterdir())


def test_a_disk_that_turns_read_only_midway_is_one_line(app, tmp_path, monkeypatch):
    """no check beforehand can rule it out: the cli turns the refusal into one line."""
    def refuse(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.chdir(REPO)
    monkeypatch.setattr("nanopoor.leaderboard.board.write_atomic", refuse)
    one_line(invoke(app, "leaderboard", "--out", tmp_path / "lb.md"),
             f"error: cannot write {tmp_path / 'lb.md'}", "a read-only file system", "--out PATH")


# --- smaller slips -----------------------------------------------------------------------------
def test_freeze_refuses_a_syntax_error_naming_file_and_line(app, tmp_path):
    rec = copy_record(FIXTURES / "records" / "tiny", tmp_path / "records", freeze=False)
    toml_before = (rec / "record.toml").read_text()
    (rec / "layers.py").write_text("x = 1\n\ndef broken(:\n    pass\n")
    one_line(invoke(app, "freeze", rec), f"error: freeze: {(rec / 'layers.py').as_posix()}:3:", "nothing was written")
    assert (rec / "record.toml").read_text() == toml_before


@pytest.mark.parametrize("verb", [["run", "records/tiny"], ["submit", "records/tiny"], ["reproduce", "records/tiny"]])
@pytest.mark.parametrize("seconds", ["-5", "0"])
def test_a_timeout_must_be_more_than_zero_seconds(app, verb, seconds):
    one_line(invoke(app, *verb, "--timeout", seconds), "--timeout", f"{seconds} is not a number of seconds above 0")


def test_a_missing_dataset_under_data_dir_names_a_command_that_writes_dir(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy_record(FIXTURES / "records" / "tiny", Path("records"))
    one_line(invoke(app, "run", "tiny", "--data", "my-data"), "build it with `nanopoor data demo --out my-data`")
    one_line(invoke(app, "run", "tiny", "--data", "d2", "--track", "docs"), "build it with `nanopoor data docs --out d2`")
    one_line(invoke(app, "run", "tiny"), "build it with `nanopoor data demo`")   # the default folder


def test_fineweb_offline_is_one_line_without_the_hubs_retry_lines(app, tmp_path, monkeypatch):
    """the hub client logs two warnings per retry; while the stream is read they are held back."""
    seen = []

    def load_dataset(*a, **k):
        hub = logging.getLogger("huggingface_hub.utils._http")
        seen.append(hub.isEnabledFor(logging.WARNING))
        raise ConnectionError("Couldn't reach 'HuggingFaceFW/fineweb-edu' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    one_line(invoke(app, "data", "fineweb-edu", "--out", tmp_path / "fw"), "error: cannot stream HuggingFaceFW/fineweb-edu",
             "check the network", "the build resumes")
    assert seen == [False]
    assert logging.getLogger("huggingface_hub").isEnabledFor(logging.WARNING)   # as it was afterwards
