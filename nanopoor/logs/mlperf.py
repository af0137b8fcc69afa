"""MLPerf Training logs: one `:::MLLOG {json}` per line (mlperf_logging).

    :::MLLOG {"namespace": "", "time_ms": 1700000123456, "event_type": "POINT_IN_TIME",
              "key": "eval_accuracy", "value": 2.71, "metadata": {"epoch_num": 1536, "step_num": 12}}

a log is judged by its own benchmark (`submission_benchmark`): the metric, direction and target of
the published rules (mlperf_rules.toml), one run per metric — stable diffusion logs FID and CLIP
on separate eval_accuracy lines told apart by metadata.metric, and they are two curves, not one.
the run's time is run_stop − run_start, as MLPerf scores it. submission_platform and
submission_org say the hardware; the other scalar points (global_batch_size, …) are the arguments."""
from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path

from nanopoor.logs.common import RunBuilder
from nanopoor.logs.model import ParsedLog, ParsedRun, StepPoint

NAME = "mlperf"
DESCRIPTION = "MLPerf `:::MLLOG {json}` lines"

_LINE_RE = re.compile(r":::MLLOG\s+(\{.*\})\s*$")
_EVAL_KEYS = {"eval_accuracy", "eval_loss"}
_TRAIN_KEYS = {"train_loss", "loss"}
# keys that are events or bookkeeping, not hyperparameters
_NOT_ARGUMENTS = _EVAL_KEYS | _TRAIN_KEYS | {
    "run_start", "run_stop", "init_start", "init_stop", "block_start", "block_stop",
    "epoch_start", "epoch_stop", "eval_start", "eval_stop", "cache_clear", "tracked_stats",
    "submission_platform", "submission_org", "submission_division", "submission_status",
    "submission_benchmark", "submission_poc_name", "submission_poc_email", "target_accuracy"}
RULES_PATH = Path(__file__).with_name("mlperf_rules.toml")


@functools.cache
def benchmark_rules() -> dict:
    """benchmark name -> {"rounds": [...], "metric": [{name, target, higher_is_better, select?}]}."""
    with open(RULES_PATH, "rb") as f:
        return tomllib.load(f)


def detect(text: str) -> int:
    return text.count(":::MLLOG")


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    stem = Path(path).stem
    evals: dict[str, RunBuilder] = {}     # metric as the log names it ("" when unnamed) -> its run
    train = RunBuilder(stem)
    start_ms: float | None = None
    stop: tuple[float, int] | None = None
    platform = org = None
    restarts: list[int] = []
    for lineno, ev, raw in _events(text, log):
        key, value, meta = ev.get("key"), ev.get("value"), ev.get("metadata") or {}
        time_ms = ev.get("time_ms")
        if key == "run_start":
            if start_ms is not None and (train.run.steps or evals):   # a second run_start: the run began again
                restarts.append(lineno)
            start_ms = time_ms
        elif key == "run_stop":
            log.meta["status"] = meta.get("status")
            if start_ms is not None and time_ms is not None:
                stop = (float(time_ms - start_ms), lineno)
                log.meta["run_time_ms"] = stop[0]
        elif key == "submission_platform":
            platform = value
        elif key == "submission_org":
            org = value
        elif key == "submission_benchmark":
            log.meta["benchmark"] = value
        elif key == "target_accuracy":
            log.meta["target_accuracy"] = value
        elif key in _EVAL_KEYS or key in _TRAIN_KEYS:
            point = _loss_point(log, key, value, meta, time_ms, start_ms, lineno)
            if point is None:
                continue
            if key in _EVAL_KEYS:
                evals.setdefault(str(meta.get("metric") or ""), RunBuilder(stem)).add(point, text=raw)
            else:
                train.add(point, text=raw)
        elif key and ev.get("event_type") == "POINT_IN_TIME" and isinstance(value, (int, float, str, bool)):
            if key not in _NOT_ARGUMENTS:
                log.arguments[key] = value
    if platform:
        log.hardware = f"{platform} ({org})" if org else str(platform)
    log.runs = _runs_per_metric(log, stem, evals, train)
    _finish_runs(log, restarts, stop)
    return log


