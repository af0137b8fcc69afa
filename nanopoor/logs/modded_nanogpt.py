"""modded-nanogpt logs (github.com/KellerJordan/modded-nanogpt, records/*/*.txt), every era.

a log is the train script's own source, a line of 100 '=', the environment (python/torch
versions, the nvidia-smi table), another '=' line, then the training lines:

    2024:  step:10/3000 train_loss:5.1234 train_time:1234ms step_avg:123.40ms
           step:125/3000 val_loss:4.2000 train_time:15432ms step_avg:123.46ms
    later: step:1/1750 train_time:28123ms step_avg:nanms        (no train loss any more)

the source holds the print calls as f-strings (`step:{step}/{train_steps} val_loss:{...}`);
only lines after the source are read as training lines. the first steps print step_avg:nanms
because their time is dropped: the clock restarts at step 10 (a clock reset, not a restart)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from nanopoor.logs.batch_schedule import apply_schedule, schedule_tokens
from nanopoor.logs.common import RunBuilder, gpu_count, hardware_from_text, safe_number, time_to_ms, to_float
from nanopoor.logs.model import ParsedLog, StepPoint

NAME = "modded-nanogpt"
DESCRIPTION = "modded-nanogpt log (source at the top, `step:N/M val_loss:… train_time:…ms step_avg:…ms`)"

_STEP_RE = re.compile(r"^step:(\d+)/(\d+)((?:\s+\w+:\S+)+)\s*$")
_PAIR_RE = re.compile(r"(\w+):(\S+)")
_ANY_STEP_RE = re.compile(r"^[ \t]*step:\d+/\d+\s", re.M)
_FAST_RE = re.compile(r"^[ \t]*step:(\d+)/(\d+)(?: val_loss:(\S+))?(?: train_loss:(\S+))?"
                      r"(?: train_time:(\d+(?:\.\d*)?)ms)?(?: step_avg:\S+)?[ \t]*$", re.M)
_SIGNATURE_RE = re.compile(r"^step:\d+/\d+ (?:val_loss|train_loss|train_time):[0-9n]", re.M)
_SEPARATOR_RE = re.compile(r"^={50,}[ \t]*$", re.M)
_CODE_RE = re.compile(r"^(?:import|from) [\w.]+", re.M)
_TORCH_RE = re.compile(r"^Running (?:pytorch|PyTorch) (\S+)(?: compiled for CUDA (\S+))?", re.M)
_ARGPARSE_RE = re.compile(r"add_argument\(\s*['\"]--(\w+)['\"][^)]*?default\s*=\s*([^,)\n]+)")


def detect(text: str) -> int:
    return len(_SIGNATURE_RE.findall(text))


def parse(text: str, path: Path) -> ParsedLog:
    log = ParsedLog(path=path, format=NAME)
    source, body, body_line0 = _split_source(text)
    comments: dict = {}
    if source:
        log.source_code = source
        log.arguments = hyperparameters(source, comments)
    log.hardware = hardware_from_text(body)
    if m := _TORCH_RE.search(body):
        log.meta["torch"] = m.group(1)
        if m.group(2):
            log.meta["cuda"] = m.group(2)

    builder = _read_steps(body, body_line0, RunBuilder(Path(path).stem))
    log.runs = builder.parsed_runs

    tps, formula, extra = _tokens(log.arguments, comments, log.hardware, source)
    for run in log.runs:
        if tps:
            run.apply_tokens_per_step(tps, formula)
        elif formula and callable(extra):
            run.tokens_formula = formula
            apply_schedule(run, extra)
        elif extra:
            run.tokens_note = extra
    return log


def _split_source(text: str) -> tuple[str | None, str, int]:
    """(embedded source, the rest, line number where the rest starts).

    later logs print the code then a rule; 2024 logs wrap the code in two rules."""
    rules = list(_SEPARATOR_RE.finditer(text))
    if not rules:
        return None, text, 0
    bounds = [0] + [m.end() for m in rules]
    for k, start in enumerate(bounds[:2]):
        end = rules[k].start() if k < len(rules) else len(text)
        section = text[start:end]
        if _CODE_RE.search(section):
            rest_at = rules[k].end() if k < len(rules) else len(text)
            return section.strip("\n"), text[rest_at:], text[:rest_at].count("\n")
    return None, text, 0


def _read_steps(body: str, line0: int, builder: RunBuilder) -> RunBuilder:
    """every `step:N/M ...` line in order. the fast path reads the usual key order in one regex
    pass; when any step line has another shape, every line goes through the general reader."""
    n_step_lines = len(_ANY_STEP_RE.findall(body))
    fast = list(_FAST_RE.finditer(body))
    if len(fast) == n_step_lines:
        pos, lineno = 0, line0 + 1
        for m in fast:
            lineno += body.count("\n", pos, m.start())
            pos = m.start()
            step, total, val, train, ms = m.groups()
            builder.add(StepPoint(step=int(step), val_loss=to_float(val) if val else None,
                                  train_loss=to_float(train) if train else None,
                                  time_ms=float(ms) if ms else None, line=lineno), text=m.group(0),
                        total_steps=int(total))
        return builder
    for i, line in enumerate(body.splitlines()):
        m = _STEP_RE.match(line.strip())
        if m:
            builder.add(_step_point(int(m.group(1)), m.group(3), line0 + i + 1), text=line.strip(),
                        total_steps=int(m.group(2)))
    return builder


def _step_point(step: int, pairs: str, lineno: int) -> StepPoint:
    point = StepPoint(step=step, line=lineno)
    for key, value in _PAIR_RE.findall(pairs):
        if key == "train_loss":
            point.train_loss = to_float(value)
        elif key == "val_loss":
            point.val_loss = to_float(value)
        elif key == "train_time":
            point.time_ms = time_to_ms(value)
    return point


_CLASS_RE = re.compile(r"^([ \t]*)class\s+(\w*(?:hyperparam|Hyperparam|HyperParam|HYPERPARAM)\w*)\b.*:[ \t]*(?:#.*)?$", re.M)
_FIELD_RE = re.compile(r"^[ \t]+(\w+)\s*(?::\s*[^=#\n]+?)?\s*=\s*([^#\n]+?)\s*(?:#(.*))?$", re.M)


def hyperparameters(source: str, comments: dict | None = None) -> dict:
    """the hyperparameters a script declares: its Hyperparameters class, else argparse defaults.

    only the class's own lines are parsed, so the rest of the embedded code (several files pasted
    together, a line python would reject) cannot hide them, and a 3,000-line source costs little.
    `comments`, when given, receives each field's trailing comment (they say the units)."""
    args: dict = {}
    for m in _CLASS_RE.finditer(source):
        block = _class_block(source, m)
        args.update(_fields(block, comments))
        if args:
            break
    if not args:
        for name, default in _ARGPARSE_RE.findall(source):
            try:
                v = safe_number(ast.parse(default.strip(), mode="eval").body)
            except SyntaxError:
                v = None
            args[name] = v if v is not None else default.strip()
    return args


