"""the live view of a running record: a rich panel on a terminal, plain lines elsewhere."""
from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness.events import fmt_tokens


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
        if t == "warmup_start":
            self.phase = "warm-up (untimed)"
        elif t in ("warmup_end", "train_start"):
            self.phase = "training"
        elif t == "step":
            self.step, self.tokens = e["step"], e["tokens"]
            self.train_loss, self.train_time_ms = e.get("train_loss"), e.get("train_time_ms", 0.0)
        elif t == "eval":
            self.val_loss = e.get("val_loss")
            self.train_time_ms = e.get("train_time_ms", self.train_time_ms)
        elif t in ("causality", "heldout"):
            self.phase = "checks (untimed)"
        elif t == "run_end":
            self.phase = e.get("status", "ended")

    def eta_s(self) -> float | None:
        if self.step <= 0 or self.steps <= self.step:
            return None
        return self.train_time_ms / 1000 / self.step * (self.steps - self.step)

    def table(self) -> Table:
        tab = Table(title=f"{self.record} — {self.phase}", show_header=True, header_style="bold")
        for col in ("step", "tokens", "train loss", "val loss", "train time", "ETA"):
            tab.add_column(col, justify="right")
        eta = self.eta_s()
        tab.add_row(f"{self.step}/{self.steps}", f"{fmt_tokens(self.tokens)}/{fmt_tokens(self.budget_tokens)}",
                    f"{self.train_loss:.4f}" if isinstance(self.train_loss, float) else "–",
                    f"{self.val_loss:.4f}" if isinstance(self.val_loss, float) else "–",
                    f"{self.train_time_ms / 1000:.1f}s", f"{eta:.0f}s" if eta is not None else "–")
        return tab


class Display:
    """a context manager: live table when stdout is a terminal, else the record's own lines."""

    def __init__(self, state: RunState, console: Console | None = None, quiet: bool = False):
        self.state = state
        self.console = console or Console()
        self.live_mode = self.console.is_terminal and not quiet
        self.quiet = quiet
        self._live = None

    def __enter__(self):
        if self.live_mode:
            self._live = Live(self.state.table(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def line(self, text: str) -> None:
        """a line the record printed: above the live table, or plainly."""
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self.state.table())

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.update(self.state.table())
            self._live.__exit__(*exc)
        return False
