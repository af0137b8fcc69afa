"""the board keeps its numbers: times in the unit that keeps three significant figures, the speed-up
over the track's calibration recipe and the hardware FLOP cost beside each time, and a png with an
axis per track version (log where the times span a wide range) that draws every claim."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanopoor.gpu_peaks import hardware_flop_cost, hardware_peak_flops
from nanopoor.leaderboard.numbers import fmt_duration, fmt_flop, fmt_speedup, fmt_time_cell
from nanopoor.leaderboard.plot import figure, panels, plotted

REPO = Path(__file__).resolve().parents[1]
BOARD = json.loads((REPO / "leaderboard.json").read_text())


@pytest.mark.parametrize("ms, text", [(4475.0, "4.47 s"), (48_530.0, "48.5 s"), (99_960.0, "1.67 min"),
                                      (102_000.0, "1.70 min"), (891_600.0, "14.9 min"), (4_236_600.0, "70.6 min"),
                                      (7_200_000.0, "2.00 h"), (512.0, "512 ms"), (None, "—")])
def test_a_time_keeps_three_significant_figures(ms, text):
    assert fmt_duration(ms) == text


def test_mean_and_sd_share_a_unit_and_a_small_sd_is_never_zero():
    assert fmt_time_cell(4_480.0, 29.0, 3) == "4.48 ± 0.03 s (n=3)"
    assert fmt_time_cell(102_000.0, 10_800.0, 3) == "1.70 ± 0.18 min (n=3)"
    assert fmt_time_cell(800_000.0, 1.0, 3) == "13.3 ± 0.00002 min (n=3)"
    assert fmt_time_cell(6_030.0, None, 1) == "6.03 s (1 run)"
    assert fmt_speedup(10.84) == "10.8×" and fmt_speedup(None) == "—"
    assert fmt_flop(4.43e15) == "4.43 PFLOP" and fmt_flop(9.9996e17) == "1.00 EFLOP" and fmt_flop(None) == "?"


@pytest.mark.parametrize("label, gpus, tflops", [("1× Tesla T4", 1, 65), ("2× NVIDIA H200", 2, 989),
                                                 ("1× NVIDIA H100 80GB HBM3", 1, 989), ("1× NVIDIA H100 PCIe", 1, 756),
                                                 ("1× NVIDIA A100", 1, 312), ("8× NVIDIA A100-SXM4-80GB", 8, 312)])
def test_the_peak_table_reads_hardware_labels(label, gpus, tflops):
    assert hardware_peak_flops(label) == (gpus, tflops * 1e12)


def test_an_unknown_gpu_has_no_cost_not_a_guess():
    assert hardware_peak_flops("1× NVIDIA RTX PRO 9000") is None and hardware_peak_flops("cpu") is None
    assert hardware_peak_flops("1× Tesla T4 + NVIDIA A100") is None
    assert hardware_flop_cost("1× Tesla T4", 1000.0) == 65e12 and hardware_flop_cost("cpu", 1000.0) is None


def test_the_ranked_row_reads_in_seconds_with_its_speedup_and_cost(app, tmp_path, monkeypatch):
    """the committed docs runs of the rank 1 and of the calibration recipe, through `nanopoor leaderboard`."""
    monkeypatch.chdir(REPO)
    runs = tmp_path / "runs"
    for d in (REPO / "runs").glob("*-dense_muon_t4_v4-full-*"):
        shutil.copytree(d, runs / d.name)
    for d in (REPO / "runs").glob("*-baseline_adamw_epoch-full-*"):
        shutil.copytree(d, runs / d.name)
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "lb.md")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "lb.md").read_text()
    assert "| 1 | 4.48 ± 0.03 s (n=3) | 10.8× | 4.43 PFLOP | 5.6655 (p=0.00025) |" in md
    assert "| 5.8586 (3 runs) | 48.5 ± 0.3 s (n=3) | 1.00× | 48.0 PFLOP |" in md
    assert " min (n=3)" not in md.split("### docs version 2", 1)[1].split("###", 1)[0]


def test_the_committed_board_states_speedup_and_cost():
    [first] = [r for r in BOARD if r["rank"] == 1 and r["track"] == "docs"]
    assert first["speedup_vs_calibration"] == pytest.approx(10.84, abs=0.01)
    assert first["hardware_flop_cost"] == pytest.approx(989e12 * first["train_time_ms_mean"] / 1000)
    claims = [r for r in BOARD if r["kind"] == "claim"]
    assert all(r["hardware_flop_cost"] for r in claims)        # T4 and A100: peaks in the table


def test_the_png_draws_every_claim_on_an_axis_per_track_version():
    keys = [(t, v) for t, v, _ in panels(plotted(BOARD))]
    assert keys == [("docs", 2), ("docs", 1), ("fineweb-edu", 1)]
    fig = figure(BOARD)
    axes = {a.get_title().split(" (")[0]: a for a in fig.axes}
    fineweb = axes["fineweb-edu version 1"]
    crosses = [line for line in fineweb.get_lines() if line.get_marker() == "x"]
    assert len(crosses) == sum(r["kind"] == "claim" for r in BOARD) == 5
    docs2 = axes["docs version 2"]
    assert docs2.get_yscale() == "log" and docs2.get_ylabel() == "train time (s), log scale"   # 3.7 s to 48.5 s
    low, high = docs2.get_ylim()
    assert low < 4.48 < high and low > 1   # the rank 1's time is on the axis, not squashed at 0
    assert axes["docs version 1"].get_ylabel().startswith("train time (min)")
