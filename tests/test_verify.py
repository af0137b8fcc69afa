"""verify: digests and rules of committed runs; tampering of each kind is caught."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runs import H100, make_record, make_run, rewrite_result
from nanopoor.verify import verify_target


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "muon_3xlr")
    runs = [make_run(Path("runs"), rec, seed=s) for s in (11, 12)]
    return rec, runs


def problems(target, **kw):
    return [p for c in verify_target(str(target), **kw) for p in c.problems]


def test_clean_runs_verify(tree):
    rec, runs = tree
    checks = verify_target("runs")
    assert [c.subject for c in checks] == [r.name for r in runs]
    assert all(c.ok for c in checks), [c.problems for c in checks]


def test_edited_val_loss_in_result_json_is_caught(tree):
    _, runs = tree
    rewrite_result(runs[0], val_loss=3.0)
    found = problems(runs[0])
    assert any("result.json was edited" in p for p in found)
    assert any(p.startswith("val_loss: run_end says") and "result.json 3.0" in p for p in found)
    assert problems(runs[1]) == []


def _forge(run_dir, **changes):
    """what a forger who has read nanopoor.result does: edit the numbers in events.jsonl and
    result.json alike, then recompute every file hash and the result's own digest."""
    from nanopoor.result import files_digest, write_result

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    for e in events:
        if e["type"] == "run_end":
            e.update(changes)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    result = json.loads((run_dir / "result.json").read_text())
    result.pop("result_sha256", None)
    result.update(changes)
    (run_dir / "result.json").unlink()
    result["files"] = files_digest(run_dir)
    write_result(run_dir, result)


@pytest.mark.parametrize("changes, words", [
    ({"val_loss": 2.9}, "val_loss: log.txt prints"),
    ({"train_time_ms": 100_000.0}, "train_time_ms: log.txt prints"),
])
def test_a_consistently_forged_result_and_event_log_disagree_with_the_log(tree, changes, words):
    _, runs = tree
    _forge(runs[0], **changes)
    found = problems(runs[0])
    assert not any("sha256" in p or "was edited" in p for p in found), found   # every hash recomputed
    assert any(p.startswith(words) for p in found), found


def test_edited_log_is_caught(tree):
    _, runs = tree
    with open(runs[1] / "log.txt", "a") as f:
        f.write("step: 160/160 val_loss: 3.0000\n")
    assert problems(runs[1]) == ["log.txt was edited (sha256 does not match)"]


def test_deleted_and_added_files_are_caught(tree):
    _, runs = tree
    (runs[0] / "events.jsonl").unlink()
    (runs[0] / "notes.txt").write_text("added later")
    found = problems(runs[0])
    assert "events.jsonl is missing" in found
    assert any(p.startswith("notes.txt is not covered") for p in found)


def test_result_without_its_own_digest_is_unverifiable(tree):
    _, runs = tree
    data = json.loads((runs[0] / "result.json").read_text())
    del data["result_sha256"]
    (runs[0] / "result.json").write_text(json.dumps(data))
    assert any("no result_sha256" in p for p in problems(runs[0]))


def test_a_run_of_a_record_changed_since_is_flagged(tree):
    rec, runs = tree
    with open(rec / "train.py", "a") as f:
        f.write("# tuned after the runs\n")
    found = problems("runs")
    assert sum("changed since this run" in p for p in found) == 2
    # verifying the record itself says its frozen digest no longer matches
    checks = verify_target("muon_3xlr")
    assert checks[0].kind == "record" and "frozen record changed" in checks[0].problems[0]
    assert [c.kind for c in checks] == ["record", "run", "run"]


@pytest.mark.parametrize("overrides, expected", [
    ({"causal": False}, "completed but causal is not true"),
    ({"val_loss": None}, "completed but val_loss is not a finite number"),
    ({"tokens": 5_242_881}, "tokens 5242881 > budget_tokens 5242880"),
    ({"wallclock_ms": 100.0}, "train+eval+warmup 980000 ms > wallclock 100 ms"),
    ({"class": "official", "hardware_label": "1× Tesla T4"}, "class 'official' but its hardware makes it 'unofficial'"),
    ({"track": "fineweb_edu"}, "unknown track 'fineweb_edu' (did you mean 'fineweb-edu'?)"),
    ({"status": "done"}, "unknown status 'done'"),
])
def test_rules_on_self_consistent_but_wrong_results(tmp_path, monkeypatch, overrides, expected):
    # written with a valid digest: the numbers themselves break a rule
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    gpu = H100 if overrides.get("class") == "official" else None
    kw = {"gpu": gpu} if gpu else {}
    run = make_run(Path("runs"), rec, seed=1, overrides=overrides, **kw)
    found = problems(run)
    assert any(p.startswith(expected) for p in found), found


def test_failed_and_invalid_runs_are_consistent_without_a_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    make_run(Path("runs"), rec, seed=1, status="failed", val_loss=None, causal=None)
    make_run(Path("runs"), rec, seed=2, status="invalid", causal=False)
    assert problems("runs") == []


def test_official_t4_and_cpu_dev_classes_verify(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    t4 = make_run(Path("runs"), rec, seed=1)
    cpu = make_run(Path("runs"), rec, seed=2, gpu=None)
    assert json.loads((t4 / "result.json").read_text())["class"] == "official"
    assert json.loads((cpu / "result.json").read_text())["class"] == "dev"
    assert problems("runs") == []


def test_unfinished_run_folder_is_flagged(tree):
    Path("runs/20250101-half-written").mkdir()
    assert any("no result.json" in p for p in problems("runs"))


def test_cli_verify_json_and_exit_codes(tree, app):
    _, runs = tree
    res = CliRunner().invoke(app, ["verify", "runs", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ok"] and out["checked"] == 2
    rewrite_result(runs[0], tokens=1)
    res = CliRunner().invoke(app, ["verify", str(runs[0]), "--format", "json"])
    assert res.exit_code == 1
    out = json.loads(res.output)
    assert not out["ok"] and out["checks"][0]["subject"] == runs[0].name
    res = CliRunner().invoke(app, ["verify", "runs"])
    assert res.exit_code == 1 and "FAILED" in res.output and "1 of 2 verify" in res.output


def test_cli_verify_unknown_target_is_one_line(tree, app):
    res = CliRunner().invoke(app, ["verify", "muon_3xl"])
    assert res.exit_code == 1
    assert "did you mean 'muon_3xlr'" in res.output and "Traceback" not in res.output