def _class_block(source: str, m: re.Match) -> str:
    """the class line and the lines indented under it."""
    indent = len(m.group(1).expandtabs())
    lines = [m.group(0)[len(m.group(1)):]]
    for line in source[m.end() + 1:].split("\n"):
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        lines.append(line[indent:] if len(line) > indent else line.strip())
    return "\n".join(lines)


def _fields(block: str, comments: dict | None) -> dict:
    args: dict = {}
    try:
        tree = ast.parse(block)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    except SyntaxError:
        body = None
    if body is not None:
        for stmt in body:
            name, value = _assignment(stmt)
            if name:
                v = safe_number(value, args)
                args[name] = v if v is not None else ast.get_source_segment(block, value)
    else:   # a class python rejects (cut off, odd syntax): read its `name: type = value` lines
        for name, value, _ in _FIELD_RE.findall(block):
            try:
                v = safe_number(ast.parse(value.strip(), mode="eval").body, args)
            except SyntaxError:
                v = None
            args[name] = v if v is not None else value.strip()
    if comments is not None:
        for name, _, comment in _FIELD_RE.findall(block):
            if comment and name in args:
                comments[name] = comment.strip()
    return args


def _assignment(stmt: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    return None, None


def _tokens(args: dict, comments: dict, hardware: str | None, source: str | None):
    """tokens served by each step from the declared hyperparameters, by era:
    (tokens per step, formula, None) for a constant batch, (None, formula, per-step function) for a
    batch schedule, or (None, None, note) when the code names a batch this cannot turn into tokens."""
    def num(name):
        v = args.get(name)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None

    def in_tokens(name):
        return "token" in comments.get(name, "").lower()

    gpus = gpu_count(hardware)
    # the llm.c port (mid-2024) states the global batch in tokens; batch_size there is per device
    if num("total_batch_size"):
        return num("total_batch_size"), f"total_batch_size {num('total_batch_size')}", None
    # late 2024: batch_size counts sequences across all devices
    if num("batch_size") and num("sequence_length") and not in_tokens("batch_size"):
        return num("batch_size") * num("sequence_length"), \
            f"batch_size {num('batch_size')} × sequence_length {num('sequence_length')}", None
    # early 2025: batch_size in tokens across all devices ("# batch size in tokens")
    if num("batch_size") and in_tokens("batch_size"):
        return num("batch_size"), f"batch_size {num('batch_size')} (tokens)", None
    # late 2025: train_batch_size in tokens across all ranks
    if num("train_batch_size"):
        return num("train_batch_size"), f"train_batch_size {num('train_batch_size')}", None
    # late 2025 on: a batch schedule (train_bs_schedule, then TRAINING_STAGES), read from the code
    formula, batch_at, note = schedule_tokens(args, source)
    if formula or note:
        return None, formula, batch_at if formula else note
    # 2025: every rank reads train_seq_len (or seq_len) tokens per step
    for name in ("train_seq_len", "seq_len"):
        if num(name):
            if gpus:
                return num(name) * gpus, f"{name} {num(name)} × {gpus} GPUs", None
            return None, None, f"the code states {name} {num(name)} per GPU and the log names no GPU count"
    return None, None, None
