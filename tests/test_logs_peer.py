"""the published NanoPoor logs in ../shared/peer-logs: every file parses (skipped without them)."""
from __future__ import annotations

from pathlib import Path

import pytest

from nanopoor.logs import parse_log

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-logs" / "nanopoor"
pytestmark = pytest.mark.skipif(not PEER.is_dir(), reason="../shared/peer-logs is not present")

# file -> (runs, last step of the last run, final val loss of the last run, elapsed min at that step)
EXPECTED = {
    "tweaks_run_nosave.txt": (1, 160, 3.1957, 14.86),
    "Muon_run.txt": (1, 190, 3.2258, 15.04),
    "PSGD_run.txt": (1, 300, 2.9681, 37.1768),
    "GPT4-tok-run.txt": (1, 570, 3.2631, 70.6161),
    "A100_run.txt": (1, 170, 3.1830, 7.63),
    "shrunk_run.txt": (1, 100, 3.2284, 7.09),
    "lr_test_runs.txt": (6, 210, 3.2462, 17.34),
}


def test_every_peer_log_is_covered():
    assert {p.name for p in PEER.iterdir() if p.suffix == ".txt"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_peer_log_parses(name):
    runs, last_step, final_val, minutes = EXPECTED[name]
    log = parse_log(PEER / name)
    assert log.format == "nanopoor-text"
    assert len(log.runs) == runs
    last = log.runs[-1]
    assert last.last.step == last_step
    assert last.final_val_loss == pytest.approx(final_val)
    assert last.final_time_ms == pytest.approx(minutes * 60_000)
    assert not log.has_source and not log.has_hardware
    for run in log.runs:
        steps = [p.step for p in run.steps]
        assert steps == sorted(set(steps))           # no step counted twice
        assert all(p.train_loss is not None and p.val_loss is not None for p in run.steps)


def test_lr_test_runs_are_named_by_their_headings():
    log = parse_log(PEER / "lr_test_runs.txt")
    assert [r.name for r in log.runs] == ["1e-4", "1e-3", "3e-3", "8e-4", "5e-4", "3e-4"]
    assert [r.last.step for r in log.runs] == [180, 160, 170, 140, 120, 210]


def test_a100_debug_prints_between_lines_are_skipped():
    log = parse_log(PEER / "A100_run.txt")
    assert [p.step for p in log.run.steps] == list(range(10, 171, 10))
    assert log.unparsed_lines >= 170          # the "Inside loop ..." prints, counted, not parsed


def test_first_run_states_its_own_formula():
    log = parse_log(PEER / "GPT4-tok-run.txt")
    assert log.arguments == {"ctx_len": 1024, "batch_size": 6, "grad_accum": 4, "steps": 570}
    assert log.run.final_tokens == 14_008_320
    assert log.run.steps[0].step == 0 and log.run.steps[0].time_ms == pytest.approx(4.2598 * 60_000)


def test_number_one_gets_the_published_formula():
    log = parse_log(PEER / "tweaks_run_nosave.txt")
    assert log.meta["run_ids"] == ["2yapG8"]
    hit = log.run.first_at_or_below(3.28)
    assert (hit.step, hit.tokens) == (160, 1024 * 8 * 4 * 160)
    assert "1024 × 8 × 4" in log.run.tokens_formula


def test_shrunk_run_has_no_repeated_step():
    # the README says this log repeats lines; in this copy no step line repeats: parsed once each
    run = parse_log(PEER / "shrunk_run.txt").run
    assert len(run.steps) == 10 and run.repeated_lines == [] and run.restarts == []
