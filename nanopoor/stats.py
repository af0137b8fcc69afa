"""verdicts over a submission's runs, and comparisons between two submissions, with scipy.

a verdict is over every run of a submission (no best-of): n runs with distinct
harness-assigned seeds, every one completed, causal and within its token budget, and a mean
final val loss at or below the target with a one-sided t-test p < 0.01. the target is the one
the runs stored (result.json `target_val_loss`, of their `track_version`), never tracks.toml's
current one: a new target is a new track version and does not re-judge old runs. a single run
is shown as one run, never as verified. this module reads plain result dicts (result.json)
and never touches the file system: pandas aggregates many submissions' runs at once, scipy
gives the p-values.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from nanopoor.jsonio import is_finite
from nanopoor.result import RunResult

ALPHA = 0.01     # significance level of the one-sided test against the target
MIN_RUNS = 3     # fewer runs than this can be shown, never verified


@dataclass(frozen=True)
class Verdict:
    n_runs: int                      # every run of the submission, failed ones included
    seeds: tuple[int, ...]           # harness-assigned seeds, in run order
    target_val_loss: float | None    # the runs' stored target; None: calibration runs (or unknown)
    val_loss_mean: float | None      # over runs with a finite final val loss
    val_loss_sd: float | None        # sample sd (ddof=1); None below 2 losses
    p_value: float | None            # one-sided t-test of mean loss < target; None below 2 losses
    train_time_ms_mean: float | None
    train_time_ms_sd: float | None
    verified: bool
    label: str                       # verified / single run / too few runs / above target / not significant / invalid runs
    reasons: tuple[str, ...] = field(default_factory=tuple)  # why not verified, one short phrase each

    def to_dict(self) -> dict:
        return asdict(self)


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """mean and sample sd (ddof=1); sd is None for fewer than two values."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return float(arr.mean()), sd


def p_values_below(samples: Sequence[Sequence[float]], targets: Sequence[float | None]) -> list[float | None]:
    """one-sided p that each sample's mean is below its target (scipy's ttest_1samp, alternative
    "less"); None where undefined (n < 2, no target). samples of equal size go to scipy as one
    2-d call: a leaderboard of hundreds of submissions pays scipy's per-call overhead a few times."""
    out: list[float | None] = [None] * len(samples)
    by_n = defaultdict(list)
    for i, (xs, target) in enumerate(zip(samples, targets)):
        if target is None or len(xs) < 2:
            continue
        if all(x == xs[0] for x in xs):
            # identical losses: scipy warns and returns 0/nan; the answer is plain
            out[i] = 0.0 if xs[0] < target else 1.0
        else:
            by_n[len(xs)].append(i)
    for idx in by_n.values():
        arr = np.asarray([samples[i] for i in idx], dtype=np.float64)        # (k, n)
        popmean = np.asarray([[targets[i]] for i in idx], dtype=np.float64)  # (k, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ps = np.atleast_1d(sps.ttest_1samp(arr, popmean, axis=1, alternative="less").pvalue)
        for i, p in zip(idx, ps):
            out[i] = float(p) if math.isfinite(p) else None
    return out


def p_below_target(losses: Sequence[float], target: float) -> float | None:
    """one-sided p-value that the mean loss is below target; None when undefined (n < 2)."""
    return p_values_below([list(losses)], [target])[0]


def finite_losses(results: Sequence[RunResult]) -> list[float]:
    return [r["val_loss"] for r in results if is_finite(r.get("val_loss"))]


def judged_target(results: Sequence[RunResult]) -> float | None:
    """the target a submission is judged against: the one its runs stored when they ran (a
    submission's runs share one track version). None when they ran while the track was
    calibrating, or when they disagree (then nothing can be verified)."""
    targets = {r.get("target_val_loss") for r in results}
    if len(targets) != 1:
        return None
    (t,) = targets
    return float(t) if is_finite(t) else None


