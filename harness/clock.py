"""the train clock: runs only during training, synchronizes the device at every start and stop.

the time source is captured when this module is imported, which harness.launch does before
any record code runs, so a record that later replaces time.perf_counter_ns does not move it.
a second, independent source (the monotonic clock) times the whole training span; the session
checks at finish that train time + eval pauses add up to that span, so a record that rewinds
the clock's counter or swaps its source shows (integrity.code_snapshot also sees the swap)."""
from __future__ import annotations

import time
from collections.abc import Callable

_now_ns: Callable[[], int] = time.perf_counter_ns  # captured before the record is imported
_check_ns: Callable[[], int] = time.monotonic_ns   # the span check's own source


def _no_sync() -> None:
    pass


class Clock:
    """accumulates nanoseconds between start() and stop(); each call first waits for the device."""

    def __init__(self, sync: Callable[[], None] = _no_sync):
        self._sync = sync
        self._elapsed_ns = 0
        self._started_ns: int | None = None

    @property
    def running(self) -> bool:
        return self._started_ns is not None

    def start(self) -> None:
        if self._started_ns is None:
            self._sync()  # work queued before the start is not ours to time
            self._started_ns = _now_ns()

    def stop(self) -> None:
        if self._started_ns is not None:
            self._sync()  # the queued work belongs to the interval being closed
            self._elapsed_ns += _now_ns() - self._started_ns
            self._started_ns = None

    def charge_ns(self, ns: int) -> None:
        """add time spent outside the clock that counts as training (warm-up past its cap, an eval
        pause longer than its forward passes can explain)."""
        self._elapsed_ns += int(ns)

    @property
    def elapsed_ns(self) -> int:
        """closed intervals only (the span check reads this once the clock has stopped)."""
        return self._elapsed_ns

    def elapsed_ms(self) -> float:
        """elapsed time so far; reading does not synchronize (the display may lag the device)."""
        running = _now_ns() - self._started_ns if self._started_ns is not None else 0
        return (self._elapsed_ns + running) / 1e6


def device_sync(device: str) -> Callable[[], None]:
    """a sync function for the device: cuda waits for the stream; cpu has nothing queued."""
    if device.startswith("cuda"):
        import torch

        index = torch.device(device).index
        synchronize = torch.cuda.synchronize  # captured: a record rebinding it later does not blind the clock
        return lambda: synchronize(index)
    return _no_sync


def now_ns() -> int:
    return _now_ns()


def check_ns() -> int:
    return _check_ns()
