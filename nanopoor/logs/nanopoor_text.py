"""NanoPoor's text logs (github.com/VatsaDev/NanoPoor, logs/*.txt).

    step: 160, train loss: 3.2074, val loss: 3.1957, elapsed time: 14.86 min, dt: 48685.86 ms
    step: 300, train loss: 2.9473, val loss: 2.9681, elapsed time: 37.1768 min, mfu: ..., total_flops: ...

the files mix these lines with whatever else the script printed (distributed-init chatter,
warnings, checkpoint saves, debug prints inside the loop). one file may hold several runs under
hand-written headings (`1e-4` on a line of its own between blank lines); `#` lines are the
author's comments and may state the batch formula."""
from __future__ import annotations

import re
from pathlib import Path

from nanopoor.logs.common import RunBuilder, batch_formula, hardware_from_text, time_to_ms, to_float
from nanopoor.logs.model import ParsedLog, StepPoint
from nanopoor.logs.published import claimed_formula, published_formula

NAME = "nanopoor-text"
DESCRIPTION = "NanoPoor text log (`step: 10, train loss: …, val loss: …, elapsed time: … min`)"

_STEP_RE = re.compile(r"^step:\s*(\d+),\s*(.*)$")
_FAST_RE = re.compile(r"step: (\d+), train loss: (\S+), val loss: (\S+), elapsed time: (\d+(?:\.\d*)?) min(?:,|$)")
_SIGNATURE_RE = re.compile(r"^step:\s*\d+,\s*(?:train|val) loss:", re.M)
_RUN_ID_RE = re.compile(r"^starting run (\w+) from scratch", re.I)
_RESUME_RE = re.compile(r"^(?:resuming|resumed) (?:run|training)", re.I)
_VOCAB_RE = re.compile(r"^found vocab_size = (\d+)")
_PARAMS_RE = re.compile(r"^([0-9.]+) M (?:trainable parameters|params)")
# what the train script itself prints; never a hand-written heading even when it stands alone
_OUTPUT_RE = re.compile(r"(?:saving|starting|loading|resum|compil|found |num |using |is |---|/|\w+(?:error|warning)\b)", re.I)
_FIELD_NAMES = {"train loss": "train_loss", "val loss": "val_loss", "elapsed time": "time"}


def detect(text: str) -> int:
    return len(_SIGNATURE_RE.findall(text))


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    lines = text.splitlines()
    builder = RunBuilder(Path(path).stem)
    builders = [builder]
    run_ids: list[str] = []
    for i, raw in enumerate(lines):
        line = raw.strip()
        lineno = i + 1
        if not line:
            continue
        m = _FAST_RE.match(line)
        if m:   # the usual line, read in one regex
            step, train, val, minutes = m.groups()
            builder.add(StepPoint(step=int(step), train_loss=to_float(train), val_loss=to_float(val),
                                  time_ms=float(minutes) * 60_000.0, line=lineno), text=line)
            continue
        m = _STEP_RE.match(line)
        if m:
            builder.add(_step_point(int(m.group(1)), m.group(2), lineno), text=line)
            continue
        if line.startswith("#"):
            log.notes.append(line.lstrip("#").strip())
            continue
        if _is_heading(lines, i):
            # a hand-written label between blank lines starts the next run in the file
            if builder.empty:
                builder.run.name = line
            else:
                builder = RunBuilder(line)
                builders.append(builder)
            continue
        if m := _RUN_ID_RE.match(line):
            run_ids.append(m.group(1))
            if not builder.empty:   # a second start inside one run: the script was started again
                builder.run.restarts.append(lineno)
            continue
        if _RESUME_RE.match(line) and not builder.empty:
            builder.run.restarts.append(lineno)
            continue
        if m := _VOCAB_RE.match(line):
            log.meta["vocab_size"] = int(m.group(1))
            continue
        if m := _PARAMS_RE.match(line):
            log.meta["params_millions"] = float(m.group(1))
            continue
        log.unparsed_lines += 1
    log.runs = [r for b in builders for r in b.parsed_runs]
    log.hardware = hardware_from_text(text)
    if run_ids:
        log.meta["run_ids"] = run_ids
    _apply_tokens_per_step(log, run_ids)
    return log


def _apply_tokens_per_step(log: ParsedLog, run_ids: list[str]) -> None:
    """tokens per step: the author's own formula first, then the published one for this run id,
    then the one published with the claim this log is the log of (nanopoor.logs.published)."""
    stated = batch_formula("\n".join("# " + n for n in log.notes))
    if stated:
        named, tps, formula = stated
        log.arguments.update(named)
        if tps:
            for run in log.runs:
                run.apply_tokens_per_step(tps, f"{formula} (stated in the log)")
    else:
        for run_id in run_ids:
            known = published_formula(NAME, run_id)
            if known:
                for run in log.runs:
                    run.apply_tokens_per_step(known["tokens_per_step"], known["formula"])
                break
    for run in log.runs:   # a run no formula reached: the claim it is the log of, if any
        if run.tokens_per_step is None and (claim := claimed_formula(run)):
            run.apply_tokens_per_step(claim["tokens_per_step"], claim["formula"])


def _step_point(step: int, rest: str, lineno: int) -> StepPoint:
    point = StepPoint(step=step, line=lineno)
    for part in rest.split(","):
        key, _, value = part.partition(":")
        name = _FIELD_NAMES.get(key.strip())
        if name == "time":
            point.time_ms = time_to_ms(value, default_unit="min")
        elif name:
            setattr(point, name, to_float(value.strip()))
    return point


def _is_heading(lines: list[str], i: int) -> bool:
    """a short hand-written line standing alone between blank lines (or the file's edges)."""
    line = lines[i].strip()
    if len(line) > 60 or _OUTPUT_RE.match(line):
        return False
    before_blank = i == 0 or not lines[i - 1].strip()
    after_blank = i + 1 >= len(lines) or not lines[i + 1].strip()
    return before_blank and after_blank
