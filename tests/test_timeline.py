"""the timeline check: a completed run's event stamps must be able to have produced its claimed train
time and token counts; each kind of inconsistent log fails with the file and field named, and every
committed run passes."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runs import make_record, make_run
from nanopoor.event_reader import read_events
from nanopoor.timeline import SLACK_MS, drift_components, timeline_findings, tolerance_ms

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"batch_size": 8, "seq_len": 64, "grad_accum": 2}   # 1,024 tokens a step
PER_STEP = 1024
COMPLETED = {"status": "completed"}


def harness03_log(train_ms: float = 4000.0, steps: int = 40, every: int = 10, pause_ms: float = 200.0) -> list[dict]:
    """harness 0.3's log: progress evals pause the clock (untimed), the claim's evaluation follows the
    clock's last stop; every stamp a millisecond late, as the event writes make them."""
    t0, late = 100.0, 0.001
    events = [{"type": "run_start", "time": 90.0}, {"type": "warmup_end", "time": 99.0, "warmup_time_ms": 800.0, "capped": False},
              {"type": "train_start", "time": t0}]
    paused = 0.0
    for s in range(1, steps + 1):
        ms = train_ms * s / steps
        events.append({"type": "step", "time": t0 + (ms + paused) / 1000 + late, "step": s, "tokens": s * PER_STEP,
                       "train_loss": 5.0, "train_time_ms": ms})
        if s % every == 0 and s < steps:
            paused += pause_ms
            events.append({"type": "eval", "time": t0 + (ms + paused) / 1000 + late, "step": s, "tokens": s * PER_STEP,
                           "train_time_ms": ms, "val_loss": 6.0, "split": "progress", "untimed": True, "eval_time_ms": pause_ms})
    end = t0 + (train_ms + paused + 300.0) / 1000 + late
    events.append({"type": "eval", "time": end, "step": steps, "tokens": steps * PER_STEP, "train_time_ms": train_ms,
                   "val_loss": 5.5, "split": "val", "full": True, "untimed": True, "eval_time_ms": 300.0})
    events.append({"type": "run_end", "time": end + 0.5, "status": "completed", "train_time_ms": train_ms})
    return events


def contract3_log(train_ms: float = 4000.0, steps: int = 40, every: int = 10) -> list[dict]:
    """harness 0.4's log: the supervisor stamps everything, progress evals run on the clock, the
    handover of the weights is the clock's last stop."""
    t0 = 100.0
    events = [{"type": "run_start", "time": 90.0}, {"type": "train_start", "time": t0, "setup_ms": 2000.0}]
    for s in range(1, steps + 1):
        ms = train_ms * s / steps
        events.append({"type": "step", "time": t0 + ms / 1000, "step": s, "tokens": s * PER_STEP, "train_loss": 5.0,
                       "train_time_ms": ms})
        if s % every == 0 and s < steps:
            events.append({"type": "eval", "time": t0 + ms / 1000, "step": s, "tokens": s * PER_STEP, "train_time_ms": ms,
                           "val_loss": 6.0, "split": "progress", "reported_by": "record", "untimed": False})
    end = t0 + train_ms / 1000
    events.append({"type": "handover", "time": end + 0.002, "train_time_ms": train_ms + 2.0, "tokens": steps * PER_STEP})
    events.append({"type": "eval", "time": end + 0.5, "step": steps, "train_time_ms": train_ms + 2.0, "val_loss": 5.5,
                   "split": "val", "full": True})
    events.append({"type": "run_end", "time": end + 0.6, "status": "completed", "train_time_ms": train_ms + 2.0})
    return events


def edit(events: list[dict], where, **changes) -> list[dict]:
    """a copy of the log with `changes` applied to every event `where(event)` is true for."""
    out = copy.deepcopy(events)
    for e in out:
        if where(e):
            e.update(changes)
    return out


def is_type(*types):
    return lambda e: e["type"] in types


def claim(e):
    return e["type"] == "eval" and e.get("split") == "val"


def test_every_committed_run_agrees_with_its_timeline():
    runs = sorted(p for p in (REPO / "runs").iterdir() if (p / "result.json").is_file())
    assert len(runs) >= 45
    bad = {}
    for d in runs:
        result, config = (json.loads((d / f).read_text()) for f in ("result.json", "config.json"))
        events = read_events(d / "events.jsonl")
        found = timeline_findings(config, events, result)
        if found:
            bad[d.name] = found
        drift = drift_components(config, events, result)
        assert 0 < drift["drift_ms"] < drift["tolerance_ms"] / 4, (d.name, drift)   # the margin the tolerance was chosen with
    assert bad == {}


