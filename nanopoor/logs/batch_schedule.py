"""batch sizes that change over training, as modded-nanogpt's later records declare them in the
code their logs print, turned into the tokens served by each step.

two shapes are read:
- `train_bs_schedule` (a tuple of batch sizes in tokens) cut into equal parts of
  `num_scheduled_iterations` by `get_bs`, then `train_bs_extension` for the extension steps;
- `TRAINING_STAGES = [TrainingStage(duration=1/3, batch_size=8 * 2048 * 8, ...), ...]`, each stage a
  share of `num_scheduled_iterations` (its end rounded from the running sum of the shares) and a
  last stage without a duration for the `num_extension_iterations` steps.

either is read only when the code computes the steps the way described; otherwise the reader says
that it saw a schedule it does not follow, rather than guess tokens."""
from __future__ import annotations

import ast
import re
from collections.abc import Callable
from itertools import accumulate

from nanopoor.logs.common import safe_number

BatchAt = Callable[[int], int]   # the batch (tokens, all ranks) of optimizer step `step`

# get_bs(step) of the train_bs_schedule era: equal parts of num_scheduled_iterations, then the extension
_GET_BS_RE = re.compile(r"int\(\s*len\(\s*args\.train_bs_schedule\s*\)\s*\*\s*x\s*\)")
# the stage era's boundaries: round(c * scheduled_iterations) over the running sum of the durations
_STAGES_RE = re.compile(r"^TRAINING_STAGES\s*(?::[^=\n]+)?=\s*\[", re.M)
_BOUNDS_RE = re.compile(r"accumulate\(\s*s\.duration\b[^)]*\)")
_ROUND_RE = re.compile(r"round\(\s*c\s*\*\s*(?:self\.)?\w*scheduled_iterations\s*\)")


def _num(args: dict, name: str) -> int | None:
    v = args.get(name)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def bs_schedule(args: dict, source: str | None) -> tuple[str | None, BatchAt | None, str | None]:
    """(formula, batch_at, note) of a train_bs_schedule, or (None, None, None) when there is none."""
    schedule = args.get("train_bs_schedule")
    if not (isinstance(schedule, (list, tuple)) and schedule and all(isinstance(x, int) for x in schedule)):
        return None, None, None
    sizes = " → ".join(str(x) for x in schedule)
    extension, scheduled = _num(args, "train_bs_extension"), _num(args, "num_scheduled_iterations")
    if not (extension and scheduled and source and _GET_BS_RE.search(source)):
        return None, None, f"the code states a batch schedule (train_bs_schedule {sizes}) computed in a way this reader does not follow"

    def batch_at(step: int) -> int:
        if step >= scheduled:
            return extension
        return schedule[int(len(schedule) * step / scheduled)]
    return f"train_bs_schedule {sizes} in equal parts of {scheduled} steps, then {extension}", batch_at, None


def _stages_block(source: str) -> list[ast.expr] | None:
    """the elements of the `TRAINING_STAGES = [...]` list, parsed on their own (the rest of a
    printed source may be several files that python rejects as a whole)."""
    m = _STAGES_RE.search(source)
    if not m:
        return None
    depth, end = 0, None
    for i in range(m.end() - 1, len(source)):
        ch = source[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                end = i + 1
                break
    if end is None:
        return None
    text = "\n".join(line.split("#", 1)[0] for line in source[m.end() - 1:end].splitlines())
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    return node.elts if isinstance(node, ast.List) else None


def training_stages(args: dict, source: str | None) -> tuple[str | None, BatchAt | None, str | None]:
    """(formula, batch_at, note) of a TRAINING_STAGES schedule, or (None, None, None) when there is none."""
    elements = _stages_block(source or "")
    if not elements:
        return None, None, None
    stages = []   # (duration or None, batch size)
    for el in elements:
        kw = {k.arg: k.value for k in el.keywords if k.arg} if isinstance(el, ast.Call) else {}
        batch = safe_number(kw["batch_size"], args) if "batch_size" in kw else None
        duration = safe_number(kw["duration"], args) if "duration" in kw else None
        if not isinstance(batch, int) or ("duration" in kw and not isinstance(duration, (int, float))):
            return None, None, "the code states a staged batch schedule (TRAINING_STAGES) whose sizes this reader cannot evaluate"
        stages.append((duration, batch))
    scheduled, extension = _num(args, "num_scheduled_iterations"), _num(args, "num_extension_iterations") or 0
    follows = bool(_BOUNDS_RE.search(source) and _ROUND_RE.search(source))
    if not scheduled or not follows or any(d is None for d, _ in stages[:-1]):
        return None, None, ("the code states a staged batch schedule (TRAINING_STAGES) computed in a way this "
                            "reader does not follow")
    ends = [round(c * scheduled) for c in accumulate(d for d, _ in stages[:-1])] + [scheduled + extension]
    batches = [b for _, b in stages]

    def batch_at(step: int) -> int:
        for end, batch in zip(ends, batches):
            if step < end:
                return batch
        return batches[-1]
    sizes = " → ".join(str(b) for b in batches)
    return (f"TRAINING_STAGES batch sizes {sizes} ending at steps {', '.join(str(e) for e in ends)}", batch_at, None)


def schedule_tokens(args: dict, source: str | None) -> tuple[str | None, BatchAt | None, str | None]:
    """the batch schedule the code declares, whichever shape: (formula, batch_at, None), or
    (None, None, note) for one this reader does not follow, or (None, None, None) for none."""
    for reader in (bs_schedule, training_stages):
        formula, batch_at, note = reader(args, source)
        if formula or note:
            return formula, batch_at, note
    return None, None, None


def apply_schedule(run, batch_at: BatchAt) -> None:
    """tokens after each printed step: the sum of the batches of steps 0..N-1."""
    cumulative, s = 0, 0
    at: dict[int, int] = {}
    for step in sorted({p.step for p in run.steps}):
        while s < step:
            cumulative += batch_at(s)
            s += 1
        at[step] = cumulative
    for p in run.steps:
        if p.tokens is None:
            p.tokens = at[p.step]
