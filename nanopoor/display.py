"""the progress of a running record: rich's live bar on a terminal, a plain line now and then elsewhere."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

from supervisor.events import CAUSALITY, EVAL, HELDOUT, RUN_END, STEP, TRAIN_START, WARMUP_END, WARMUP_START, fmt_tokens


class RunState:
    """what the display knows, folded from the event stream."""

    def __init__(self, record: str, steps: int, budget_tokens: int):
        self.record, self.steps, self.budget_tokens = record, steps, budget_tokens
        self.step = 0
        self.tokens = 0
        self.train_loss = None
        self.val_loss = None
        self.train_time_ms = 0.0
        self.phase = "starting"

    def fold(self, e: dict) -> None:
        t = e.get("type")
        if t == WARMUP_START:
            self.phase = "warm-up (untimed)"
        elif t in (WARMUP_END, TRAIN_START):
            self.phase = "training"
        elif t == STEP:
            self.step, self.tokens = e["step"], e["tokens"]
            self.train_loss, self.train_time_ms = e.get("train_loss"), e.get("train_time_ms", 0.0)
        elif t == EVAL:
            self.val_loss = e.get("val_loss")
            self.train_time_ms = e.get("train_time_ms", self.train_time_ms)
        elif t in (CAUSALITY, HELDOUT):
            self.phase = "checks (untimed)"
        elif t == RUN_END:
            self.phase = e.get("status", "ended")

    def eta_s(self) -> float | None:
        if self.step <= 0 or self.steps <= self.step:
            return None
        return self.train_time_ms / 1000 / self.step * (self.steps - self.step)


class Display:
    """a context manager for a running record: the record's own lines on stdout (none with --format
    json: they stay in log.txt), and its progress on stderr, so json on stdout stays clean.

    progress is rich's live bar (step, tokens, loss, elapsed, time left) when stderr is a terminal,
    else one plain line every `plain_every_s` seconds, so a piped or logged run is never silent."""

    def __init__(self, state: RunState, console: Console | None = None, quiet: bool = False,
                 plain_every_s: float = 30.0):
        self.state = state
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.plain_every_s = plain_every_s
        self.live_mode = self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._last_plain = None   # (monotonic time, step) of the last plain line
        self._t0 = time.monotonic()

    def __enter__(self):
        self._t0 = time.monotonic()
        if self.live_mode:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TextColumn("elapsed"), TimeElapsedColumn(),
                TextColumn("left"), TimeRemainingColumn(), console=self.console, refresh_per_second=4)
            self._progress.__enter__()
            self._task = self._progress.add_task(self._title(), total=self.state.steps, detail=self._detail())
        return self

    def _title(self) -> str:
        return f"{self.state.record} ({self.state.phase})"

    def _detail(self) -> str:
        s = self.state
        loss = f"loss {s.train_loss:.4f}" if isinstance(s.train_loss, float) else "loss –"
        val = f" val {s.val_loss:.4f}" if isinstance(s.val_loss, float) else ""
        return f"{fmt_tokens(s.tokens)}/{fmt_tokens(s.budget_tokens)} tokens  {loss}{val}"

    def plain_line(self) -> str:
        s = self.state
        elapsed = time.monotonic() - self._t0
        eta = s.eta_s()
        return (f"{s.record}: {s.phase}, step {s.step}/{s.steps}, {self._detail()}, "
                f"{elapsed:.0f} s elapsed" + (f", about {eta:.0f} s of training left" if eta is not None else ""))

    def line(self, text: str) -> None:
        """a line the record printed: on stdout (above the live bar), none when quiet."""
        if not self.quiet:
            print(text, flush=True)   # a live bar redirects stdout above itself

    def update(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.state.step, description=self._title(),
                                  detail=self._detail())
            return
        now = time.monotonic()
        last_t, last_step = self._last_plain or (self._t0, -1)
        if self.state.step != last_step and now - last_t >= self.plain_every_s:
            self.console.print(self.plain_line(), markup=False, highlight=False, soft_wrap=True)
            self._last_plain = (now, self.state.step)

    def __exit__(self, *exc):
        if self._progress is not None:
            self.update()
            self._progress.__exit__(*exc)
        else:
            self.console.print(self.plain_line(), markup=False, highlight=False, soft_wrap=True)
        return False
