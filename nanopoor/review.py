"""anomaly rules over a parsed log: what a log claims and what it cannot support.

each rule is a small function (run or log, context) -> findings; a finding has a severity
(error: the claim cannot stand as stated; warn: it needs an explanation; info: worth knowing)
and one line of message. review_logs.py runs them over whole log files for `nanopoor review`."""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from supervisor.events import fmt_tokens
from nanopoor.output import fmt_ms
from nanopoor.logs.model import ParsedLog, ParsedRun, StepPoint

SEVERITIES = ("error", "warn", "info")
DEFAULT_TRACK = "fineweb-edu"


@dataclass(frozen=True)
class Finding:
    rule: str            # short id, e.g. "tokens-to-target"
    severity: str        # one of SEVERITIES
    message: str         # one line
    run: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReviewConfig:
    """thresholds of the rules, in one place."""
    target: float                       # val loss a claim is about (track target unless given)
    track_name: str                     # the track the claim is judged on
    plausible_min_tokens: int           # tokens below which reaching the target is implausible
    official_hardware: str              # e.g. "1× Tesla T4", "" when the track has none
    val_below_min_pairs: int = 5        # paired train/val points needed to call a gap persistent
    val_below_share: float = 0.8        # share of the later pairs where val < train
    val_below_median_gap: float = 0.02  # nats: median train - val over the later pairs
    compile_ratio: float = 2.0          # first interval's per-step time vs the median
    compile_min_share: float = 0.01     # the excess must be at least this share of the final time
    plateau_span: float = 0.25          # plateau covers at least this share of the run's steps
    plateau_max_drop: float = 0.25      # nats: the plateau moves at most this much
    cliff_min_drop: float = 0.4         # nats: the cliff after it falls at least this much
    cliff_rate_ratio: float = 3.0       # the cliff falls this many times faster per step
    curve_points: int = 64              # the curve is thinned to this many points for the search


# --- tokens --------------------------------------------------------------------------------
def resolve_tokens(parsed: ParsedLog, tokens_per_step: int | None = None) -> None:
    """a person's --tokens-per-step overrides what the log or a published formula said."""
    if tokens_per_step is None:
        return
    for run in parsed.runs:
        for p in run.steps:
            p.tokens = None
        run.apply_tokens_per_step(tokens_per_step, f"{tokens_per_step} per step (--tokens-per-step)")


# --- run rules -----------------------------------------------------------------------------
LOSS_METRICS = {"val_loss", "log perplexity", "eval loss"}


def run_target(run: ParsedRun, cfg: ReviewConfig) -> float:
    """a benchmark's own target (MLPerf) where the run has one, else the track's (or --target)."""
    return run.target if run.target is not None else cfg.target


