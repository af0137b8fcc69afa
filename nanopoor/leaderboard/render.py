"""the leaderboard frame rendered as markdown, json, csv and a record-progression png (plot.py).

every output is a pure function of the frame: no time of "now", fixed sort orders, and a
png without the matplotlib version stamp, so the same runs give the same bytes. the numbers
in the cells are formatted by numbers.py.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from nanopoor.leaderboard.numbers import fmt_duration, fmt_flop, fmt_speedup, fmt_time_cell
from nanopoor.leaderboard.plot import progression_png  # noqa: F401  (the board's png, named here as before)
from nanopoor.leaderboard.tiers import TIER_LINE, tier_cell

CLASS_NAMES = ("official", "unofficial", "dev")
SUBMISSION_HEADER = ["rank", "time", "speed-up", "hardware cost", "val loss (mean, p)", "date", "data", "person",
                     "description", "tier", "verdict", "log"]
REST_HEADER = ["val loss (mean, p)", "time", "speed-up", "hardware cost", "date", "data", "person", "description",
               "tier", "verdict", "log"]
CLAIM_HEADER = ["claimed time", "hardware cost", "date", "data", "person", "description", "hardware", "log", "verdict"]
P_LINE = ("p: the one-sided t-test's p-value that the runs' mean val loss is below the target; verified needs "
          "p < 0.01 over at least 3 runs (p=1: the runs are plainly above the target).")
MEASURES_TEXT = ("Beside each time: the speed-up over the track version's calibration recipe (the recipe that set "
                 "its target: its mean train time on the same hardware over this one's), and the hardware cost: the "
                 "GPU's fp16 dense peak FLOP/s (datasheet) × train time × GPUs, the measure the Marin speedrun ranks "
                 "by, so rows from different GPUs compare (? where the GPU's peak is not known).")


def rows_of(frame: pd.DataFrame) -> list[dict]:
    """the frame as plain dicts, missing values (NaN, NA) as None."""
    obj = frame.astype(object)
    return obj.where(obj.notna(), None).to_dict("records")


def cell(text) -> str:
    """one markdown table cell: pipes escaped, newlines as <br>."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", "<br>")


def table(header: list[str], body: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]


def time_cell(row: Mapping) -> str:
    return fmt_time_cell(row["train_time_ms_mean"], row["train_time_ms_sd"], row["n_runs"])


def measure_cells(row: Mapping) -> list[str]:
    """the speed-up over the calibration recipe and the hardware cost, beside the time."""
    return [fmt_speedup(row.get("speedup_vs_calibration")), fmt_flop(row.get("hardware_flop_cost"))]


def val_cell(row: Mapping) -> str:
    mean, p, n = row["val_loss_mean"], row["p_value"], row["n_runs"]
    if mean is None:
        return "—"
    if p is None:
        return f"{mean:.4f} ({n} run{'s' if n != 1 else ''})"
    return f"{mean:.4f} (p={p:.2g})"


def verdict_cell(row: Mapping) -> str:
    if row["verdict"] in ("verified", "single run") or not row["reasons"]:
        return row["verdict"]
    return f"{row['verdict']}: {row['reasons']}"


def log_cell(row: Mapping) -> str:
    runs = str(row["runs"] or "").split()
    if len(runs) == 1:
        return f"[run]({runs[0]})"
    return " ".join(f"[{i}]({r})" for i, r in enumerate(runs, 1))


def submission_table(rows: list[dict]) -> list[str]:
    """verified submissions, ranked by time."""
    body = [[row["rank"] if row["rank"] is not None else "—", time_cell(row), *measure_cells(row), val_cell(row),
             row["date"], row["data"], row["person"], row["description"], tier_cell(row), verdict_cell(row),
             log_cell(row)] for row in rows]
    return table(SUBMISSION_HEADER, body)


def rest_table(subs: pd.DataFrame) -> list[str]:
    """submissions that are not verified (or not judged), by val loss: the lowest first."""
    keys = pd.DataFrame({"loss": subs["val_loss_mean"].astype("float64"),
                         "time": subs["train_time_ms_mean"].astype("float64").fillna(0.0),
                         "record": subs["record"].astype(str), "runs": subs["runs"].astype(str)}, index=subs.index)
    rows = rows_of(subs.loc[keys.sort_values(list(keys.columns), na_position="last").index])
    body = [[val_cell(row), time_cell(row), *measure_cells(row), row["date"], row["data"], row["person"],
             row["description"], tier_cell(row), verdict_cell(row), log_cell(row)] for row in rows]
    return table(REST_HEADER, body)


def claim_table(rows: list[dict]) -> list[str]:
    """one short verdict per claim; the full findings as numbered notes under the table (a note
    that several claims share is written once)."""
    notes: list[str] = []
    body = []
    for row in rows:
        refs = []
        for text in str(row["found"] or "").splitlines():
            if text not in notes:
                notes.append(text)
            refs.append(notes.index(text) + 1)
        t = row["claimed_time_min"]
        log = row["log"] or ""
        verdict = row["verdict"] + (f" (notes {', '.join(map(str, sorted(refs)))})" if refs else "")
        body.append([fmt_duration(t * 60_000.0) if t is not None else "?", fmt_flop(row.get("hardware_flop_cost")),
                     row["date"], row["data"], row["person"],
                     row["description"], row["hardware"], f"[{log.rsplit('/', 1)[-1]}]({log})" if log else "—",
                     verdict])
    return table(CLAIM_HEADER, body) + [""] + [f"{i}. {text}" for i, text in enumerate(notes, 1)]


