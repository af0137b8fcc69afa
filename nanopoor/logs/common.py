"""helpers every parser shares: building a run line by line, numbers with units, nvidia-smi.

the run builder is where repeated lines and restarts are noticed, so every format reports them
the same way."""
from __future__ import annotations

import ast
import math
import re

from nanopoor.logs.model import ParsedRun, StepPoint


class RunBuilder:
    """appends step points in file order; notices repeats, restarts, clock resets and new runs.

    several seeds pasted into one file are several runs: when the step count goes back to where the
    run began after the run had finished (its last step is the printed total), the next lines start
    a new run. a step count that goes back before the run finished is a restart of the same run."""

    def __init__(self, name: str):
        self.runs: list[ParsedRun] = [ParsedRun(name=name)]
        self._name = name
        self._seen_text: dict[str, int] = {}   # step-line text -> first line it appeared on (this run)
        self._last_time_ms: float | None = None

    @property
    def run(self) -> ParsedRun:
        """the run lines go to now."""
        return self.runs[-1]

    def add(self, point: StepPoint, text: str | None = None, total_steps: int | None = None) -> None:
        run = self.run
        if run.steps and point.step <= run.steps[0].step and point.step < run.steps[-1].step and _finished(run):
            run = self._new_run()
        if total_steps is not None:
            run.total_steps = total_steps
        if text is not None:
            key = text.strip()
            if key in self._seen_text:
                # an identical step line again: a duplicated print or a pasted-twice log
                run.repeated_lines.append((point.line, self._seen_text[key]))
                return
            self._seen_text[key] = point.line
        prev = run.steps[-1] if run.steps else None
        if prev is not None and point.step == prev.step and _mergeable(prev, point):
            # e.g. a val line and a train line for the same step. the point keeps the line and the
            # clock of its eval: the val line prints after the step's training line, and its time
            # is the one a record quotes
            new_eval = prev.val_loss is None and point.val_loss is not None
            for name in ("train_loss", "val_loss", "tokens"):
                if getattr(prev, name) is None and getattr(point, name) is not None:
                    setattr(prev, name, getattr(point, name))
            if new_eval:
                prev.time_line = prev.time_from_line
                prev.line = point.line
            if point.time_ms is not None and (prev.time_ms is None or new_eval):
                prev.time_ms, prev.time_line = point.time_ms, point.time_from_line
            self._note_time(point)
            return
        if prev is not None and point.step <= prev.step:
            # the step count went back (or a step was logged again with other numbers): a restart
            run.restarts.append(point.line)
        self._note_time(point)
        run.steps.append(point)

    def _new_run(self) -> ParsedRun:
        first = self.runs[0]
        if len(self.runs) == 1:
            first.name = f"{self._name} #1"
        nxt = ParsedRun(name=f"{self._name} #{len(self.runs) + 1}", total_steps=first.total_steps)
        self.runs.append(nxt)
        self._seen_text = {}
        self._last_time_ms = None
        return nxt

    def _note_time(self, point: StepPoint) -> None:
        if point.time_ms is None:
            return
        if self._last_time_ms is not None and point.time_ms < self._last_time_ms:
            self.run.clock_resets.append(point.line)
        self._last_time_ms = point.time_ms

    @property
    def empty(self) -> bool:
        return not any(r.steps or r.repeated_lines for r in self.runs)

    @property
    def parsed_runs(self) -> list[ParsedRun]:
        return [r for r in self.runs if r.steps or r.repeated_lines]


def _finished(run: ParsedRun) -> bool:
    """the run printed its last step. without a printed total there is no telling a finished run
    from one cut short, so a step count going back there stays a restart."""
    return bool(run.total_steps) and run.steps[-1].step >= run.total_steps


def _mergeable(a: StepPoint, b: StepPoint) -> bool:
    """two points of the same step merge when they do not disagree on any field."""
    for name in ("train_loss", "val_loss", "tokens"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and not _same(x, y):
            return False
    return True


def _same(x: float, y: float) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


# --- numbers -------------------------------------------------------------------------------
def to_float(text: str) -> float | None:
    """'3.28' -> 3.28, 'nan' -> nan, 'n/a' or garbage -> None."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


_TIME_UNITS_MS = {"ms": 1.0, "s": 1000.0, "sec": 1000.0, "min": 60_000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME_RE = re.compile(r"^([-+0-9.eE]+|nan|inf)\s*([a-z]*)$")


def time_to_ms(text: str, default_unit: str = "ms") -> float | None:
    """'891.6s' -> 891600.0, '1234ms' -> 1234.0, '14.86 min' -> 891600.0."""
    m = _TIME_RE.match(text.strip().lower())
    if not m:
        return None
    value = to_float(m.group(1))
    unit = m.group(2) or default_unit
    if value is None or unit not in _TIME_UNITS_MS:
        return None
    return value * _TIME_UNITS_MS[unit]


_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}


def tokens_from_text(text: str) -> int | None:
    """'5.24M' -> 5240000, '12.3k' -> 12300, '8192' -> 8192 (rounded as printed)."""
    m = re.fullmatch(r"([0-9.]+)\s*([kKmMbBgG]?)", text.strip())
    if not m:
        return None
    return round(float(m.group(1)) * _SUFFIX[m.group(2).lower()])


# --- hyperparameters ------------------------------------------------------------------------
def safe_number(node: ast.AST, names: dict | None = None):
    """the value of a constant expression like `8*64`, `48 * 1024` or `(8 * 2048, 16 * 2048)`, else
    None. `names` gives values of names declared before (`num_scheduled + num_extension`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Name) and names is not None:
        v = names.get(node.id)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [safe_number(e, names) for e in node.elts]
        return tuple(items) if items and all(isinstance(x, (int, float)) for x in items) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = safe_number(node.operand, names)
        return -v if isinstance(v, (int, float)) else None
    if isinstance(node, ast.BinOp):
        a, b = safe_number(node.left, names), safe_number(node.right, names)
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            return None
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.Div: lambda: a / b if b else None, ast.FloorDiv: lambda: a // b if b else None,
               ast.Pow: lambda: a ** b if abs(b) < 64 else None}
        fn = ops.get(type(node.op))
        return fn() if fn else None
    return None


