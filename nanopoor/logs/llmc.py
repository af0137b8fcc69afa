"""llm.c's main.log (github.com/karpathy/llm.c, train_gpt2.cu `-o DIR` writes DIR/main.log).

    s:0 tel:10.9876                       val loss at step 0
    s:12 trl:4.5678 lr:0.0006 norm:1.23   train loss (newer builds add lr and grad norm)
    s:250 eval:0.2934                     hellaswag accuracy: not a loss, ignored

the file has no clock, no hardware and no arguments: those went to stdout, not main.log.
a resumed run appends to the same file, so the step count going back is a restart."""
from __future__ import annotations

import re
from pathlib import Path

from nanopoor.logs.common import RunBuilder, to_float
from nanopoor.logs.model import ParsedLog, StepPoint

NAME = "llmc"
DESCRIPTION = "llm.c main.log (`s:N tel:…` val, `s:N trl:…` train)"

_LINE_RE = re.compile(r"^s:(\d+)((?:\s+\w+:\S+)+)\s*$")
_PAIR_RE = re.compile(r"(\w+):(\S+)")
_SIGNATURE_RE = re.compile(r"^s:\d+ (?:tel|trl):", re.M)


def detect(text: str) -> int:
    return len(_SIGNATURE_RE.findall(text))


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    name = Path(path).parent.name if Path(path).name == "main.log" else Path(path).stem
    builder = RunBuilder(name or "main")
    for i, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if not line:
            continue
        m = _LINE_RE.match(line)
        if not m:
            log.unparsed_lines += 1
            continue
        pairs = dict(_PAIR_RE.findall(m.group(2)))
        point = StepPoint(step=int(m.group(1)), line=i + 1)
        if "tel" in pairs:
            point.val_loss = to_float(pairs["tel"])
        if "trl" in pairs:
            point.train_loss = to_float(pairs["trl"])
        if point.val_loss is None and point.train_loss is None:
            continue   # eval:/other keys: not a loss
        builder.add(point, text=line)
    log.runs = builder.parsed_runs
    return log