def rule_tokens_to_target(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    target = run_target(run, cfg)
    hit = run.first_at_or_below(target)
    if hit is None:
        return []
    sign = ">=" if run.higher_is_better else "<="
    if run.target is not None:
        # a benchmark judged by its own rules: the track's token floor is about GPT-2 on fineweb
        return []
    if hit.tokens is None:
        why = (f"tokens cannot be counted: {run.tokens_note}" if run.tokens_note
               else "the log gives no tokens per step")
        return [Finding("tokens-to-target", "info",
                        f"reached {hit.val_loss:.4f} {sign} {target} at step {hit.step}, but {why}: "
                        f"pass --tokens-per-step N to check data efficiency", run.name)]
    if cfg.plausible_min_tokens and hit.tokens < cfg.plausible_min_tokens:
        times = cfg.plausible_min_tokens / max(hit.tokens, 1)
        return [Finding("tokens-to-target", "error",
                        f"reached {hit.val_loss:.4f} <= {target} after {fmt_tokens(hit.tokens)} tokens "
                        f"(step {hit.step}, {run.tokens_formula}); the {cfg.track_name} track needs about "
                        f"{fmt_tokens(cfg.plausible_min_tokens)}+ ({times:.1f}x more): suspect the data "
                        f"stream or the evaluation", run.name)]
    return []


def rule_nan(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    bad = [(p, name) for p in run.steps for name in ("train_loss", "val_loss")
           if getattr(p, name) is not None and not math.isfinite(getattr(p, name))]
    if not bad:
        return []
    p, name = bad[0]
    return [Finding("nan", "error", f"{len(bad)} non-finite losses, first {name.replace('_', ' ')} "
                                    f"{getattr(p, name)} at step {p.step} (line {p.line})", run.name)]


def rule_restarts(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    if not run.restarts:
        return []
    return [Finding("restart", "warn",
                    f"the run started again {len(run.restarts)}x before it finished (first at line "
                    f"{run.restarts[0]}): time and tokens after a restart do not add up from zero", run.name)]


def rule_repeated_lines(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    if not run.repeated_lines:
        return []
    line, first = run.repeated_lines[0]
    return [Finding("repeated-lines", "warn",
                    f"{len(run.repeated_lines)} step lines repeat earlier ones verbatim (line {line} "
                    f"repeats line {first}): the log was edited, concatenated or printed twice", run.name)]


def rule_val_below_train(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    if run.metric not in LOSS_METRICS:
        return []
    pairs = [(p.step, p.train_loss - p.val_loss) for p in run.steps
             if p.train_loss is not None and p.val_loss is not None
             and math.isfinite(p.train_loss) and math.isfinite(p.val_loss)]
    later = pairs[len(pairs) // 2:]      # early steps are noisy and both losses fall together
    if len(later) < cfg.val_below_min_pairs:
        return []
    gaps = [g for _, g in later]
    share = sum(g > 0 for g in gaps) / len(gaps)
    median_gap = statistics.median(gaps)
    if share >= cfg.val_below_share and median_gap >= cfg.val_below_median_gap:
        return [Finding("val-below-train", "warn",
                        f"val loss is below train loss at {share:.0%} of steps {later[0][0]}-{later[-1][0]} "
                        f"(median gap {median_gap:.3f}): val may overlap train, or the two are computed "
                        f"differently", run.name)]
    return []


def rule_compile_in_clock(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    findings = []
    compiles = run.reported.get("compiles_in_timed")
    if compiles:
        findings.append(Finding("compile-in-clock", "warn",
                                f"{compiles} compilations happened inside the timed region", run.name))
    # only the last clock segment counts: a clock that restarted left what came before untimed
    start_line = run.clock_resets[-1] if run.clock_resets else 0
    timed = [p for p in run.steps if p.time_ms is not None and p.line >= start_line]
    intervals = []    # (steps in the interval, ms per step)
    for a, b in zip(timed, timed[1:]):
        if b.step > a.step and b.time_ms >= a.time_ms:
            intervals.append((a, b, (b.time_ms - a.time_ms) / (b.step - a.step)))
    if not run.clock_resets and timed and timed[0].step > 0 and timed[0].time_ms > 0:
        # the log's first print already covers the steps from 0 (NanoPoor prints from step 10)
        first = timed[0]
        intervals.insert(0, (StepPoint(step=0, time_ms=0.0), first, first.time_ms / first.step))
    if len(intervals) < 4:
        return findings
    median_rate = statistics.median(r for _, _, r in intervals[1:])
    final_ms = timed[-1].time_ms
    if median_rate <= 0 or final_ms <= 0:
        return findings
    if not run.clock_resets and timed[0].step == 0 and timed[0].time_ms > cfg.compile_ratio * median_rate \
            and timed[0].time_ms >= cfg.compile_min_share * final_ms:
        # the clock was already running before the first step
        t0 = timed[0].time_ms
        findings.append(Finding(
            "compile-in-clock", "warn",
            f"{fmt_ms(t0)} had passed on the clock at step 0, before any training step "
            f"({t0 / final_ms:.0%} of the reported {fmt_ms(final_ms)}): compile or setup inside the clock", run.name))
        return findings
    a, b, first_rate = intervals[0]
    excess_ms = (first_rate - median_rate) * (b.step - a.step)
    if first_rate > cfg.compile_ratio * median_rate and excess_ms >= cfg.compile_min_share * final_ms:
        findings.append(Finding(
            "compile-in-clock", "warn",
            f"steps {a.step}-{b.step} took {first_rate / 1000:.2f} s/step against a median of "
            f"{median_rate / 1000:.2f} s/step: ~{excess_ms / 1000:.0f} s ({excess_ms / final_ms:.0%} of the "
            f"reported {fmt_ms(final_ms)}) is compile or warm-up inside the clock", run.name))
    return findings


def rule_plateau_then_cliff(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    """learning curves slow down; a long flat stretch followed by a steep fall is a signature of a
    broken stream (e.g. half the targets trivial) or of the model learning to exploit a leak."""
    if run.metric not in LOSS_METRICS:
        return []   # an accuracy rises and FID is not in nats: the shape test is for losses
    which = "val" if len(run.val_points) >= 6 else "train"
    pts = [(p.step, p.val_loss if which == "val" else p.train_loss)
           for p in (run.val_points if which == "val" else run.train_points)]
    pts = [(s, v) for s, v in pts if math.isfinite(v)]
    if len(pts) < 6:
        return []
    if len(pts) > cfg.curve_points:
        idx = sorted({round(i * (len(pts) - 1) / (cfg.curve_points - 1)) for i in range(cfg.curve_points)})
        pts = [pts[i] for i in idx]
    span = pts[-1][0] - pts[0][0]
    if span <= 0:
        return []
    best = None
    for j in range(1, len(pts) - 1):
        plateaus = [(pts[i], (pts[i][1] - pts[j][1]) / (pts[j][0] - pts[i][0])) for i in range(j)
                    if pts[j][0] - pts[i][0] >= cfg.plateau_span * span
                    and abs(pts[i][1] - pts[j][1]) <= cfg.plateau_max_drop]
        cliffs = [(pts[k], (pts[j][1] - pts[k][1]) / (pts[k][0] - pts[j][0])) for k in range(j + 1, len(pts))
                  if pts[k][0] > pts[j][0] and pts[j][1] - pts[k][1] >= cfg.cliff_min_drop]
        if not plateaus or not cliffs:
            continue
        (p_start, p_rate), (c_end, c_rate) = min(plateaus, key=lambda x: x[1]), max(cliffs, key=lambda x: x[1])
        ratio = c_rate / max(p_rate, 1e-4)
        if ratio >= cfg.cliff_rate_ratio and (best is None or ratio > best[0]):
            best = (ratio, p_start, pts[j], c_end)
    if best is None:
        return []
    ratio, p_start, p_end, c_end = best
    return [Finding("plateau-then-cliff", "warn",
                    f"{which} loss moved {p_start[1] - p_end[1]:+.2f} over steps {p_start[0]}-{p_end[0]} "
                    f"then fell {p_end[1] - c_end[1]:.2f} by step {c_end[0]}, {ratio:.1f}x faster per step: "
                    f"healthy curves slow down; check the data stream and attention masking", run.name)]


def rule_clock_resets(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    if not run.clock_resets:
        return []
    return [Finding("clock-reset", "info",
                    f"the clock went back at line {run.clock_resets[-1]}: steps before it are outside the "
                    f"reported time (an untimed warm-up)", run.name)]


def rule_status(run: ParsedRun, cfg: ReviewConfig) -> list[Finding]:
    status = run.reported.get("status")
    if status and status not in ("completed", "success"):
        reason = run.reported.get("reason")
        return [Finding("status", "error", f"the run ended {status}" + (f": {reason}" if reason else ""), run.name)]
    return []


RUN_RULES = [rule_tokens_to_target, rule_nan, rule_restarts, rule_repeated_lines, rule_val_below_train,
             rule_plateau_then_cliff, rule_compile_in_clock, rule_clock_resets, rule_status]


# --- log rules -----------------------------------------------------------------------------
def rule_missing_provenance(parsed: ParsedLog, cfg: ReviewConfig) -> list[Finding]:
    findings = []
    if not parsed.has_source:
        findings.append(Finding("missing-source", "warn", "the log carries no source code: what ran cannot be checked"))
    if not parsed.has_hardware:
        where = f" (this track's official hardware: {cfg.official_hardware})" if cfg.official_hardware else ""
        findings.append(Finding("missing-hardware", "warn",
                                f"the log names no hardware: its time cannot be placed{where}"))
    if not parsed.has_arguments:
        findings.append(Finding("missing-arguments", "warn", _no_arguments(parsed)))
    return findings


def _no_arguments(parsed: ParsedLog) -> str:
    """what a log without arguments leaves unchecked; tokens only when nothing else counts them
    (a formula published with the claim does), so the review never says both."""
    counted = [r for r in parsed.runs if r.tokens_formula]
    if parsed.runs and len(counted) == len(parsed.runs):
        where = "; ".join(sorted({r.tokens_formula for r in counted}))
        return f"the log states no arguments: batch size and schedule cannot be checked against it (tokens per step: {where})"
    return "the log states no arguments: batch size, schedule and tokens cannot be checked"


def rule_harness_verdicts(parsed: ParsedLog, cfg: ReviewConfig) -> list[Finding]:
    findings = [Finding("violation", "error", f"contract violation {v}") for v in parsed.meta.get("violations", [])]
    if parsed.meta.get("causal") is False:
        findings.append(Finding("causality", "error", "the harness's causality check failed: the model sees the future"))
    return findings


LOG_RULES = [rule_missing_provenance, rule_harness_verdicts]


def review_config(track, target: float | None = None) -> ReviewConfig:
    """thresholds for a track (a supervisor.tracks.Track or its name)."""
    if isinstance(track, str):
        from supervisor.tracks import get_track   # lazy: harness pulls numpy, review may not need it
        track = get_track(track)
    official = f"{track.official_gpu_count}× {track.official_gpu}" if track.official_gpu else ""
    return ReviewConfig(target=track.target_val_loss if target is None else float(target), track_name=track.name,
                        plausible_min_tokens=int(track.plausible_min_tokens), official_hardware=official)


def review_parsed(parsed: ParsedLog, track, tokens_per_step: int | None = None, *,
                  target: float | None = None) -> list[Finding]:
    """every finding for a parsed log, most severe first."""
    resolve_tokens(parsed, tokens_per_step)
    cfg = review_config(track, target)
    findings = [f for rule in LOG_RULES for f in rule(parsed, cfg)]
    for run in parsed.runs:
        findings += [f for rule in RUN_RULES for f in rule(run, cfg)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))