# a hand-written batch formula, e.g. "tokens used is ctx_len*batch_size*grad_accum*steps = 1024*6*4*570"
_FORMULA_RE = re.compile(
    r"tokens\b[^=\n]*?\b([A-Za-z_]+(?:\s*[*×]\s*[A-Za-z_]+)+)\s*=\s*(\d+(?:\s*[*×x]\s*\d+)+)")
_STEP_NAMES = {"steps", "step", "iters", "iterations", "max_iters", "num_iterations"}


def batch_formula(text: str) -> tuple[dict[str, int], int | None, str | None] | None:
    """(named values, tokens per step, formula) from a formula the author wrote into the log."""
    m = _FORMULA_RE.search(text)
    if not m:
        return None
    names = [n.strip() for n in re.split(r"[*×]", m.group(1)) if n.strip()]
    values = [int(v) for v in re.split(r"[*×x]", m.group(2)) if v.strip()]
    if len(names) != len(values):
        return None
    named = dict(zip(names, values))
    # every factor but the step count is per step
    per_step = [v for n, v in named.items() if n.lower() not in _STEP_NAMES]
    tps = math.prod(per_step) if per_step else None
    formula = " × ".join(str(v) for v in per_step) if per_step else None
    return named, tps, formula


# --- hardware -------------------------------------------------------------------------------
# a gpu row of the nvidia-smi table, old and new layouts:
# |   0  NVIDIA H100 80GB HBM3          On  |   00000000:19:00.0 Off |                    0 |
# |   0  Tesla T4            Off  | 00000000:00:04.0 Off |                    0 |
_SMI_GPU_RE = re.compile(r"^\|\s+(\d+)\s+(\S.*?)\s+(On|Off)\s+\|\s+[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:", re.M)


def hardware_from_nvidia_smi(text: str) -> str | None:
    """'8× NVIDIA H100 80GB HBM3' from an nvidia-smi table printed into a log, else None."""
    gpus: dict[int, str] = {}
    for m in _SMI_GPU_RE.finditer(text):
        gpus.setdefault(int(m.group(1)), m.group(2).strip())
    if not gpus:
        return None
    names = sorted(set(gpus.values()))
    return " + ".join(f"{sum(1 for n in gpus.values() if n == name)}× {name}" for name in names)


# `nvidia-smi -L`: GPU 0: NVIDIA H200 (UUID: GPU-…)
_SMI_LIST_RE = re.compile(r"^\s*GPU (\d+): ([A-Za-z][^(\n]*?)\s*\(UUID", re.M)
# a script's own line: "Running on device_name=NVIDIA H100 80GB HBM3 with world_size=8"
_DEVICE_NAME_RE = re.compile(r"device[_ ]name\s*[=:]\s*['\"]?((?:NVIDIA|Tesla|Quadro|GeForce|AMD|Instinct|Radeon)"
                             r"[^'\",\n]*?)['\"]?(?:\s+with\s+|\s*,\s*|\s*$)(?:world_size\s*[=:]\s*(\d+))?", re.M)
_WORLD_SIZE_RE = re.compile(r"\bworld_size\s*[=:]\s*(\d+)")
# a table printed without nvidia-smi ("GPU Name  Temp  Power ..."), one row per device:
# 0   NVIDIA H100 80GB HBM3     35    117        6340            81559           0     %
_GPU_ROW_RE = re.compile(r"^[ \t]*(\d+)[ \t]+((?:NVIDIA|Tesla|Quadro|GeForce|AMD|Instinct|Radeon)\b[^|\n]*?)(?:[ \t]{2,}|[ \t]*$)", re.M)


def hardware_from_text(text: str) -> str | None:
    """the GPUs a log names, in any of the ways logs print them: the nvidia-smi table, the
    `nvidia-smi -L` list, a table of device rows (index, name, …), or a device-name line with its
    world size. code is not a claim: a name
    must start with a letter, so an f-string like `device_name={name}` never counts."""
    found = hardware_from_nvidia_smi(text)
    if found:
        return found
    listed: dict[int, str] = {}
    for m in _SMI_LIST_RE.finditer(text):
        listed.setdefault(int(m.group(1)), m.group(2).strip())
    if not listed:
        for m in _GPU_ROW_RE.finditer(text):
            listed.setdefault(int(m.group(1)), m.group(2).strip())
    if listed:
        names = sorted(set(listed.values()))
        return " + ".join(f"{sum(1 for n in listed.values() if n == name)}× {name}" for name in names)
    m = _DEVICE_NAME_RE.search(text)
    if m:
        name = m.group(1).strip()
        world = m.group(2) or (w.group(1) if (w := _WORLD_SIZE_RE.search(text)) else None)
        return f"{int(world)}× {name}" if world else name
    return None


def gpu_count(hardware: str | None) -> int | None:
    if not hardware:
        return None
    counts = [int(m.group(1)) for m in re.finditer(r"(\d+)×", hardware)]
    return sum(counts) if counts else None
