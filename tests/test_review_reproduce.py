"""reproduce: a harness run against a published claim (synthetic run folders; the runner is faked)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from fixtures_runs import make_record
from typer.testing import CliRunner

from nanopoor.cli import reproduce as cli_reproduce, review as cli_review
from nanopoor.errors import UserError
from nanopoor.logs import parse_log
from nanopoor.reproduce import claim_log_path, compare_to_claim, peer_logs_dir, same_hardware

PEER_ROOT = Path(__file__).resolve().parents[2] / "shared" / "peer-logs"
CLAIM = {"time_min": 14.86, "date": "2025-02-03", "tokens": 5_242_880, "formula": "1024 × 8 × 4 × 160",
         "hardware": "1× Tesla T4", "person": "VatsaDev", "peer_log": "nanopoor/claimed.txt"}
CLAIMED_CURVE = [(10, 5.90), (40, 3.96), (80, 3.88), (120, 3.55), (160, 3.1957)]


def claim_log(tmp_path: Path) -> Path:
    d = tmp_path / "peer" / "nanopoor"
    d.mkdir(parents=True)
    lines = ["Starting run zz9 from scratch"] + [
        f"step: {s}, train loss: {v + 0.01:.4f}, val loss: {v:.4f}, elapsed time: {s * 0.0929:.2f} min, dt: 1.0 ms"
        for s, v in CLAIMED_CURVE]
    (d / "claimed.txt").write_text("\n".join(lines) + "\n")
    return d / "claimed.txt"


def run_folder(root: Path, *, val_loss=6.5, evals=((80, 7.1), (160, 6.5)), status="completed", scale="full",
               hardware="1× Tesla T4", train_time_ms=840_000.0, tokens=5_242_880, causal=True) -> Path:
    """a run folder as far as reproduce reads it: events.jsonl and result.json."""
    d = root / f"run-{scale}-{status}-{val_loss}"
    d.mkdir(parents=True)
    tps = 32768
    ev = [{"type": "run_start", "time": 1.0, "run_id": d.name, "record": "muon", "scale": scale, "steps": 160,
           "seq_len": 1024, "batch_size": 8, "grad_accum": 4, "world_size": 1,
           "torch": {"device": "cuda", "device_name": "Tesla T4"}}]
    ev += [{"type": "eval", "time": 2.0, "step": s, "tokens": s * tps, "train_time_ms": s * 5000.0, "val_loss": v,
            "full": s == 160} for s, v in evals]
    ev.append({"type": "run_end", "time": 9.0, "status": status, "val_loss": val_loss, "tokens": tokens,
               "train_time_ms": train_time_ms})
    (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    result = {"schema_version": 1, "run_id": d.name, "record": "muon", "status": status, "reason": "",
              "scale": scale, "seed": 5, "hardware_label": hardware, "class": "official", "train_time_ms": train_time_ms,
              "tokens": tokens, "formula": "1024 × 8 × 4 × 160", "steps": 160, "val_loss": val_loss,
              "val_loss_full": True, "causal": causal, "target_val_loss": 3.28, "track": "fineweb-edu"}
    (d / "result.json").write_text(json.dumps(result))
    return d


# --- the comparison -------------------------------------------------------------------------------
def test_a_broken_claim_is_not_reproduced(tmp_path):
    cmp = compare_to_claim(run_folder(tmp_path), CLAIM, parse_log(claim_log(tmp_path)), record="muon")
    assert cmp.verdict == "not reproduced"
    assert any("6.5000 on the canonical val set is above the target 3.28" in r for r in cmp.reasons)
    assert any("at step 160 the claim's log says 3.1957" in r for r in cmp.reasons)
    assert [r["step"] for r in cmp.steps] == [80, 160]
    assert cmp.steps[-1]["diff"] == pytest.approx(6.5 - 3.1957)
    assert cmp.time["comparable"] and cmp.time["ratio"] == pytest.approx(840_000 / (14.86 * 60_000))
    assert cmp.claim_log["target_step"] == 160 and cmp.claim_log["final_val_loss"] == 3.1957
    json.dumps(cmp.to_dict())        # serialisable as is


def test_a_matching_run_is_reproduced(tmp_path):
    run = run_folder(tmp_path, val_loss=3.25, evals=((80, 3.9), (160, 3.25)))
    cmp = compare_to_claim(run, CLAIM, parse_log(claim_log(tmp_path)))
    assert cmp.verdict == "reproduced", cmp.reasons
    assert "14.00 min on 1× Tesla T4" in cmp.reasons[0]


def test_slower_on_the_same_hardware_is_not_reproduced(tmp_path):
    run = run_folder(tmp_path, val_loss=3.25, evals=(), train_time_ms=20 * 60_000.0)
    cmp = compare_to_claim(run, CLAIM, None)
    assert cmp.verdict == "not reproduced" and "over the claimed 14.86 min" in cmp.reasons[0]
    assert cmp.claim_log is None and cmp.steps == []


def test_other_hardware_or_smoke_scale_is_inconclusive(tmp_path):
    h100 = compare_to_claim(run_folder(tmp_path / "a", val_loss=3.2, hardware="1× NVIDIA H100 80GB HBM3"), CLAIM, None)
    assert h100.verdict == "inconclusive" and "times are not comparable" in h100.reasons[0]
    smoke = compare_to_claim(run_folder(tmp_path / "b", val_loss=3.2, scale="smoke", tokens=2048), CLAIM, None)
    assert smoke.verdict == "inconclusive" and "code path only" in smoke.reasons[0]


@pytest.mark.parametrize("kw,reason", [({"status": "failed"}, "the run ended failed"),
                                       ({"causal": False}, "causality"),
                                       ({"tokens": 6_000_000}, "more than the claimed")])
def test_failures_name_their_reason(tmp_path, kw, reason):
    cmp = compare_to_claim(run_folder(tmp_path, val_loss=3.2, evals=(), **kw), CLAIM, None)
    assert cmp.verdict == "not reproduced" and any(reason in r for r in cmp.reasons)


def test_same_hardware_ignores_vendor_prefix_and_spacing():
    assert same_hardware("1× Tesla T4", "1x  tesla t4")
    assert same_hardware("8× H100 80GB HBM3", "8× NVIDIA H100 80GB HBM3")
    assert not same_hardware("1× Tesla T4", "2× Tesla T4") and not same_hardware(None, "1× Tesla T4")


# --- the command ------------------------------------------------------------------------------------
@pytest.fixture
def app():
    a = typer.Typer()
    cli_review.register(a)
    cli_reproduce.register(a)
    return a


@pytest.fixture
def fake_runner(monkeypatch, tmp_path):
    calls = []

    def run_record(record_dir, *, scale, seed, data_dir, out_root, timeout_s, track, **kw):
        calls.append({"record_dir": Path(record_dir), "scale": scale, "seed": seed, "data_dir": data_dir,
                      "out_root": out_root, "timeout_s": timeout_s, "track": track})
        return run_folder(Path(out_root), scale=scale)

    monkeypatch.setattr("nanopoor.runner.run_record", run_record)
    monkeypatch.setattr("nanopoor.runner.preflight", lambda *a, **k: [])   # as on a gpu with the dataset
    return calls


def test_reproduce_command_json(app, tmp_path, fake_runner, monkeypatch):
    log = claim_log(tmp_path)
    monkeypatch.setenv("NANOPOOR_PEER_LOGS", str(log.parents[1]))
    rec = make_record(tmp_path / "records", "muon", claims=[CLAIM])
    res = CliRunner().invoke(app, ["reproduce", str(rec), "--format", "json", "--seed", "3", "--data", str(tmp_path),
                                   "--runs", str(tmp_path / "runs"), "--plot", str(tmp_path / "overlay.png")])
    assert res.exit_code == 2, res.output    # ran, and did not reproduce
    data = json.loads(res.output)
    assert fake_runner == [{"record_dir": rec, "scale": "full", "seed": 3, "data_dir": tmp_path,
                            "out_root": tmp_path / "runs", "timeout_s": None, "track": None}]
    assert data["verdict"] == "not reproduced" and data["record"] == "muon"
    assert data["claim_log"]["path"] == str(log) and [r["step"] for r in data["steps"]] == [80, 160]
    assert data["plot"] == str(tmp_path / "overlay.png") and (tmp_path / "overlay.png").read_bytes()[:4] == b"\x89PNG"


def test_reproduce_command_table(app, tmp_path, fake_runner, monkeypatch):
    monkeypatch.setenv("NANOPOOR_PEER_LOGS", str(claim_log(tmp_path).parents[1]))
    monkeypatch.chdir(tmp_path)
    rec = make_record(tmp_path / "records", "muon", claims=[CLAIM])
    res = CliRunner().invoke(app, ["reproduce", str(rec), "--scale", "smoke", "--runs", str(tmp_path / "runs")],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines()[-1].startswith("not reproduced: ")
    assert fake_runner[0]["scale"] == "smoke"
    for text in ("reproduce muon", "1× Tesla T4", "14.86 min", "val loss at matching steps", "verdict: not reproduced"):
        assert text in res.output
    assert not list(tmp_path.glob("*.png"))        # a png only where --plot asks for one


def test_reproduce_without_claims_or_with_a_bad_number(app, tmp_path, fake_runner):
    bare = make_record(tmp_path / "records", "bare")
    res = CliRunner().invoke(app, ["reproduce", str(bare)])
    assert isinstance(res.exception, UserError) and "no [[claims]]" in str(res.exception)
    rec = make_record(tmp_path / "records", "one", claims=[CLAIM])
    res = CliRunner().invoke(app, ["reproduce", str(rec), "--claim", "3"])
    assert isinstance(res.exception, UserError) and "--claim 1..1" in str(res.exception)
    assert fake_runner == []          # nothing ran


@pytest.mark.skipif(not PEER_ROOT.is_dir(), reason="../shared/peer-logs is not present")
def test_peer_log_of_a_real_claim_resolves(monkeypatch):
    monkeypatch.delenv("NANOPOOR_PEER_LOGS", raising=False)
    assert peer_logs_dir() == PEER_ROOT
    path = claim_log_path({"peer_log": "nanopoor/GPT4-tok-run.txt"})
    assert path == PEER_ROOT / "nanopoor" / "GPT4-tok-run.txt"
    assert claim_log_path({"peer_log": "nanopoor/missing.txt"}) is None
