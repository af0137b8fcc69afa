"""this project's own events.jsonl (docs/contract.md, "Events"): the harness writes it, so every
number is exact — tokens are counted by the stream and time by the harness clock.

a run folder stands for its events.jsonl; result.json beside it, when present, names the
hardware the runner detected."""
from __future__ import annotations

import json
import re
from pathlib import Path

from supervisor.events import CAUSALITY, EVAL, EVENT_TYPES, RUN_END, RUN_START, STEP, TRAIN_START, VIOLATION, WARMUP_END
from nanopoor.logs.common import RunBuilder
from nanopoor.logs.model import ParsedLog, StepPoint

NAME = "events"
DESCRIPTION = "nanopoor events.jsonl (a run folder means its events.jsonl)"

_TYPES = "|".join(EVENT_TYPES)
_SIGNATURE_RE = re.compile(r'^\{.*"type":\s*"(?:' + _TYPES + r')"', re.M)
_ARGUMENT_KEYS = ("seq_len", "batch_size", "grad_accum", "steps", "budget_tokens", "seed", "scale", "world_size")
_END_KEYS = ("status", "reason", "train_time_ms", "tokens", "val_loss", "steps", "compiles_in_timed")


def detect(text: str) -> int:
    return len(_SIGNATURE_RE.findall(text))


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    run_dir = Path(path).parent
    builder = RunBuilder(run_dir.name)
    start = None
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            log.unparsed_lines += 1          # e.g. a last line cut off by a killed run
            continue
        kind = ev.get("type")
        if kind == RUN_START:
            if start is not None:
                builder.run.restarts.append(i + 1)
            start = ev
            builder.run.total_steps = ev.get("steps")
        elif kind == STEP:
            builder.add(StepPoint(step=int(ev["step"]), train_loss=_f(ev.get("train_loss")),
                                  time_ms=_f(ev.get("train_time_ms")), tokens=ev.get("tokens"),
                                  line=i + 1), text=line)
        elif kind == EVAL:
            builder.add(StepPoint(step=int(ev["step"]), val_loss=_f(ev.get("val_loss")),
                                  time_ms=_f(ev.get("train_time_ms")), tokens=ev.get("tokens"),
                                  line=i + 1), text=line)
            if not ev.get("full", True):
                log.meta["prefix_evals"] = log.meta.get("prefix_evals", 0) + 1
        elif kind == WARMUP_END:
            log.meta["warmup_time_ms"] = ev.get("warmup_time_ms")
        elif kind == TRAIN_START:
            log.meta["compiles_before"] = ev.get("compiles_before")
        elif kind == CAUSALITY:
            log.meta["causal"] = ev.get("passed")
        elif kind == VIOLATION:
            log.meta.setdefault("violations", []).append(f"{ev.get('kind')}: {ev.get('detail')}")
        elif kind == RUN_END:
            _read_end(ev, builder, log)
    if start:
        log.arguments = {k: start[k] for k in _ARGUMENT_KEYS if k in start} | dict(start.get("args") or {})
        log.source_ref = f"record {start['record']}" if start.get("record") else None
        log.meta.update({k: start[k] for k in ("run_id", "record", "track", "contract_version") if k in start})
        log.hardware = _hardware(start)
    result = _read_result(run_dir)
    if result:
        log.hardware = result.get("hardware_label") or log.hardware
        if result.get("record_sha256") and log.source_ref:
            log.source_ref += f" (sha256 {str(result['record_sha256'])[:12]})"
    if builder.run.steps and start and start.get("seq_len") and start.get("batch_size"):
        tps = start["seq_len"] * start["batch_size"] * start.get("grad_accum", 1)
        builder.run.tokens_per_step = tps
        builder.run.tokens_formula = f"{start['seq_len']} × {start['batch_size']} × {start.get('grad_accum', 1)} (counted by the harness)"
    log.runs = builder.parsed_runs
    return log


def _read_end(ev: dict, builder: RunBuilder, log: ParsedLog) -> None:
    """what the harness's run_end reports: the run's end figures, causality and violations."""
    builder.run.reported = {k: ev[k] for k in _END_KEYS if ev.get(k) not in (None, "")}
    if "val_loss" in builder.run.reported:
        builder.run.reported["val_loss"] = float(builder.run.reported["val_loss"])
    if ev.get("causal") is not None:
        log.meta["causal"] = ev["causal"]
    if ev.get("violations") and not log.meta.get("violations"):
        log.meta["violations"] = [f"{v.get('kind')}: {v.get('detail')}" for v in ev["violations"]]


def _f(x) -> float | None:
    return None if x is None else float(x)


def _hardware(start: dict) -> str | None:
    torch = start.get("torch") or {}
    name = torch.get("device_name") or torch.get("device")
    if not name:
        return None
    return "cpu" if name == "cpu" else f"{start.get('world_size', 1)}× {name}"


def _read_result(run_dir: Path) -> dict | None:
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