def not_ranked_lines(subs: pd.DataFrame) -> list[str]:
    """dev and smoke submissions are counted, never ranked."""
    full = subs["scale"].eq("full")
    out = []
    for what, keep in (("dev (cpu) run", subs["class"].eq("dev") & full), ("smoke-scale run", ~full),
                       ("run of another class", full & ~subs["class"].isin(CLASS_NAMES))):
        picked = subs[keep]
        if len(picked):
            n = int(picked["n_runs"].sum())
            what = what.replace("run", "runs", 1) if n != 1 else what
            out.append(f"- {n} {what} of {', '.join(sorted(picked['record'].unique()))}")
    return out


def track_order(name: str, tracks: Mapping) -> tuple:
    """tracks with official hardware first (the board's reason to exist), then by name."""
    track = tracks.get(name)
    return (not (track is not None and track.has_official_hardware), name)


def version_section(name: str, version: int, subs: pd.DataFrame, track, current: bool) -> list[str]:
    """one track version: per class and hardware, the verified runs ranked by time and the rest by
    val loss; then the calibration runs that set the target, and what is counted, never ranked."""
    calibrating = subs["target_val_loss"].isna()
    calibration, judged = subs[calibrating], subs[~calibrating]
    targets = sorted(float(t) for t in judged["target_val_loss"].unique())
    if current and track is not None and not targets and track.target_val_loss is not None:
        targets = [track.target_val_loss]
    target = ", ".join(str(t) for t in targets) if targets else "pending (set by its calibration runs)"
    out = [f"### {name} version {version} · target {target}", ""]
    is_ranked = judged["ranked"].eq(True)
    ranked = judged[is_ranked]
    ranked = ranked.assign(unofficial=ranked["class"].ne("official"))
    tables = ranked.groupby(["unofficial", "hardware", "dataset_fingerprint"], sort=True)
    if current and track is not None and track.has_official_hardware and ranked["unofficial"].all():
        out += [f"#### Official: {track.official_gpu_count}× {track.official_gpu}", "", "_No official runs yet._", ""]
    for (unofficial, hardware, fp), group in tables:
        data = f" · data {fp[:12]}" if ranked["dataset_fingerprint"].nunique() > 1 else ""
        out += [f"#### {'Unofficial' if unofficial else 'Official'}: {hardware}{data}", ""]
        verified = group["verified"].eq(True)
        out += (submission_table(rows_of(group[verified])) if verified.any() else ["_Nothing verified yet._"]) + [""]
        if not verified.all():
            out += ["**Did not reach the target** (or not shown to: fewer than 3 runs, or p ≥ 0.01), by val loss:", ""]
            out += rest_table(group[~verified]) + [""]
    if len(ranked):
        out += [P_LINE, "", TIER_LINE, ""]
    if len(calibration):
        out += ["#### Calibration runs (these set the target)", "",
                "Made while this version of the track had no target: listed by val loss, never judged or ranked.", ""]
        out += rest_table(calibration) + [""]
    counted = not_ranked_lines(judged[~is_ranked])
    if counted:
        out += ["Not ranked:", ""] + counted + [""]
    return out


def track_section(name: str, rows: pd.DataFrame, track) -> list[str]:
    out = [f"## {name}", ""]
    if track is not None:
        official = (f"{track.official_gpu_count}× {track.official_gpu} (capability {track.official_capability})"
                    if track.has_official_hardware else "none (no run on this track is official)")
        out += [f"{track.description}. Official hardware: {official}.", ""]
    current = int(getattr(track, "version", 1) or 1)
    subs = rows[rows["kind"].eq("submission")]
    version_of = subs["track_version"].fillna(1).astype(int)
    for version in sorted(set(version_of) | {current}, reverse=True):
        mine = subs[version_of.eq(version)]
        if len(mine) or version == current:
            out += version_section(name, version, mine, track, version == current)
    claims = rows[rows["kind"].eq("claim")]
    if len(claims):
        out += ["### Published claims (made elsewhere; not verified by this harness)", ""]
        out += claim_table(rows_of(claims)) + [""]
    return out


def markdown(frame: pd.DataFrame, tracks: Mapping, checks: list, runs_dir: str) -> str:
    """leaderboard.md from the board's frame (in its order); runs_dir as seen from the file."""
    n_runs = sum(1 for c in checks)
    out = [
        "# nanopoor leaderboard", "",
        f"Generated by `nanopoor leaderboard` from `{runs_dir}/` ({n_runs} run folders) and the "
        "records' claims. Do not edit by hand: `nanopoor leaderboard --check` fails when this file is stale.", "",
        "A result is **verified** when it has at least 3 runs with distinct harness-assigned seeds, all "
        "reported (no best-of), each completed, causal, within its token budget and with hashes that "
        "verify, and a mean final val loss at or below its track version's target with a one-sided t-test "
        "p < 0.01. Time is the harness's train clock (mean ± sd over the runs); val loss is the final "
        "eval on the track's canonical val set. Only verified full-scale GPU results get a rank.", "",
        MEASURES_TEXT, "",
    ]
    for name in sorted(frame["track"].unique(), key=lambda n: track_order(n, tracks)):
        out += track_section(name, frame[frame["track"].eq(name)], tracks.get(name))
    bad = [c for c in checks if c.problems]
    if bad:
        out += ["## Run folders that do not verify", ""]
        out += [f"- `{c.subject}`: {'; '.join(c.problems)}" for c in bad] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def to_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="records", indent=2, force_ascii=False) + "\n"


def to_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")
