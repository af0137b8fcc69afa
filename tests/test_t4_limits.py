"""--as-t4: one T4's limits enforced on any device (harness/t4_limits.py), through the cli.

each refusal is a real run of the t4_breaker fixture under the harness on the cpu: the record
breaks one limit and the run must end invalid with a `t4_limits` violation naming it. the
memory cap itself needs a gpu (scripts/gpu_t4_refusal.sh)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, copy_record
from harness import t4_limits
from nanopoor.cli import app
from nanopoor.errors import UserError

BREAKER = FIXTURES / "records" / "t4_breaker"
REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

# mode -> the words the reason must hold
REFUSALS = {
    "bf16_params": ("t4_limits: bf16/fp8", "is torch.bfloat16; a T4 computes in fp16 or fp32"),
    "bf16_autocast": ("t4_limits: bf16/fp8", "torch.autocast with torch.bfloat16"),
    "bf16_forward": ("t4_limits: bf16/fp8", "forward computes in bfloat16"),
    "tf32_on": ("t4_limits: tf32", "matmul"),
    "flash_on": ("t4_limits: attention", "flash"),
}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def json_of(res) -> dict:
    return json.loads(res.output[res.output.index("{"):])


def test_oom_reason_names_the_cap_and_leaves_other_failures_alone():
    from supervisor.judge import t4_oom_reason

    named = t4_oom_reason("OutOfMemoryError: CUDA out of memory. Tried to allocate 16.00 GiB")
    assert named.startswith("t4_limits: memory: out of memory under the 15 GiB a T4 has")
    assert "Tried to allocate 16.00 GiB" in named
    assert t4_oom_reason("RuntimeError: shapes differ") == "RuntimeError: shapes differ"
    assert t4_limits.refused("torch.bfloat16") and t4_limits.refused("torch.float8_e4m3fn")
    assert not t4_limits.refused("torch.float16") and not t4_limits.refused("torch.float32")


@pytest.mark.parametrize("verb, extra", [("run", []), ("submit", ["--scale", "smoke", "--seeds", "1"]), ("reproduce", ["--scale", "smoke"])])
def test_every_verb_that_runs_passes_as_t4_to_the_runner(monkeypatch, tmp_path, verb, extra):
    from nanopoor import runner as runner_mod

    seen = {}

    def fake_run_record(*args, **kwargs):
        seen.update(kwargs)
        raise UserError("stopped by the test")

    monkeypatch.setattr(runner_mod, "run_record", fake_run_record)
    monkeypatch.setattr(runner_mod, "preflight", lambda *a, **k: [])   # no dataset or gpu needed: the run is faked
    record = REPO / "records" / "muon_3xlr" if verb == "reproduce" else copy_record(BREAKER, tmp_path / "records")
    for flag, expected in (("--as-t4", True), (None, False)):
        seen.clear()
        res = invoke(verb, record, *extra, *([flag] if flag else []))
        assert res.exit_code == 1 and "stopped by the test" in res.output, res.output
        assert seen["as_t4"] is expected


@pytest.mark.slow
def test_an_honest_record_completes_under_the_limits_and_says_so(tiny_data, tmp_path):
    rec = copy_record(BREAKER, tmp_path / "records")
    res = invoke("run", rec, "--data", tiny_data, "--runs", tmp_path / "runs", "--seed", 5, "--as-t4", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json_of(res)
    assert out["status"] == "completed" and out["t4_limits"] is True, out
    run_dir = Path(out["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["as_t4"] is True
    assert json.loads((run_dir / "result.json").read_text())["t4_limits"] is True
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    applied = next(e for e in events if e["type"] == "t4_limits")
    assert applied["memory_cap_bytes"] == 15 * 2**30 and applied["tf32"] is False
    assert applied["sdp_backends"] == ["efficient", "math"]


@pytest.mark.slow
def test_without_the_flag_a_bf16_record_completes_and_the_result_says_no_limits(tiny_data, tmp_path):
    rec = copy_record(BREAKER, tmp_path / "records", name="t4_bf16", args={"mode": "bf16_autocast"})
    res = invoke("run", rec, "--data", tiny_data, "--runs", tmp_path / "runs", "--seed", 5, "--format", "json")
    out = json_of(res)
    assert res.exit_code == 0 and out["status"] == "completed" and out["t4_limits"] is False, res.output
    assert json.loads((Path(out["run_dir"]) / "config.json").read_text())["as_t4"] is False


@pytest.mark.slow
def test_each_broken_limit_ends_the_run_invalid_with_the_limit_named(tiny_data, tmp_path):
    from nanopoor.runner import run_record

    def one(mode):
        rec = copy_record(BREAKER, tmp_path / "records", name=f"t4_{mode}", args={"mode": mode})
        return mode, run_record(rec, scale="smoke", seed=7, data_dir=tiny_data, out_root=tmp_path / "runs",
                                quiet=True, as_t4=True)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = dict(pool.map(one, [*REFUSALS, "raise_oom"]))
    for mode, words in REFUSALS.items():
        r = json.loads((runs[mode] / "result.json").read_text())
        assert r["status"] == "invalid" and r["t4_limits"] is True, (mode, r["status"], r["reason"])
        for w in words:
            assert w in r["reason"], (mode, r["reason"])
        assert r["violations"][0]["kind"] == "t4_limits", (mode, r["violations"])
    oom = json.loads((runs["raise_oom"] / "result.json").read_text())
    assert oom["status"] == "failed" and oom["reason"].startswith("t4_limits: memory: out of memory under the 15 GiB"), oom["reason"]


def test_the_readme_t4_estimates_are_the_arithmetic_of_t4_estimate():
    from nanopoor.t4_estimate import FASTEST, estimate

    shape = {k: v for k, v in FASTEST.items() if k != "record"}
    readme = (REPO / "README.md").read_text()
    floor, five, docs, race = (estimate(**shape, tokens=t) for t in (100_000_000, 500_000_000, 5_242_880, 1_966_080))
    assert round(floor.flops_per_token / 1e6) == 774 and "≈ 774M FLOPs per token" in readme
    assert f"≥ {floor.hours:.1f} h ({floor.hours_range[0]:.1f}–{floor.hours_range[1]:.1f} h) for the track's floor of 100M tokens" in readme
    assert f"{five.hours:.1f} h ({five.hours_range[0]:.1f}–{five.hours_range[1]:.1f} h) for 500M" in readme
    assert f"{docs.hours * 60:.1f} min ({docs.hours_range[0] * 60:.1f}–{docs.hours_range[1] * 60:.1f} min) for its 5.24M-token budget" in readme
    assert f"{race.hours * 60:.1f} min ({race.hours_range[0] * 60:.1f}–{race.hours_range[1] * 60:.1f} min) for `dense_muon_t4_v4`'s 1.97M tokens" in readme
    assert f"about {round(floor.tokens_per_s, -3):,.0f} tokens/s" in readme
    assert f"about {15 * 60 * floor.tokens_per_s / 1e6:.0f}M tokens at this speed" in readme
    assert floor.hours > 1.0   # FineWeb-Edu on one T4 is hours, not the seed's 15 minutes
