"""the one shape every log parser produces: a log holds runs, a run holds step points.

numbers keep their units in their names. nothing here imports torch, numpy or pandas: parsing
has to stay cheap enough to run on every log a person hands to `nanopoor review`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nanopoor.jsonio import clean


@dataclass
class StepPoint:
    """what the log says about one step (any field may be missing)."""
    step: int                          # optimizer steps done, as the log counts them
    train_loss: float | None = None    # nats
    val_loss: float | None = None      # nats
    time_ms: float | None = None       # the log's own clock at this step, cumulative
    tokens: int | None = None          # training tokens served by this step (all ranks)
    line: int = 0                      # 1-based line of the log it came from (its eval's, when merged)
    time_line: int = 0                 # the line whose clock time_ms is (0: the point's own line)

    @property
    def time_from_line(self) -> int:
        return self.time_line or self.line

    def to_dict(self) -> dict:
        return {"step": self.step, "train_loss": clean(self.train_loss), "val_loss": clean(self.val_loss),
                "time_ms": clean(self.time_ms), "tokens": self.tokens, "line": self.line}


@dataclass
class ParsedRun:
    """one training run. a file can hold several (e.g. hand-written headings between them)."""
    name: str
    steps: list[StepPoint] = field(default_factory=list)
    total_steps: int | None = None         # the M of `step:N/M`, when printed
    tokens_per_step: int | None = None     # when derivable from the log or given by a person
    tokens_formula: str | None = None      # how tokens_per_step was derived, e.g. "1024 × 8 × 4"
    tokens_note: str | None = None         # what the log says of its batch when tokens cannot be derived
    repeated_lines: list[tuple[int, int]] = field(default_factory=list)  # (line, line it repeats)
    restarts: list[int] = field(default_factory=list)       # lines where the step count went back
    clock_resets: list[int] = field(default_factory=list)   # lines where the clock went back (e.g. untimed warm-up)
    reported: dict = field(default_factory=dict)  # end-of-run facts the log states itself (events' run_end)
    # what the eval measures: a loss by default; a benchmark's own metric (MLPerf) brings its direction and target
    metric: str = "val_loss"
    higher_is_better: bool = False
    target: float | None = None            # the benchmark's own target, when it has one
    target_source: str | None = None       # where that target comes from
    time_source: str | None = None         # how the run's time was measured, when not the final eval line

    # --- derived facts ---------------------------------------------------------------------
    @property
    def val_points(self) -> list[StepPoint]:
        return [p for p in self.steps if p.val_loss is not None]

    @property
    def train_points(self) -> list[StepPoint]:
        return [p for p in self.steps if p.train_loss is not None]

    @property
    def final_val_loss(self) -> float | None:
        if self.reported.get("val_loss") is not None:
            return float(self.reported["val_loss"])
        vals = self.val_points
        return vals[-1].val_loss if vals else None

    @property
    def best_val_loss(self) -> float | None:
        finite = [p.val_loss for p in self.val_points if math.isfinite(p.val_loss)]
        if self.reported.get("val_loss") is not None and math.isfinite(self.reported["val_loss"]):
            finite.append(float(self.reported["val_loss"]))
        if not finite:
            return None
        return max(finite) if self.higher_is_better else min(finite)

    @property
    def last(self) -> StepPoint | None:
        return self.steps[-1] if self.steps else None

    @property
    def final_time_ms(self) -> float | None:
        return self.final_time()[0]

    def final_time(self) -> tuple[float | None, str | None]:
        """(the run's time, which line it was read from).

        the time a record quotes is the clock on the line that reports the final validation, not the
        last training line printed before it; a format without a time there falls back to the last
        line with a clock, and says so."""
        if self.reported.get("train_time_ms") is not None:
            return float(self.reported["train_time_ms"]), self.time_source or "the run's end record"
        vals = self.val_points
        if vals and vals[-1].time_ms is not None and vals[-1].time_from_line == vals[-1].line:
            return vals[-1].time_ms, f"final val line (line {vals[-1].line})"
        timed = [p for p in self.steps if p.time_ms is not None]
        if not timed:
            return None, None
        why = "the final val line prints no time" if vals else "the log prints no val line"
        last = max(timed, key=lambda p: p.time_from_line)
        return last.time_ms, f"last line with a time (line {last.time_from_line}; {why})"

    @property
    def final_step(self) -> int | None:
        """the step of the final eval (else of the last step line)."""
        vals = self.val_points
        return vals[-1].step if vals else (self.last.step if self.last else None)

    @property
    def final_tokens(self) -> int | None:
        if self.reported.get("tokens") is not None:
            return int(self.reported["tokens"])
        toks = [p.tokens for p in self.steps if p.tokens is not None]
        return toks[-1] if toks else None

    def reaches(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target

    def first_at_or_below(self, target: float) -> StepPoint | None:
        """the first eval that reaches the target: at or below it for a loss, at or above it for a
        metric where higher is better (what a speedrun or a benchmark claims)."""
        for p in self.val_points:
            if self.reaches(p.val_loss, target):
                return p
        return None

    def apply_tokens_per_step(self, tokens_per_step: int, formula: str | None = None) -> None:
        """fill tokens = step × tokens_per_step where the log did not say them itself."""
        self.tokens_per_step = int(tokens_per_step)
        self.tokens_formula = formula or f"{tokens_per_step} per step"
        for p in self.steps:
            if p.tokens is None:
                p.tokens = p.step * self.tokens_per_step

    def summary(self, target: float) -> dict:
        target = self.target if self.target is not None else target
        hit = self.first_at_or_below(target)
        final_ms, time_source = self.final_time()
        return {
            "name": self.name,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "steps": len(self.steps),
            "last_step": self.last.step if self.last else None,
            "final_step": self.final_step,
            "total_steps": self.total_steps,
            "final_val_loss": clean(self.final_val_loss),
            "best_val_loss": clean(self.best_val_loss),
            "final_time_ms": clean(final_ms),
            "time_source": time_source,
            "final_tokens": self.final_tokens,
            "tokens_per_step": self.tokens_per_step,
            "tokens_formula": self.tokens_formula,
            "target": target,
            "target_source": self.target_source,
            "reached_target": hit is not None,
            "target_step": hit.step if hit else None,
            "target_time_ms": clean(hit.time_ms) if hit else None,
            "target_tokens": hit.tokens if hit else None,
            "target_val_loss": clean(hit.val_loss) if hit else None,
            "repeated_lines": len(self.repeated_lines),
            "restarts": len(self.restarts),
        }


@dataclass
class ParsedLog:
    """a parsed log file: its format, its runs, and what it carries besides numbers."""
    path: Path
    format: str                            # parser name, e.g. "nanopoor-text", "modded-nanogpt"
    runs: list[ParsedRun] = field(default_factory=list)
    source_code: str | None = None         # code embedded in the log itself
    source_ref: str | None = None          # or where the exact code is pinned (a frozen record)
    hardware: str | None = None            # e.g. "8× NVIDIA H100 80GB HBM3"
    arguments: dict = field(default_factory=dict)  # hyperparameters the log states
    notes: list[str] = field(default_factory=list)  # hand-written comments, platform lines, ...
    meta: dict = field(default_factory=dict)        # format-specific extras (run id, status, ...)
    unparsed_lines: int = 0                # lines no rule of the format understood

    @property
    def name(self) -> str:
        p = Path(self.path)
        return p.parent.name if p.name == "events.jsonl" else p.stem

    @property
    def has_source(self) -> bool:
        return bool(self.source_code or self.source_ref)

    @property
    def has_hardware(self) -> bool:
        return bool(self.hardware)

    @property
    def has_arguments(self) -> bool:
        return bool(self.arguments)

    @property
    def run(self) -> ParsedRun:
        """the run, for a file that holds exactly one."""
        if len(self.runs) != 1:
            raise ValueError(f"{self.path} holds {len(self.runs)} runs; pick one from .runs")
        return self.runs[0]

    def summary(self, target: float) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "has_source": self.has_source,
            "source_ref": self.source_ref,
            "source_lines": self.source_code.count("\n") + 1 if self.source_code else 0,
            "has_hardware": self.has_hardware,
            "hardware": self.hardware,
            "has_arguments": self.has_arguments,
            "arguments": {k: clean(v) for k, v in self.arguments.items()},
            "notes": self.notes,
            "meta": {k: clean(v) for k, v in self.meta.items()},
            "unparsed_lines": self.unparsed_lines,
            "runs": [r.summary(target) for r in self.runs],
            "across_runs": across_runs(self.runs),
        }


def across_runs(runs: list[ParsedRun]) -> dict | None:
    """mean, sd and count of the final eval, step and time over the runs of one metric: the numbers a
    reader checks a multi-seed claim against. None for a file of one run."""
    by_metric: dict[str, list[ParsedRun]] = {}
    for r in runs:
        if r.final_val_loss is not None:
            by_metric.setdefault(r.metric, []).append(r)
    out = {}
    for metric, group in by_metric.items():
        if len(group) < 2:
            continue
        out[metric] = {"count": len(group),
                       "final_val_loss": _stats([r.final_val_loss for r in group]),
                       "final_step": _stats([r.final_step for r in group if r.final_step is not None]),
                       "final_time_ms": _stats([r.final_time_ms for r in group if r.final_time_ms is not None])}
    return out or None


def _stats(values: list[float]) -> dict | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    mean = math.fsum(finite) / len(finite)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else None
    return {"mean": mean, "sd": sd, "n": len(finite)}


