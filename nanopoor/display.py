"""the progress of a running record: one live line on a terminal, a plain line now and then elsewhere.

the live line keeps its numbers at any width: decoration goes first (the bar, then the words
around the numbers), then the token budget, then the phase; the step, losses, elapsed time and
time left stay."""
from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

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


def clock(seconds: float | None) -> str:
    """m:ss, or h:mm:ss from an hour on; '–' when unknown."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    return f"{h}:{m // 60:02d}:{m % 60:02d}" if h else f"{m // 60}:{m % 60:02d}"


class ProgressLine:
    """the live display: one line when it fits the console, else the record and step on one line
    and the numbers on the next; the bar appears only in the room left over."""
    BAR_MIN = 10   # a bar narrower than this says nothing the step count does not

    def __init__(self, state: RunState, t0: float):
        self.state, self.t0 = state, t0

    def parts(self) -> tuple[str, list[str]]:
        """(record, phase and step; the numbers from the most words to the fewest)."""
        s = self.state
        loss = f"{s.train_loss:.4f}" if isinstance(s.train_loss, float) else "–"
        val = f"  val {s.val_loss:.4f}" if isinstance(s.val_loss, float) else ""
        elapsed, left = clock(time.monotonic() - self.t0), clock(s.eta_s())
        tokens = f"{fmt_tokens(s.tokens)}/{fmt_tokens(s.budget_tokens)}"
        head = f"{s.record} ({s.phase})  step {s.step}/{s.steps}"
        return head, [f"{tokens} tokens  loss {loss}{val}  elapsed {elapsed}  left {left}",
                      f"{tokens} tok loss {loss}{val.replace('  ', ' ')} {elapsed} elapsed {left} left",
                      f"{fmt_tokens(s.tokens)} tok loss {loss}{val.replace('  ', ' ')} {elapsed} elapsed {left} left"]

    def bar(self, room: int) -> Text:
        n = min(room, 40)
        done = round(n * self.state.step / self.state.steps) if self.state.steps else 0
        return Text.assemble(("━" * done, "magenta"), ("━" * (n - done), "grey23"))

    def lines(self, width: int) -> list[Text]:
        head, numbers = self.parts()
        one = f"{head}  {numbers[0]}"
        if len(one) <= width:
            room = width - len(one) - 2
            return [Text.assemble((head[:len(self.state.record)], "bold"), one[len(self.state.record):],
                                  *(("  ", self.bar(room)) if room >= self.BAR_MIN else ()))]
        first = Text.assemble((head[:len(self.state.record)], "bold"), head[len(self.state.record):])
        room = width - len(head) - 2
        if room >= self.BAR_MIN:
            first.append_text(Text("  ").append_text(self.bar(room)))
        second = next((n for n in numbers if len(n) <= width), numbers[-1])   # wraps at spaces if still too long
        return [first, Text(second)]

    def __rich_console__(self, console, options):
        yield from self.lines(options.max_width)


class Display:
    """a context manager for a running record: the record's own lines on stdout (none with --format
    json: they stay in log.txt), and its progress on stderr, so json on stdout stays clean.

    progress is one live line (ProgressLine: step, tokens, loss, elapsed, time left) when stderr is
    a terminal, else one plain line every `plain_every_s` seconds, so a piped or logged run is never
    silent."""

    def __init__(self, state: RunState, console: Console | None = None, quiet: bool = False,
                 plain_every_s: float = 30.0):
        self.state = state
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.plain_every_s = plain_every_s
        self.live_mode = self.console.is_terminal
        self._live: Live | None = None
        self._last_plain = None   # (monotonic time, step) of the last plain line
        self._t0 = time.monotonic()

    def __enter__(self):
        self._t0 = time.monotonic()
        if self.live_mode:
            # the line re-renders itself on every refresh: elapsed time moves while a step runs
            self._live = Live(ProgressLine(self.state, self._t0), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

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
        """a line the record printed: on stdout (above the live line), none when quiet."""
        if not self.quiet:
            print(text, flush=True)   # a live display redirects stdout above itself

    def update(self) -> None:
        if self._live is not None:
            self._live.refresh()
            return
        now = time.monotonic()
        last_t, last_step = self._last_plain or (self._t0, -1)
        if self.state.step != last_step and now - last_t >= self.plain_every_s:
            self.console.print(self.plain_line(), markup=False, highlight=False, soft_wrap=True)
            self._last_plain = (now, self.state.step)

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
        else:
            self.console.print(self.plain_line(), markup=False, highlight=False, soft_wrap=True)
        return False
