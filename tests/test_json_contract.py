"""one contract for --format json in every verb: stdout is one json document that json.loads
reads; an object for one result, an array of objects for many (a folder of logs, run --seeds N).
the runner is faked where a verb would start a run: the contract is about what is printed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, copy_record
from nanopoor import runner

REPO = Path(__file__).resolve().parents[1]
RUN = "20261126T020531Z-dense_muon_t4_v4-full-s233212252-6956"
LOGS = FIXTURES / "logs"


def json_of(app, *args, codes=(0,)):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code in codes, res.output
    return json.loads(res.stdout)   # the whole of stdout, or this raises


@pytest.fixture
def fake_runs(monkeypatch):
    """run_record writes a finished run folder (result.json only) instead of starting the record."""
    made = []

    def run_record(record, *, out_root, seed=None, scale="smoke", **kw):
        d = Path(out_root) / f"fake-{len(made)}"
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"run_id": d.name, "record": Path(record).name, "scale": scale,
                                                   "seed": seed or len(made) + 1, "status": "completed", "val_loss": 5.0,
                                                   "train_time_ms": 1000.0, "tokens": 10, "budget_tokens": 10}))
        made.append(d)
        return d

    monkeypatch.setattr(runner, "run_record", run_record)
    monkeypatch.setattr(runner, "preflight", lambda *a, **k: [])
    return made


def test_reading_verbs_print_one_document(app, tmp_path, monkeypatch, tiny_data):
    monkeypatch.chdir(REPO)
    assert isinstance(json_of(app, "records", "--format", "json"), list)   # the records: always many
    assert json_of(app, "verify", "dense_muon_t4_v4", "--format", "json")["checked"] == 4   # the record and its 3 runs
    assert json_of(app, "compare", "dense_muon_t4_v4", "baseline_adamw_epoch", "--format", "json")["a"] == "dense_muon_t4_v4"
    assert json_of(app, "data", "audit", tiny_data, "--no-hash", "--format", "json")["ok"] is True
    (tmp_path / "runs").mkdir()
    shutil.copytree(REPO / "runs" / RUN, tmp_path / "runs" / RUN)
    board = json_of(app, "leaderboard", "--runs", tmp_path / "runs", "--out", tmp_path / "lb.md", "--check",
                    "--format", "json", codes=(1,))   # stale: nothing is written by --check
    assert board["stale"] and not (tmp_path / "lb.md").exists()


def test_review_is_an_object_for_one_log_and_an_array_for_many(app, tmp_path):
    one = json_of(app, "review", LOGS / "llmc_main.log", "--format", "json")
    assert isinstance(one, dict) and one["log"]["format"] == "llmc"
    many = json_of(app, "review", LOGS, "--format", "json", "--jobs", "1", codes=(0, 1))
    assert isinstance(many, list) and len(many) == len(list(LOGS.iterdir()))
    folder = tmp_path / "one-log"
    folder.mkdir()
    shutil.copy(LOGS / "llmc_main.log", folder)
    assert isinstance(json_of(app, "review", folder, "--format", "json"), list)   # a folder: an array, even of one


def test_run_is_an_object_for_one_run_and_an_array_for_seeds(app, tmp_path, monkeypatch, fake_runs):
    monkeypatch.chdir(tmp_path)
    copy_record(FIXTURES / "records" / "tiny", Path("records"))
    assert json_of(app, "run", "tiny", "--format", "json")["record"] == "tiny"
    seeds = json_of(app, "run", "tiny", "--seeds", "2", "--format", "json")
    assert [s["run_id"] for s in seeds] == ["fake-1", "fake-2"]


def test_submit_and_reproduce_print_one_object(app, tmp_path, monkeypatch, fake_runs):
    monkeypatch.chdir(tmp_path)
    copy_record(FIXTURES / "records" / "tiny", Path("records"))
    out = json_of(app, "submit", "tiny", "--scale", "smoke", "--format", "json", codes=(0, 1))
    assert out["record"] == "tiny" and len(out["runs"]) == 2
    shutil.copytree(REPO / "runs" / RUN, Path("runs") / RUN)
    shutil.copytree(REPO / "records" / "dense_muon_t4_v4", Path("records") / "dense_muon_t4_v4")
    again = json_of(app, "reproduce", Path("runs") / RUN, "--format", "json", codes=(2,))
    assert again["original"] == RUN and again["reproduced"] is False