@pytest.mark.parametrize("log", [harness03_log, contract3_log])
def test_honest_logs_agree(log):
    assert timeline_findings(CONFIG, log(), COMPLETED) == []


def test_a_run_that_did_not_complete_claims_nothing_to_check():
    assert timeline_findings(CONFIG, harness03_log()[:5], {"status": "killed"}) == []


@pytest.mark.parametrize("forge, words", [
    # the forger of docs/trust.md's D6: the claim halved in every copy verify used to read
    (lambda ev: edit(ev, lambda e: claim(e) or e["type"] == "run_end", train_time_ms=2000.0),
     "events.jsonl: eval.train_time_ms: the clock's last reading is 2,000.0 ms, but the stamps from train_start"),
    # ... and in every train_time_ms of the log, with the stamps left as they were
    (lambda ev: [dict(e, train_time_ms=e["train_time_ms"] / 2) if "train_time_ms" in e else e for e in ev],
     "events.jsonl: step.train_time_ms: at step 2 it says 100.0 ms, but its stamp puts it 201.0 ms of training after train_start"),
    (lambda ev: edit(ev, is_type("run_end"), train_time_ms=3999.0), "events.jsonl: run_end.train_time_ms: 3999.0 is not"),
    (lambda ev: [dict(e, tokens=e["tokens"] - 512) if e["type"] == "step" and e["step"] >= 17 else e for e in ev],
     "events.jsonl: tokens: step 17 says 16,896; 1 step(s) of 1,024 (batch_size × seq_len × grad_accum in config.json)"),
    (lambda ev: edit(ev, lambda e: e["type"] == "step" and e["step"] == 21, train_time_ms=100.0),
     "events.jsonl: train_time_ms: step 21 says 100.0 ms, less than step 20's 2,000.0 ms"),
    (lambda ev: edit(ev, lambda e: e["type"] == "step" and e["step"] == 5, time=50.0),
     "events.jsonl: time: event 8 (step) is stamped before the event above it"),
    (lambda ev: [e for e in ev if e["type"] != "train_start"], "events.jsonl: train_start: a completed run has no train_start"),
    (lambda ev: [e for e in ev if not claim(e)], "events.jsonl: eval: a completed run has no claim's evaluation"),
    (lambda ev: [e for e in ev if e["type"] != "step" or e["step"] != 40] + [dict(ev[-3], time=200.0)],   # step 40, moved last
     "events.jsonl: step: a step event follows the claim's eval"),
    # a pause stretched to swallow training time: it would have begun before the clock reached its step
    (lambda ev: edit(ev, lambda e: e["type"] == "eval" and e.get("step") == 10 and not claim(e), eval_time_ms=1200.0),
     "events.jsonl: eval.train_time_ms: at step 10 it says 1,000.0 ms, but its stamp puts it 1.0 ms of training"),
])
def test_each_kind_of_inconsistent_harness03_log_fails(forge, words):
    found = timeline_findings(CONFIG, forge(harness03_log()), COMPLETED)
    assert any(f.startswith(words) for f in found), found


@pytest.mark.parametrize("forge, words", [
    (lambda ev: edit(ev, lambda e: e["type"] in ("handover", "run_end") or claim(e), train_time_ms=2000.0),
     "events.jsonl: handover.train_time_ms: the clock's last reading is 2,000.0 ms, but the stamps from train_start to handover hold 4,002.0 ms"),
    (lambda ev: edit(ev, lambda e: e["type"] == "eval" and e.get("step") == 10, untimed=True),
     "events.jsonl: untimed: the eval at step 10 paused the clock; contract 3 has no untimed pauses"),
    (lambda ev: [e for e in ev if e["type"] != "handover"], "events.jsonl: handover: a completed run has no handover event"),
    (lambda ev: edit(ev, is_type("run_end"), train_time_ms=3000.0), "events.jsonl: run_end.train_time_ms: 3000.0 is not the clock's last reading, handover's"),
])
def test_each_kind_of_inconsistent_contract3_log_fails(forge, words):
    result = {**COMPLETED, "contract_version": 3}
    found = timeline_findings(CONFIG, forge(contract3_log()), result)
    assert any(f.startswith(words) for f in found), found