def run_problems(result: RunResult) -> list[str]:
    """why one run cannot count towards a verified result (empty when it can)."""
    rid = result.get("run_id", "?")
    out = []
    if result.get("status") != "completed":
        out.append(f"run {rid} {result.get('status', 'has no status')}")
    elif result.get("causal") is not True:
        out.append(f"run {rid} not causal")
    tokens, budget = result.get("tokens"), result.get("budget_tokens")
    if is_finite(tokens) and is_finite(budget) and tokens > budget:
        out.append(f"run {rid} over budget")
    if result.get("status") == "completed" and not is_finite(result.get("val_loss")):
        out.append(f"run {rid} has no final val loss")
    return out


FIGURES = ("val_loss", "train_time_ms")   # the result keys a verdict gives a mean and sd of


def figures(runs: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """per group of runs (one row each, result keys as columns): the mean and sample sd (ddof=1)
    of the finite values of each FIGURES key, as <key>_mean and <key>_sd (NaN where mean_sd
    says None). the aggregates are Series.mean/std, numpy's own sums, not groupby's cython
    kernels: those add with Kahan's compensation and differ from mean_sd in the last bit, and a
    submission's figures must not depend on how many others were judged with it."""
    parts = []
    for key in FIGURES:
        finite = runs[runs[key].map(is_finite)].astype({key: "float64"})
        parts.append(finite.groupby(by)[key].agg([(f"{key}_mean", pd.Series.mean), (f"{key}_sd", pd.Series.std)]))
    groups = runs.groupby(by).size().index
    return pd.concat(parts, axis=1).reindex(groups)


def verdicts(groups: Sequence[tuple[Sequence[RunResult], float | None]]) -> list[Verdict]:
    """verdict() for many submissions at once, (results, target) each: the figures aggregated
    in one groupby, the t-tests batched."""
    if not groups:
        return []
    runs = pd.DataFrame([{"group": i, **{k: r.get(k) for k in FIGURES}}
                         for i, (results, _) in enumerate(groups) for r in results],
                        columns=["group", *FIGURES]).astype(object)
    figs = figures(runs, "group").reindex(range(len(groups))).astype(object)
    figs = figs.where(figs.notna(), None)
    ps = p_values_below([finite_losses(results) for results, _ in groups], [t for _, t in groups])
    return [verdict(results, target, p=p, loss=(f.val_loss_mean, f.val_loss_sd),
                    time=(f.train_time_ms_mean, f.train_time_ms_sd))
            for (results, target), p, f in zip(groups, ps, figs.itertuples())]


def verdict(results: Sequence[RunResult], target: float | None, alpha: float = ALPHA,
            min_runs: int = MIN_RUNS, p: float | None | str = "compute",
            loss: tuple[float | None, float | None] | None = None,
            time: tuple[float | None, float | None] | None = None) -> Verdict:
    """the verdict over every run of one submission (all reported, none dropped).

    p, loss and time: the one-sided p-value and the (mean, sd) figures when the caller computed
    them already (verdicts() does, for many submissions at once)."""
    seeds = tuple(r.get("seed") for r in results)
    losses = finite_losses(results)
    loss_mean, loss_sd = mean_sd(losses) if loss is None else loss
    time_mean, time_sd = mean_sd([r["train_time_ms"] for r in results if is_finite(r.get("train_time_ms"))]) \
        if time is None else time
    if p == "compute":
        p = p_below_target(losses, target) if target is not None else None

    reasons: list[str] = []
    for r in results:
        reasons += run_problems(r)
    if len(set(seeds)) != len(seeds) or any(s is None for s in seeds):
        reasons.append("seeds not distinct")
    invalid = bool(reasons)
    if target is None:
        reasons.append("no target (calibration runs)")
    if len(results) < min_runs:
        reasons.append(f"{len(results)} run{'s' if len(results) != 1 else ''} < {min_runs}")
    above = loss_mean is not None and target is not None and loss_mean > target
    if above:
        reasons.append(f"mean val loss {loss_mean:.4f} > target {target}")
    elif p is None or p >= alpha:
        reasons.append("p not computable" if p is None else f"p={p:.2g} ≥ {alpha}")

    # the label names the first thing a reader needs to know
    if not reasons:
        label = "verified"
    elif len(results) == 1:
        label = "single run"
    elif invalid:
        label = "invalid runs"
    elif len(results) < min_runs:
        label = "too few runs"
    elif above:
        label = "above target"
    else:
        label = "not significant"
    return Verdict(
        n_runs=len(results), seeds=seeds, target_val_loss=target,
        val_loss_mean=loss_mean, val_loss_sd=loss_sd, p_value=p,
        train_time_ms_mean=time_mean, train_time_ms_sd=time_sd,
        verified=not reasons, label=label, reasons=tuple(reasons),
    )


@dataclass(frozen=True)
class Comparison:
    metric: str              # "train_time_ms" or "val_loss"
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    sd_a: float | None
    sd_b: float | None
    difference: float | None  # mean_a - mean_b
    p_value: float | None     # welch one-sided: a's mean is lower than b's; None when undefined
    significant: bool

    def to_dict(self) -> dict:
        return asdict(self)


def compare_samples(metric: str, a: Sequence[float], b: Sequence[float],
                    alpha: float = ALPHA) -> Comparison:
    """welch's t-test (unequal variances), one-sided: is a's mean lower than b's?"""
    a = [x for x in a if is_finite(x)]
    b = [x for x in b if is_finite(x)]
    mean_a, sd_a = mean_sd(a)
    mean_b, sd_b = mean_sd(b)
    p = None
    if len(a) >= 2 and len(b) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sps.ttest_ind(a, b, equal_var=False, alternative="less")
        p = float(res.pvalue) if math.isfinite(res.pvalue) else None
    diff = mean_a - mean_b if mean_a is not None and mean_b is not None else None
    return Comparison(metric=metric, n_a=len(a), n_b=len(b), mean_a=mean_a, mean_b=mean_b,
                      sd_a=sd_a, sd_b=sd_b, difference=diff, p_value=p,
                      significant=p is not None and p < alpha)


@dataclass(frozen=True)
class Speedup:
    """how many times faster a is than b: the ratio of geometric mean train times b / a, with a
    two-sided confidence interval from welch's t on the log times (a ratio of times is
    multiplicative, and the log makes its interval symmetric)."""
    ratio: float | None
    low: float | None        # lower end of the (1 - alpha) interval
    high: float | None
    confidence: float        # 1 - alpha
    p_value: float | None    # one-sided: a is not faster than b (ratio <= 1)

    def to_dict(self) -> dict:
        return asdict(self)


def speedup(a_ms: Sequence[float], b_ms: Sequence[float], alpha: float = ALPHA) -> Speedup:
    la = np.log([x for x in a_ms if is_finite(x) and x > 0])
    lb = np.log([x for x in b_ms if is_finite(x) and x > 0])
    if len(la) == 0 or len(lb) == 0:
        return Speedup(None, None, None, 1 - alpha, None)
    ratio = float(np.exp(lb.mean() - la.mean()))
    if len(la) < 2 or len(lb) < 2:
        return Speedup(ratio, None, None, 1 - alpha, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_ind(lb, la, equal_var=False, alternative="greater")
        ci = sps.ttest_ind(lb, la, equal_var=False).confidence_interval(confidence_level=1 - alpha)
    low = high = None
    if ci is not None and math.isfinite(ci.low) and math.isfinite(ci.high):
        low, high = float(np.exp(ci.low)), float(np.exp(ci.high))
    p = float(res.pvalue) if math.isfinite(res.pvalue) else None
    return Speedup(ratio, low, high, 1 - alpha, p)