def _events(text: str, log: ParsedLog):
    """(line number, event, its json text) for every `:::MLLOG` line; other lines count as unparsed."""
    for i, line in enumerate(text.splitlines()):
        m = _LINE_RE.search(line)
        if not m:
            if line.strip():
                log.unparsed_lines += 1
            continue
        try:
            ev = json.loads(m.group(1))
        except json.JSONDecodeError:
            log.unparsed_lines += 1
            continue
        yield i + 1, ev, m.group(1)


def _loss_point(log: ParsedLog, key: str, value, meta: dict, time_ms, start_ms, lineno: int) -> StepPoint | None:
    """an eval or train loss line as a point on the log's step axis; None without a numeric value or an axis."""
    axis = next((k for k in ("step_num", "epoch_num", "samples_count") if k in meta), None)
    if axis is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    log.meta.setdefault("step_axis", axis)
    point = StepPoint(step=int(meta[axis]), line=lineno)
    if time_ms is not None and start_ms is not None:
        point.time_ms = float(time_ms - start_ms)
    if "samples_count" in meta and isinstance(log.arguments.get("max_sequence_length"), int):
        point.tokens = int(meta["samples_count"]) * log.arguments["max_sequence_length"]
    if key in _EVAL_KEYS:
        point.val_loss = float(value)
    else:
        point.train_loss = float(value)
    return point


def _finish_runs(log: ParsedLog, restarts: list[int], stop: tuple[float, int] | None) -> None:
    """the log-wide facts onto each run: restarts, status, the scored time and tokens per step."""
    for run in log.runs:
        run.restarts = sorted(set(run.restarts) | set(restarts))
        if log.meta.get("status"):
            run.reported["status"] = log.meta["status"]
        if stop is not None:
            # MLPerf's score is the whole run, run_start to run_stop
            run.reported["train_time_ms"] = stop[0]
            run.time_source = f"run_stop − run_start (line {stop[1]})"
    # tokens per step from the declared batch, only when the log counts optimizer steps
    gbs, seq = log.arguments.get("global_batch_size"), log.arguments.get("max_sequence_length")
    if log.meta.get("step_axis") == "step_num" and isinstance(gbs, int) and isinstance(seq, int):
        for run in log.runs:
            if any(p.tokens is None for p in run.steps):
                run.apply_tokens_per_step(gbs * seq, f"global_batch_size {gbs} × max_sequence_length {seq}")


def _runs_per_metric(log: ParsedLog, stem: str, evals: dict[str, RunBuilder], train: RunBuilder) -> list[ParsedRun]:
    """one run per metric the benchmark is judged by; train loss joins a lone loss-like metric."""
    bench = log.meta.get("benchmark")
    rules = benchmark_rules().get(bench) if isinstance(bench, str) else None
    if rules:
        log.meta["rounds"] = rules["rounds"]
    runs: list[ParsedRun] = []
    for name, builder in evals.items():
        spec = _metric_spec(rules, name)
        for run in builder.parsed_runs:
            if spec:
                run.metric, run.higher_is_better = spec["name"], bool(spec["higher_is_better"])
                run.target = float(spec["target"])
                run.target_source = f"MLPerf Training {'/'.join(rules['rounds'])} rules, {bench}"
            else:
                run.metric = name or "eval_accuracy"
            run.name = stem if len(evals) == 1 else f"{stem} {run.metric}"
            runs.append(run)
    train_runs = train.parsed_runs
    if train_runs:
        if len(runs) == 1 and not runs[0].higher_is_better:
            _merge_train(runs[0], train_runs[0])
        else:
            for run in train_runs:
                run.metric, run.name = "train_loss", f"{stem} train_loss"
                runs.append(run)
    return runs


def _metric_spec(rules: dict | None, name: str) -> dict | None:
    if not rules:
        return None
    metrics = rules["metric"]
    if name:
        return next((m for m in metrics if m.get("select") == name), None)
    return metrics[0] if len(metrics) == 1 else None


def _merge_train(run: ParsedRun, train: ParsedRun) -> None:
    """train-loss points into the eval run, by step, keeping the eval's clock."""
    by_step = {p.step: p for p in run.steps}
    for t in train.steps:
        p = by_step.get(t.step)
        if p is None:
            run.steps.append(t)
        elif p.train_loss is None:
            p.train_loss = t.train_loss
    run.steps.sort(key=lambda p: (p.step, p.line))
