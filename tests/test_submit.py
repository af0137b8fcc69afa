"""submit: the record's seeds, verified, on the leaderboard, with the files to commit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runs import make_record, make_run, make_submission
from nanopoor import runner


@pytest.fixture
def fake_runner(monkeypatch):
    """run_record replaced by a synthetic run; records each call and hands out fresh seeds."""
    calls = []

    def run_record(record_dir, *, scale, seed, data_dir, out_root, timeout_s, track, quiet=False, as_t4=False, isolated=True):
        calls.append({"seed": seed, "scale": scale, "out_root": out_root, "timeout_s": timeout_s, "track": track})
        seed = 1000 + len(calls)   # what the harness assigns when seed is None
        loss = calls[0].get("loss", 3.20) + 0.01 * (len(calls) % 3)
        return make_run(Path(out_root), Path(record_dir), seed=seed, val_loss=loss, train_time_ms=800e3 + len(calls),
                        scale=scale, finished_at="2025-03-02T09:00:00+00:00")

    monkeypatch.setattr(runner, "run_record", run_record)
    # as on a gpu with the dataset built: full-scale submissions go ahead, into runs/
    monkeypatch.setattr(runner, "has_gpu", lambda: True)
    monkeypatch.setattr(runner, "preflight", lambda *a, **k: [])
    return calls


def test_submit_runs_the_declared_seeds_and_prints_files_to_commit(tmp_path, monkeypatch, app, fake_runner):
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "muon_3xlr", seeds=3)
    res = CliRunner().invoke(app, ["submit", "records/muon_3xlr", "--format", "json", "--timeout", "60"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    # three runs, every one with seed=None so the harness assigns it
    assert [c["seed"] for c in fake_runner] == [None, None, None]
    assert {c["scale"] for c in fake_runner} == {"full"} and fake_runner[0]["timeout_s"] == 60
    assert len(out["runs"]) == 3 and all(c["ok"] for c in out["checks"])
    [sub] = out["submissions"]
    assert sub["verified"] and sub["verdict"] == "verified" and sub["n_runs"] == 3 and sub["rank"] == 1
    assert out["to_commit"] == sorted([f"?? {r}/" for r in out["runs"]] + [
        "?? leaderboard.csv", "?? leaderboard.json", "?? leaderboard.md", "?? leaderboard.png"])
    assert "| 1 | 13.3 ± 0.00002 min (n=3) |" in Path("leaderboard.md").read_text()   # an sd of 1 ms: one figure, never 0


def test_a_second_submission_joins_the_same_group_and_marks_changes(tmp_path, monkeypatch, app, fake_runner):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r", seeds=2)
    make_run(Path("runs"), rec, seed=1, val_loss=3.2)
    CliRunner().invoke(app, ["leaderboard"])
    res = CliRunner().invoke(app, ["submit", "records/r", "--format", "json"])
    out = json.loads(res.output)
    assert len(fake_runner) == 2   # the record declares seeds = 2
    [sub] = out["submissions"]
    assert sub["n_runs"] == 3      # all runs of the same (record, digest, track, data, hardware, scale)
    assert " M leaderboard.md" in out["to_commit"] and "?? leaderboard.md" not in out["to_commit"]


def test_single_run_submission_is_shown_as_one_run(tmp_path, monkeypatch, app, fake_runner):
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "r")
    res = CliRunner().invoke(app, ["submit", "records/r", "--seeds", "1"])
    assert res.exit_code == 0, res.output
    assert "single run" in res.output and "files to commit:" in res.output
    assert "| 13.3 min (1 run) | — | 52.0 PFLOP | 2025-03-02 |" in Path("leaderboard.md").read_text()   # below the ranked ones


def test_changed_frozen_record_is_refused_before_running(tmp_path, monkeypatch, app, fake_runner):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    (rec / "train.py").write_text("# edited after freezing\n")
    res = CliRunner().invoke(app, ["submit", "records/r"])
    assert res.exit_code == 1 and "frozen record changed" in res.output
    assert fake_runner == [] and not Path("runs").exists()


def test_unknown_record_is_one_line(tmp_path, monkeypatch, app, fake_runner):
    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "muon_3xlr")
    res = CliRunner().invoke(app, ["submit", "records/muon_3x"])
    assert res.exit_code == 1 and "did you mean 'muon_3xlr'" in res.output


def test_compare_two_records(tmp_path, monkeypatch, app):
    monkeypatch.chdir(tmp_path)
    a, b = make_record(Path("records"), "a"), make_record(Path("records"), "b")
    make_submission(Path("runs"), a, [3.20, 3.21, 3.19], [800e3, 805e3, 795e3])
    make_submission(Path("runs"), b, [3.25, 3.26, 3.24], [900e3, 905e3, 895e3])
    res = CliRunner().invoke(app, ["compare", "a", "records/b", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    time, loss = out["comparisons"]
    assert out["hardware"] == "1× Tesla T4"
    assert time["metric"] == "train_time_ms" and time["significant"] and time["difference"] == pytest.approx(-100e3)
    assert loss["significant"] and loss["n_a"] == loss["n_b"] == 3
    res = CliRunner().invoke(app, ["compare", "b", "a"])
    assert res.exit_code == 0 and "train time" in res.output and "val loss" in res.output
    res = CliRunner().invoke(app, ["compare", "a", "c"])
    assert res.exit_code == 1 and "no record 'c'" in res.output and "submit" not in res.output
    make_record(Path("records"), "c")   # a record with no runs yet: submitting it is the next step
    res = CliRunner().invoke(app, ["compare", "a", "c"])
    assert res.exit_code == 1 and "no completed full-scale runs of 'c'" in res.output and "nanopoor submit records/c" in res.output
    res = CliRunner().invoke(app, ["compare", "aa", "b"])
    assert res.exit_code == 1 and "did you mean 'a'" in res.output


def test_compare_records_without_the_cli(tmp_path, monkeypatch):
    """the comparison is a function of the runs folder: the cli only prints it."""
    from nanopoor.compare import compare_records
    from nanopoor.errors import UserError

    monkeypatch.chdir(tmp_path)
    a, b = make_record(Path("records"), "a"), make_record(Path("records"), "b")
    make_submission(Path("runs"), a, [3.20, 3.21, 3.19], [800e3, 805e3, 795e3])
    make_submission(Path("runs"), b, [3.25, 3.26, 3.24], [900e3, 905e3, 895e3])
    res = compare_records(Path("runs"), "a", "records/b")
    assert (res.a, res.b, res.hardware) == ("a", "b", "1× Tesla T4")
    assert [c.metric for c in res.comparisons] == ["train_time_ms", "val_loss"] and res.speedup.ratio > 1
    with pytest.raises(UserError, match="no runs of both on 'T4'"):
        compare_records(Path("runs"), "a", "b", hardware="T4")


def test_submit_without_the_cli_puts_dev_runs_aside(tmp_path, monkeypatch, fake_runner):
    """submit() picks the runs folder and the board file itself: dev-runs/ off a gpu, nothing to commit."""
    from nanopoor.submit import submit

    monkeypatch.chdir(tmp_path)
    make_record(Path("records"), "r")
    monkeypatch.setattr(runner, "has_gpu", lambda: False)
    notes = []
    monkeypatch.setattr(runner, "preflight", lambda *a, **k: ["a note"])
    outcome = submit("records/r", n_runs=2, scale="smoke", on_note=notes.append)
    assert notes == ["a note"] and len(fake_runner) == 2
    assert outcome.dev and outcome.runs_dir == Path("dev-runs") and outcome.out == Path("dev-runs/leaderboard.md")
    assert outcome.to_commit == [] and outcome.out.is_file() and not Path("runs").exists()