@pytest.mark.parametrize("claims", [{"contract_version": 3}, {"harness_version": "0.4.0"}, {"harness_version": "1.0"}])
def test_a_log_in_the_older_form_from_harness_04_cannot_borrow_its_pauses(claims):
    found = timeline_findings(CONFIG, harness03_log(), {**COMPLETED, **claims})
    assert found[0].startswith("events.jsonl: handover: a completed run has no handover event"), found
    assert timeline_findings(CONFIG, harness03_log(), {**COMPLETED, "harness_version": "0.3.2", "contract_version": 2}) == []


def test_the_fixtures_write_the_timeline_of_the_harness_a_result_names(tmp_path, monkeypatch):
    from nanopoor.verify import verify_target

    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    old = make_run(Path("runs"), rec, seed=1, evals=[(2_621_440, 4.0)])
    new = make_run(Path("runs"), rec, seed=2, evals=[(2_621_440, 4.0)], overrides={"harness_version": "0.4.0", "contract_version": 3})
    assert "handover" not in (old / "events.jsonl").read_text() and "handover" in (new / "events.jsonl").read_text()
    assert [c.problems for c in verify_target("runs")] == [[], []]


def test_setup_past_its_cap_is_on_the_clock_from_the_first_batch():
    charged = [dict(e, train_time_ms=e["train_time_ms"] + 500.0) if "train_time_ms" in e else e for e in contract3_log()]
    assert timeline_findings(CONFIG, charged, COMPLETED) != []
    charged = edit(charged, is_type("train_start"), setup_charged_ms=500.0)
    assert timeline_findings(CONFIG, charged, COMPLETED) == []


def test_the_claims_charge_after_the_handover_adds_to_run_end_and_nothing_else():
    """contract 3: the claim's forward time past its allowance is charged after the clock stopped;
    run_end's train time is the handover's plus that charge, and a charge never lowers it."""
    ms = next(e for e in contract3_log() if e["type"] == "handover")["train_time_ms"]
    charged = edit(contract3_log(), is_type("run_end"), train_time_ms=ms + 350.0, eval_charged_ms=350.0)
    assert timeline_findings(CONFIG, charged, COMPLETED) == []
    unsaid = edit(contract3_log(), is_type("run_end"), train_time_ms=ms + 350.0)
    assert "is not the clock's last reading" in timeline_findings(CONFIG, unsaid, COMPLETED)[0]
    lowered = edit(contract3_log(), is_type("run_end"), train_time_ms=ms - 350.0, eval_charged_ms=-350.0)
    assert any("is negative" in f for f in timeline_findings(CONFIG, lowered, COMPLETED))


def test_the_tolerance_grows_with_the_pauses_and_the_span():
    assert tolerance_ms(0, 0.0) == SLACK_MS
    assert tolerance_ms(10, 0.0) > tolerance_ms(1, 0.0) and tolerance_ms(0, 600_000.0) == pytest.approx(SLACK_MS + 600.0)


def test_verify_names_the_file_and_field_of_a_forged_timeline(tmp_path, monkeypatch, app):
    """the whole folder forged as the old forger did (result, run_end, the claim's eval, log.txt, every
    hash): verify fails on the timeline alone."""
    from nanopoor.result import files_digest, write_result

    monkeypatch.chdir(tmp_path)
    run = make_run(Path("runs"), make_record(Path("records"), "r"), seed=1, train_time_ms=800_000.0,
                   evals=[(2_621_440, 4.0)])
    events = read_events(run / "events.jsonl")
    halved = edit(events, lambda e: e["type"] == "run_end" or e == events[-2], train_time_ms=400_000.0)
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in halved))
    (run / "log.txt").write_text((run / "log.txt").read_text().replace("train_time: 800.0s", "train_time: 400.0s"))
    result = json.loads((run / "result.json").read_text())
    (run / "result.json").unlink()
    result.pop("result_sha256")
    write_result(run, {**result, "train_time_ms": 400_000.0, "files": files_digest(run)})
    res = CliRunner().invoke(app, ["verify", str(run), "--format", "json"])
    assert res.exit_code == 1, res.output
    [check] = json.loads(res.output)["checks"]
    assert check["problems"] == [check["problems"][0]] and check["problems"][0].startswith(
        "events.jsonl: eval.train_time_ms: the clock's last reading is 400,000.0 ms, but the stamps"), check["problems"]
