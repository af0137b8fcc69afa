"""verdicts over n runs: one-sided t-test against the target, all runs reported, no best-of."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from nanopoor.stats import ALPHA, compare_samples, p_below_target, verdict

TARGET = 3.28


def run(seed, loss, time_ms=900_000.0, **kw):
    r = {"run_id": f"r{seed}", "seed": seed, "val_loss": loss, "train_time_ms": time_ms, "status": "completed",
         "causal": True, "tokens": 5_242_880, "budget_tokens": 5_242_880}
    r.update(kw)
    return r


def test_three_runs_clearly_below_target_are_verified():
    v = verdict([run(1, 3.20), run(2, 3.21), run(3, 3.19)], TARGET)
    assert v.verified and v.label == "verified" and v.reasons == ()
    assert v.n_runs == 3 and v.seeds == (1, 2, 3)
    assert v.val_loss_mean == pytest.approx(3.20)
    assert v.val_loss_sd == pytest.approx(0.01)
    # the p-value is scipy's one-sided one-sample t-test, and it is small
    t = (3.20 - TARGET) / (0.01 / math.sqrt(3))
    assert v.p_value == pytest.approx(sps.t.cdf(t, df=2))
    assert v.p_value < ALPHA


def test_time_is_mean_and_sample_sd_over_all_runs():
    v = verdict([run(1, 3.2, 800_000), run(2, 3.21, 900_000), run(3, 3.19, 1_000_000)], TARGET)
    assert v.train_time_ms_mean == pytest.approx(900_000)
    assert v.train_time_ms_sd == pytest.approx(np.std([8e5, 9e5, 1e6], ddof=1))


def test_single_run_is_never_verified_even_far_below_target():
    v = verdict([run(1, 2.0)], TARGET)
    assert not v.verified and v.label == "single run"
    assert v.p_value is None and v.val_loss_sd is None and v.train_time_ms_sd is None
    assert v.val_loss_mean == 2.0


def test_two_runs_are_too_few_even_when_significant():
    v = verdict([run(1, 3.0), run(2, 3.0)], TARGET)
    assert not v.verified and v.label == "too few runs"
    assert any("< 3" in r for r in v.reasons)


def test_mean_above_target_is_not_verified():
    v = verdict([run(1, 3.30), run(2, 3.31), run(3, 3.29)], TARGET)
    assert not v.verified and v.label == "above target"
    assert v.p_value > 0.5


def test_noisy_runs_just_below_target_are_not_significant():
    losses = [3.27, 3.20, 3.35]   # mean 3.273 < 3.28 but the spread swamps the margin
    v = verdict([run(i, x) for i, x in enumerate(losses)], TARGET)
    assert not v.verified and v.label == "not significant"
    assert v.p_value == pytest.approx(sps.ttest_1samp(losses, TARGET, alternative="less").pvalue)
    assert v.p_value >= ALPHA


def test_a_failed_run_is_reported_not_dropped():
    runs = [run(1, 3.20), run(2, 3.21), run(3, 3.19), run(4, None, status="failed")]
    v = verdict(runs, TARGET)
    assert v.n_runs == 4 and not v.verified and v.label == "invalid runs"
    assert "run r4 failed" in v.reasons
    assert v.val_loss_mean == pytest.approx(3.20)   # over the runs that have a loss


@pytest.mark.parametrize("bad, reason", [
    ({"causal": False}, "run r3 not causal"),
    ({"causal": None}, "run r3 not causal"),
    ({"tokens": 5_242_881}, "run r3 over budget"),
    ({"status": "invalid"}, "run r3 invalid"),
])
def test_every_run_must_be_completed_causal_and_within_budget(bad, reason):
    v = verdict([run(1, 3.2), run(2, 3.21), run(3, 3.19, **bad)], TARGET)
    assert not v.verified and reason in v.reasons


def test_seeds_must_be_distinct():
    v = verdict([run(1, 3.2), run(1, 3.21), run(3, 3.19)], TARGET)
    assert not v.verified and "seeds not distinct" in v.reasons


def test_unknown_target_is_never_verified():
    v = verdict([run(1, 3.2), run(2, 3.21), run(3, 3.19)], None)
    assert not v.verified and v.p_value is None


def test_identical_losses_give_a_plain_p():
    assert p_below_target([3.0, 3.0, 3.0], TARGET) == 0.0
    assert p_below_target([3.5, 3.5, 3.5], TARGET) == 1.0
    assert p_below_target([3.0], TARGET) is None


def test_compare_finds_a_clearly_faster_record():
    c = compare_samples("train_time_ms", [800, 810, 790, 805], [900, 910, 895, 905])
    assert c.significant and c.p_value < ALPHA and c.difference == pytest.approx(-101.25)
    assert c.p_value == pytest.approx(sps.ttest_ind([800, 810, 790, 805], [900, 910, 895, 905],
                                                    equal_var=False, alternative="less").pvalue)
    slower = compare_samples("train_time_ms", [900, 910, 895, 905], [800, 810, 790, 805])
    assert not slower.significant and slower.p_value > 0.5


def test_compare_needs_two_runs_each():
    c = compare_samples("val_loss", [3.2], [3.3, 3.31])
    assert c.p_value is None and not c.significant and c.n_a == 1


def test_batched_verdicts_equal_one_by_one():
    from nanopoor.stats import verdicts
    groups = [
        ([run(1, 3.20), run(2, 3.21), run(3, 3.19)], TARGET),
        ([run(1, 3.27), run(2, 3.20), run(3, 3.35)], TARGET),
        ([run(1, 5.9), run(2, 5.8), run(3, 5.95), run(4, 5.85)], 6.0),   # another track's target
        ([run(1, 3.0)], TARGET),
        ([run(1, 3.0), run(2, 3.0), run(3, 3.0)], TARGET),
        ([run(1, 3.2), run(2, 3.1), run(3, 3.0)], None),
    ]
    assert verdicts(groups) == [verdict(results, target) for results, target in groups]
    one = verdicts(groups)[2]
    assert one.p_value == pytest.approx(sps.ttest_1samp([5.9, 5.8, 5.95, 5.85], 6.0, alternative="less").pvalue)


def test_the_groupby_figures_are_mean_sd_to_the_bit():
    """stats.figures aggregates many submissions in one pandas groupby; its numbers must be the ones
    mean_sd gives a single submission (groupby's cython mean/std would not be, in the last bit)."""
    import pandas as pd

    from nanopoor.stats import figures, mean_sd
    rng = np.random.default_rng(7)
    rows, expected = [], {}
    for g in range(300):
        n = int(rng.integers(1, 7))
        losses = list(3.2 + rng.normal(0, 0.03, n))
        times = list(6e5 + rng.normal(0, 7e3, n))
        if g % 5 == 0:
            losses[0] = None   # a failed run: counted, not averaged
        if g % 7 == 0:
            times[-1] = float("nan")
        rows += [{"group": g, "val_loss": a, "train_time_ms": b} for a, b in zip(losses, times)]
        expected[g] = (mean_sd([x for x in losses if x is not None]), mean_sd([x for x in times if math.isfinite(x)]))
    got = figures(pd.DataFrame(rows).astype(object), "group")
    for g, ((lm, ls), (tm, ts)) in expected.items():
        row = got.loc[g]
        for value, want in ((row.val_loss_mean, lm), (row.val_loss_sd, ls), (row.train_time_ms_mean, tm),
                            (row.train_time_ms_sd, ts)):
            assert (math.isnan(value) and want is None) or value == want, (g, value, want)
