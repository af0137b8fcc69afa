"""MLPerf Training logs: one `:::MLLOG {json}` per line (mlperf_logging).

    :::MLLOG {"namespace": "", "time_ms": 1700000123456, "event_type": "POINT_IN_TIME",
              "key": "eval_accuracy", "value": 2.71, "metadata": {"epoch_num": 1536, "step_num": 12}}

eval_accuracy (a log perplexity / loss for the language-model benchmarks) or eval_loss is the
eval metric; time runs from run_start; submission_platform and submission_org say the hardware;
the other scalar points (global_batch_size, opt_base_learning_rate, …) are the arguments."""
from __future__ import annotations

import json
import re
from pathlib import Path

from nanopoor.logs.common import RunBuilder
from nanopoor.logs.model import ParsedLog, StepPoint

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


def detect(text: str) -> int:
    return text.count(":::MLLOG")


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    builder = RunBuilder(Path(path).stem)
    start_ms: float | None = None
    platform = org = None
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
        key, value, meta = ev.get("key"), ev.get("value"), ev.get("metadata") or {}
        time_ms = ev.get("time_ms")
        if key == "run_start":
            if start_ms is not None and builder.run.steps:   # a second run_start: the run began again
                builder.run.restarts.append(i + 1)
            start_ms = time_ms
        elif key == "run_stop":
            builder.run.reported["status"] = meta.get("status")
            if start_ms is not None and time_ms is not None:
                log.meta["run_time_ms"] = time_ms - start_ms
        elif key == "submission_platform":
            platform = value
        elif key == "submission_org":
            org = value
        elif key == "target_accuracy":
            log.meta["target_accuracy"] = value
        elif key in _EVAL_KEYS or key in _TRAIN_KEYS:
            axis = next((k for k in ("step_num", "epoch_num", "samples_count") if k in meta), None)
            if axis is None or not isinstance(value, (int, float)):
                continue
            log.meta["step_axis"] = axis
            step = meta[axis]
            point = StepPoint(step=int(step), line=i + 1)
            if key in _EVAL_KEYS:
                point.val_loss = float(value)
            else:
                point.train_loss = float(value)
            if time_ms is not None and start_ms is not None:
                point.time_ms = float(time_ms - start_ms)
            if "samples_count" in meta and isinstance(log.arguments.get("max_sequence_length"), int):
                point.tokens = int(meta["samples_count"]) * log.arguments["max_sequence_length"]
            builder.add(point, text=m.group(1))
        elif key and ev.get("event_type") == "POINT_IN_TIME" and isinstance(value, (int, float, str, bool)):
            if key not in _NOT_ARGUMENTS:
                log.arguments[key] = value
    if platform:
        log.hardware = f"{platform} ({org})" if org else str(platform)
    log.runs = [builder.run] if not builder.empty else []
    # tokens per step from the declared batch, only when the log counts optimizer steps
    gbs, seq = log.arguments.get("global_batch_size"), log.arguments.get("max_sequence_length")
    if log.meta.get("step_axis") == "step_num" and isinstance(gbs, int) and isinstance(seq, int):
        for run in log.runs:
            if any(p.tokens is None for p in run.steps):
                run.apply_tokens_per_step(gbs * seq, f"global_batch_size {gbs} × max_sequence_length {seq}")
    return log
