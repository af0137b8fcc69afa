"""leaderboard.png: train time against date, one panel per track version, one colour per hardware.

each panel has its own axis in the unit that keeps three significant figures (nanopoor/leaderboard/
numbers.py), on a log scale when its times span more than PANEL_LOG_SPAN; every ranked submission,
the calibration runs (a dashed line: the recipe that set the target) and every published claim are
drawn. a claim dated only by a bound ("unknown (after 2025-03-31)") is drawn at that date and said so.
points that share a date are spread a little along it so none hides another. the legend sits beside
each panel and the figure is cut to what it holds, so nothing is clipped. the same rows give the same
bytes (no date of "now", no version stamp)."""
from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from datetime import date

from nanopoor.leaderboard.numbers import time_unit

PANEL_SIZE_IN = (7.5, 3.4)   # width, height of one panel's axes area, inches
PNG_DPI = 100
PANEL_LOG_SPAN = 8.0         # max/min time in a panel above which its axis is logarithmic
SPREAD_DAYS = 0.08           # distance between points that share a date
DAY_WIDTH = 0.8              # the most of a day those points may spread over (the axis marks whole days)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def day_of(text) -> tuple[date | None, bool]:
    """(the date a cell names, whether it is exact): '2025-03-31' is exact, 'unknown (after
    2025-03-31)' is a bound drawn at its date."""
    m = _DATE_RE.search(str(text or ""))
    if not m:
        return None, False
    try:
        return date.fromisoformat(m.group(0)), str(text).strip() == m.group(0)
    except ValueError:
        return None, False


def time_ms(row: dict) -> float | None:
    if row["kind"] == "claim":
        return row["claimed_time_min"] * 60_000.0 if row["claimed_time_min"] is not None else None
    return row["train_time_ms_mean"]


def plotted(rows: list[dict]) -> list[dict]:
    """what the png draws: ranked and calibration submissions with a time, and every claim with a
    time; each needs a date it can be placed at."""
    keep = []
    for r in rows:
        if day_of(r["date"])[0] is None or time_ms(r) is None:
            continue
        if r["kind"] == "claim" or r["ranked"] or r["verdict"] == "calibration":
            keep.append(r)
    return keep


def panels(rows: list[dict]) -> list[tuple[str, int, list[dict]]]:
    """(track, version, rows) per panel: the newest version of each track first; a track's claims
    join the panel of its newest version that has runs (claims carry no version)."""
    by = defaultdict(list)
    newest: dict[str, int] = {}
    for r in rows:
        if r["kind"] != "claim":
            v = int(r["track_version"] or 1)
            by[(r["track"], v)].append(r)
            newest[r["track"]] = max(newest.get(r["track"], v), v)
    for r in rows:
        if r["kind"] == "claim":
            by[(r["track"], newest.get(r["track"], 1))].append(r)
    return [(t, v, by[(t, v)]) for t, v in sorted(by, key=lambda k: (k[0], -k[1]))]


def spread(xs: list[float]) -> list[float]:
    """points on the same date moved apart within that day, in their given order, centred on it."""
    groups = defaultdict(list)
    for i, x in enumerate(xs):
        groups[x].append(i)
    out = list(xs)
    for x, idx in groups.items():
        step = min(SPREAD_DAYS, DAY_WIDTH / max(1, len(idx) - 1))
        for k, i in enumerate(idx):
            out[i] = x + (k - (len(idx) - 1) / 2) * step
    return out


