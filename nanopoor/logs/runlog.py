"""the readable log.txt of a nanopoor run: everything the record printed, with the harness's
line per eval among it (docs/contract.md):

    step: 160/160 train_loss: 3.2074 val_loss: 3.1957 train_time: 891.6s tokens: 5.24M

tokens are rounded as printed; events.jsonl in the same folder has them exactly."""
from __future__ import annotations

import re
from pathlib import Path

from nanopoor.logs.common import RunBuilder, time_to_ms, to_float, tokens_from_text
from nanopoor.logs.model import ParsedLog, StepPoint

NAME = "runlog"
DESCRIPTION = "nanopoor log.txt (`step: 160/160 train_loss: … val_loss: … train_time: …s tokens: …`)"

_STEP_RE = re.compile(r"^step:\s*(\d+)/(\d+)\s+(.*)$")
_PAIR_RE = re.compile(r"(\w+):\s*(\S+)")
_SIGNATURE_RE = re.compile(r"^step:\s*\d+/\d+\s+(?:train_loss|val_loss):\s", re.M)


def detect(text: str) -> int:
    return len(_SIGNATURE_RE.findall(text))


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    builder = RunBuilder(Path(path).parent.name if Path(path).name == "log.txt" else Path(path).stem)
    for i, raw in enumerate(text.splitlines()):
        line = raw.strip()
        m = _STEP_RE.match(line)
        if not m:
            if line:
                log.unparsed_lines += 1
            continue
        point = StepPoint(step=int(m.group(1)), line=i + 1)
        for key, value in _PAIR_RE.findall(m.group(3)):
            if key == "train_loss":
                point.train_loss = to_float(value)
            elif key == "val_loss":
                point.val_loss = to_float(value)
            elif key == "train_time":
                point.time_ms = time_to_ms(value, default_unit="s")
            elif key == "tokens":
                point.tokens = tokens_from_text(value)
        if "(prefix)" in line or "(progress)" in line:  # a progress eval (harness 0.3 names it so)
            log.meta["prefix_evals"] = log.meta.get("prefix_evals", 0) + 1
        builder.add(point, text=line, total_steps=int(m.group(2)))
    log.runs = builder.parsed_runs
    return log
