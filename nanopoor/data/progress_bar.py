"""the progress a build shows while it writes shards: a rich bar on stderr, or nothing."""
from __future__ import annotations

import sys


class Reporter:
    """a rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._p = None
        self._task = None

    def start(self, description: str, total: int | None, unit: str = "tokens") -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
            TimeElapsedColumn, TimeRemainingColumn,
        )
        self.stop()
        self._p = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True),
        )
        self._p.start()
        self._task = self._p.add_task(description, total=total, rate="")

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)
            speed = self._p.tasks[0].speed
            if speed:
                self._p.update(self._task, rate=f"{speed / 1e6:.2f}M/s")

    def describe(self, description: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=description)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None

    def note(self, msg: str) -> None:
        if self.enabled:
            print(msg, file=sys.stderr)
