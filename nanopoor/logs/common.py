"""helpers every parser shares: building a run line by line, numbers with units, nvidia-smi.

the run builder is where repeated lines and restarts are noticed, so every format reports them
the same way."""
from __future__ import annotations

import ast
import math
import re

from nanopoor.logs.model import ParsedRun, StepPoint


class RunBuilder:
    """appends step points in file order; notices repeats, restarts and clock resets."""

    def __init__(self, name: str):
        self.run = ParsedRun(name=name)
        self._seen_text: dict[str, int] = {}   # step-line text -> first line it appeared on
        self._last_time_ms: float | None = None

    def add(self, point: StepPoint, text: str | None = None) -> None:
        run = self.run
        if text is not None:
            key = text.strip()
            if key in self._seen_text:
                # an identical step line again: a duplicated print or a pasted-twice log
                run.repeated_lines.append((point.line, self._seen_text[key]))
                return
            self._seen_text[key] = point.line
        prev = run.steps[-1] if run.steps else None
        if prev is not None and point.step == prev.step and _mergeable(prev, point):
            # e.g. a val line and a train line for the same step
            for name in ("train_loss", "val_loss", "time_ms", "tokens"):
                if getattr(prev, name) is None and getattr(point, name) is not None:
                    setattr(prev, name, getattr(point, name))
            self._note_time(point)
            return
        if prev is not None and point.step <= prev.step:
            # the step count went back (or a step was logged again with other numbers): a restart
            run.restarts.append(point.line)
        self._note_time(point)
        run.steps.append(point)

    def _note_time(self, point: StepPoint) -> None:
        if point.time_ms is None:
            return
        if self._last_time_ms is not None and point.time_ms < self._last_time_ms:
            self.run.clock_resets.append(point.line)
        self._last_time_ms = point.time_ms

    @property
    def empty(self) -> bool:
        return not self.run.steps and not self.run.repeated_lines


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
def safe_number(node: ast.AST):
    """the value of a constant arithmetic expression like `8*64` or `48 * 1024`, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = safe_number(node.operand)
        return -v if isinstance(v, (int, float)) else None
    if isinstance(node, ast.BinOp):
        a, b = safe_number(node.left), safe_number(node.right)
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


def gpu_count(hardware: str | None) -> int | None:
    if not hardware:
        return None
    counts = [int(m.group(1)) for m in re.finditer(r"(\d+)×", hardware)]
    return sum(counts) if counts else None
