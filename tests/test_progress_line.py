"""the live progress at 80 columns keeps its numbers (step, tokens, losses, elapsed, time left):
the bar goes first, then words; it never drops a number to make room for decoration."""
from __future__ import annotations

import re
import time

import pytest
from rich.console import Console

from nanopoor.display import Display, ProgressLine, RunState

NUMBERS = ["step 41/60", "41.0k", "loss 5.0430", "val 6.7017", "elapsed", "left"]


def state(record: str) -> RunState:
    s = RunState(record, steps=60, budget_tokens=61_440)
    for e in ({"type": "train_start"},
              {"type": "step", "step": 41, "tokens": 41_000, "train_loss": 5.043, "train_time_ms": 41_000.0},
              {"type": "eval", "val_loss": 6.7017, "train_time_ms": 41_000.0}):
        s.fold(e)
    return s


def rendered(renderable, width: int) -> str:
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("record", ["demo_gpt", "dense_muon_t4_ddp_v5"])
@pytest.mark.parametrize("width", [80, 100, 140])
def test_every_number_is_shown_at_80_columns_and_wider(record, width):
    text = rendered(ProgressLine(state(record), time.monotonic() - 62), width)
    for needle in [record, *NUMBERS]:
        assert needle in text, (width, text)
    assert re.search(r"elapsed 1:0[23]|1:0[23] elapsed", text) and re.search(r"left 0:1\d|0:1\d left", text), text
    assert max(len(line) for line in text.splitlines()) <= width


def test_the_bar_is_what_goes_when_the_room_runs_out():
    line = ProgressLine(state("demo_gpt"), time.monotonic())
    assert "━" in rendered(line, 140) and "━" not in rendered(line, 40)


def test_the_live_display_on_a_terminal_draws_the_line(capsys):
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    s = state("demo_gpt")
    with Display(s, console=console, quiet=True) as disp:
        disp.update()
    text = console.export_text()
    assert "step 41/60" in text and "loss 5.0430" in text and "left" in text
