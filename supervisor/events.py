"""the append-only event log (events.jsonl) and log.txt, both written by the supervisor alone.

the record's own output reaches log.txt through the supervisor too, each line prefixed `record| `,
so a line the record prints can never be mistaken for one of the harness's (an eval line, a
run_end line): those have no prefix."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

# the event types, one name each: the harness writes them and the tool reads them through these names
# (docs/contract.md lists each type's keys)
RUN_START, WARMUP_START, WARMUP_END, TRAIN_START = "run_start", "warmup_start", "warmup_end", "train_start"
STEP, EVAL, EVAL_CHARGE, CAUSALITY, HELDOUT = "step", "eval", "eval_charge", "causality", "heldout"
SOURCE_FLAGS, T4_LIMITS, VIOLATION, RUN_END = "source_flags", "t4_limits", "violation", "run_end"
HANDOVER, EXPORT, RECORD_START = "handover", "export", "record_start"
EVENT_TYPES = (RUN_START, RECORD_START, WARMUP_START, WARMUP_END, TRAIN_START, STEP, EVAL, EVAL_CHARGE, CAUSALITY, HELDOUT,
               SOURCE_FLAGS, T4_LIMITS, VIOLATION, HANDOVER, EXPORT, RUN_END)
RECORD_PREFIX = "record| "   # a line of the record's own output in log.txt

def _clean(value):
    # json has no nan/inf: write them as strings so the log stays valid json lines
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# per-step lines run inside the train clock: they are flushed (a killed process loses nothing
# already said) but not fsynced; every other event is rare and also survives a machine crash
UNSYNCED = frozenset({STEP})


class EventLog:
    """appends one json object per line and flushes it, so a crash loses nothing already said."""

    def __init__(self, path: Path | None, enabled: bool = True):
        self.path = path
        self.enabled = enabled and path is not None
        self._f = open(path, "a", encoding="utf-8") if self.enabled else None
        import threading

        self._lock = threading.Lock()   # one writer at a time: each rank's connection has its thread

    def emit(self, type_: str, **fields) -> dict:
        with self._lock:
            event = {"type": type_, "time": time.time(), **_clean(fields)}
            if self._f is not None:
                self._f.write(json.dumps(event, sort_keys=False) + "\n")
                self._f.flush()
                if type_ not in UNSYNCED:
                    os.fsync(self._f.fileno())
            return event

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def fmt_tokens(tokens: int | None) -> str:
    """three significant digits: 5242880 -> '5.24M', 14008320 -> '14.0M', 100_000_000 -> '100M'.

    the one token formatter: the eval line, the live display, review and the leaderboard."""
    if tokens is None:
        return "?"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if tokens >= scale * 0.9995:   # 999_999 rounds to 1.00M, not 1000k
            x = tokens / scale
            return f"{x:.{max(0, 2 - int(math.log10(x)))}f}{unit}"
    return str(tokens)


def eval_line(step: int, steps: int, train_loss: float | None, val_loss: float,
              train_time_ms: float, tokens: int, full: bool) -> str:
    """e.g. `step: 160/160 train_loss: 3.2074 val_loss: 3.1957 train_time: 891.623s tokens: 5.24M`.

    the train time is printed to the millisecond: nanopoor verify compares it with result.json, and
    at 0.1 s a forged halving of a run shorter than ~0.1 s hid in the rounding (harness < 0.3.2)."""
    tl = f"{train_loss:.4f}" if train_loss is not None else "n/a"
    tag = "" if full else " (progress)"
    return (f"step: {step}/{steps} train_loss: {tl} val_loss: {val_loss:.4f}{tag} "
            f"train_time: {train_time_ms / 1000:.3f}s tokens: {fmt_tokens(tokens)}")


def say(line: str, enabled: bool = True) -> None:
    if enabled:
        print(line, file=sys.stdout, flush=True)


class RunLog:
    """log.txt: the harness's lines as they are, the record's (and the scorer's) behind a prefix;
    each line is also echoed to stdout, where the runner shows it."""

    def __init__(self, path: Path, echo: bool = True):
        import threading

        self._f = open(path, "a", encoding="utf-8")
        self._echo = echo
        self._lock = threading.Lock()

    def _write(self, line: str) -> None:
        with self._lock:
            self._f.write(line + "\n")
            self._f.flush()
            if self._echo:
                print(line, flush=True)

    def harness(self, line: str) -> None:
        self._write(line)

    def record(self, line: str, prefix: str = RECORD_PREFIX) -> None:
        self._write(prefix + line.rstrip("\n"))

    def close(self) -> None:
        with self._lock:
            self._f.close()
