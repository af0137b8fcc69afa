"""the board's numbers as text: a time in the unit that keeps three significant figures (4.48 s,
48.5 s, 1.70 min, 1.85 h) with its sd to the same decimals, a speed-up, a FLOP count. pure
functions of numbers; which rows get which numbers is the board's business (board.py, measures.py)."""
from __future__ import annotations

import math

# (unit, ms per unit, the largest value shown in it): a value moves up a unit before it needs a 4th figure
UNITS = (("ms", 1.0, 1000.0), ("s", 1000.0, 100.0), ("min", 60_000.0, 100.0), ("h", 3_600_000.0, math.inf))
FLOP_PREFIXES = ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1.0, ""))


def time_unit(ms: float) -> tuple[str, float]:
    """(unit, ms per unit) that shows `ms` with three significant figures and no more: the first
    unit in which the value, rounded to three figures, stays under the next unit's threshold."""
    for name, per, below in UNITS:
        value = abs(ms) / per
        if round(value, decimals(value)) < below:
            return name, per
    return UNITS[-1][0], UNITS[-1][1]


def decimals(value: float, figures: int = 3) -> int:
    """decimals that show `value` with `figures` significant figures (none below the unit)."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(0, figures - 1 - math.floor(math.log10(abs(value))))


def three(value: float) -> str:
    """value with three significant figures, trailing zeros kept (1.70, 14.9, 102)."""
    r = float(f"{value:.3g}")
    return f"{r:.{decimals(r)}f}"


def fmt_duration(ms: float | None, unit: tuple[str, float] | None = None) -> str:
    """'4.48 s', '48.5 s', '1.70 min', '70.6 min', '1.85 h'; '—' when unknown."""
    if ms is None or not math.isfinite(ms):
        return "—"
    name, per = unit or time_unit(ms)
    return f"{three(ms / per)} {name}"


def fmt_time_cell(mean_ms: float | None, sd_ms: float | None, n) -> str:
    """'4.48 ± 0.03 s (n=3)': the sd in the mean's unit and decimals (one significant figure at
    least, so a small sd is never shown as 0); '4.48 s (1 run)' for one run."""
    if mean_ms is None or not math.isfinite(mean_ms):
        return "—"
    if n == 1 or sd_ms is None or not math.isfinite(sd_ms):
        return f"{fmt_duration(mean_ms)} ({n} run{'s' if n != 1 else ''})"
    name, per = time_unit(mean_ms)
    mean, sd = mean_ms / per, sd_ms / per
    places = decimals(float(three(mean)))
    if sd > 0 and round(sd, places) == 0:
        places = decimals(sd, 1)
    return f"{three(mean)} ± {sd:.{places}f} {name} (n={n})"


def fmt_speedup(ratio: float | None) -> str:
    """'10.8×' (three significant figures); '—' when there is nothing to compare with."""
    if ratio is None or not math.isfinite(ratio) or ratio <= 0:
        return "—"
    return f"{three(ratio)}×"


def fmt_flop(flop: float | None) -> str:
    """'4.43 PFLOP', '60.3 PFLOP', '1.20 EFLOP'; '?' when the hardware's peak is not known."""
    if flop is None or not math.isfinite(flop) or flop <= 0:
        return "?"
    i = next((k for k, (scale, _) in enumerate(FLOP_PREFIXES) if flop >= scale), len(FLOP_PREFIXES) - 1)
    value = flop / FLOP_PREFIXES[i][0]
    if i > 0 and round(value, decimals(value)) >= 1000:   # 999.96 P reads 1.00 E
        i -= 1
        value = flop / FLOP_PREFIXES[i][0]
    return f"{three(value)} {FLOP_PREFIXES[i][1]}FLOP"