def draw_panel(ax, track: str, version: int, mine: list[dict], colours: dict) -> None:
    from matplotlib.dates import AutoDateLocator, DateFormatter, DayLocator, date2num
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    times = [time_ms(r) for r in mine]
    unit, per = time_unit(max(times))
    order = sorted(range(len(mine)), key=lambda i: (day_of(mine[i]["date"])[0], mine[i]["kind"], times[i]))
    xs = spread([date2num(day_of(mine[i]["date"])[0]) for i in order])
    x_of = {i: x for i, x in zip(order, xs)}
    seen_labels: set[str] = set()

    def label(text: str) -> str:   # each legend entry once per panel
        if text in seen_labels:
            return "_nolegend_"
        seen_labels.add(text)
        return text

    last = max(xs)
    for hw in sorted({r["hardware"] for r in mine}):
        c = colours[hw]
        mine_hw = [i for i in order if mine[i]["hardware"] == hw]
        subs = [i for i in mine_hw if mine[i]["kind"] == "submission"]
        for i in (i for i in subs if mine[i]["verdict"] == "calibration"):
            ax.axhline(times[i] / per, color=c, linestyle="--", linewidth=1,
                       label=label(f"calibration ({mine[i]['record']}), {hw}"))
        ok = [i for i in subs if mine[i]["verified"]]
        if ok:   # one call per hardware and kind of point: a board of many rows draws in one pass
            ax.errorbar([x_of[i] for i in ok], [times[i] / per for i in ok],
                        yerr=[(mine[i]["train_time_ms_sd"] or 0) / per for i in ok], fmt="o", color=c, capsize=3,
                        label=label(f"verified, {hw}"))
        rest = [i for i in subs if not mine[i]["verified"] and mine[i]["verdict"] != "calibration"]
        short = [i for i in rest if mine[i]["val_loss_mean"] is None or mine[i]["target_val_loss"] is None
                 or mine[i]["val_loss_mean"] > mine[i]["target_val_loss"]]
        for group, marker, what in (([i for i in rest if i not in short], "o", "reached, not verified (< 3 runs or p ≥ 0.01)"),
                                    (short, "v", "target not reached (whole run)")):
            if group:
                ax.plot([x_of[i] for i in group], [times[i] / per for i in group], marker, mfc="none", color=c,
                        linestyle="none", label=label(f"{what}, {hw}"))
        ok = sorted(ok, key=lambda i: x_of[i])
        if ok:   # the record so far: running minimum over verified submissions, standing to the last date shown
            best, steps_x, steps_y = math.inf, [], []
            for i in ok:
                best = min(best, times[i] / per)
                steps_x.append(x_of[i])
                steps_y.append(best)
            ax.step(steps_x + [last], steps_y + [best], where="post", color=c, linewidth=1.5, label=label(f"record, {hw}"))
        for k, i in enumerate(i for i in mine_hw if mine[i]["kind"] == "claim"):
            r, exact = mine[i], day_of(mine[i]["date"])[1]
            ax.plot([x_of[i]], [times[i] / per], "x", color=c, label=label(f"published claim, {hw}"))
            ax.annotate(r["record"] + ("" if exact else "*"), (x_of[i], times[i] / per), fontsize=6,
                        xytext=(5, 4 if k % 2 == 0 else -9), textcoords="offset points", color=c)
    low, high = min(times) / per, max(times) / per
    if high / max(low, 1e-12) > PANEL_LOG_SPAN:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    days = [date2num(day_of(r["date"])[0]) for r in mine]
    ax.set_xlim(min(days) - 0.75, max(days) + 0.75)
    targets = sorted({r["target_val_loss"] for r in mine if r["target_val_loss"] is not None})
    target = f"target {', '.join(str(t) for t in targets)}" if targets else "no target yet"
    ax.set_title(f"{track} version {version} ({target}): train time, to the target where reached; lower is better",
                 fontsize=9)
    if any(r["kind"] == "claim" and not day_of(r["date"])[1] for r in mine):
        ax.text(0.0, -0.22, "* a claim dated only as after a day, drawn at that day", transform=ax.transAxes, fontsize=7)
    ax.set_ylabel(f"train time ({unit})" + (", log scale" if ax.get_yscale() == "log" else ""))
    ax.grid(alpha=0.3, which="both")
    # whole days only: points that share a date are spread within it, and hours would read as times of day
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=1, maxticks=8, interval_multiples=True))
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    if max(days) - min(days) < 8:
        ax.xaxis.set_major_locator(DayLocator())
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def figure(rows: list[dict]):
    """the matplotlib Figure of the board's rows (render.rows_of of its frame), one panel per track version."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = panels(plotted(rows))
    n = max(1, len(groups))
    fig = Figure(figsize=(PANEL_SIZE_IN[0], PANEL_SIZE_IN[1] * n))
    fig.subplots_adjust(hspace=0.55)
    FigureCanvasAgg(fig)
    if not groups:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no ranked runs or claims yet", ha="center", va="center")
        ax.set_axis_off()
    colours = {hw: f"C{i % 10}" for i, hw in enumerate(sorted({r["hardware"] for _, _, g in groups for r in g}))}
    for k, (track, version, mine) in enumerate(groups):
        draw_panel(fig.add_subplot(n, 1, k + 1), track, version, mine, colours)
    return fig


def progression_png(rows: list[dict]) -> bytes:
    """the board's png: figure() cut to what it holds."""
    fig = figure(rows)
    buf = io.BytesIO()
    # cut to what the figure holds (the legends beside the panels included): nothing clipped
    fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()
