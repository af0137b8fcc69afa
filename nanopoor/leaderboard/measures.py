"""numbers the board adds beside each row's time: the speed-up over the track's calibration recipe
and the hardware FLOP cost. both are computed from the frame's own columns, after its rows are
made and ranked, and change no verdict, rank or order.

- speedup_vs_calibration: the mean train time of the track version's calibration runs (the recipe
  that set its target, named in tracks.toml `target_source`) on the same hardware, over this row's
  mean train time. rows on other hardware, and track versions without calibration runs, have none:
  across hardware the cost compares.
- hardware_flop_cost: the GPU's fp16 dense peak FLOP/s × mean train time × GPUs
  (nanopoor/gpu_peaks.py); a claim's uses its claimed time and hardware.
"""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from nanopoor.gpu_peaks import hardware_flop_cost

MEASURES = ["speedup_vs_calibration", "hardware_flop_cost"]


def calibration_record(track) -> str | None:
    """the record named first in the track's target_source ('baseline_adamw_epoch: run ids')."""
    source = str(getattr(track, "target_source", "") or "")
    name = source.split(":", 1)[0].strip()
    return name or None


def calibration_times(frame: pd.DataFrame, tracks: Mapping) -> dict[tuple, float]:
    """(track, track_version, hardware) -> the calibration runs' mean train time (ms)."""
    out = {}
    calib = frame[frame["kind"].eq("submission") & frame["verdict"].eq("calibration")]
    for _, row in calib.iterrows():
        named = calibration_record(tracks.get(row["track"]))
        if named is not None and row["record"] != named:
            continue   # a calibrating run of another recipe did not set the target
        mean = row["train_time_ms_mean"]
        if mean is not None and pd.notna(mean):
            out[(row["track"], int(row["track_version"]), row["hardware"])] = float(mean)
    return out


def add_measures(frame: pd.DataFrame, tracks: Mapping) -> pd.DataFrame:
    """the frame with MEASURES filled in (float, NaN where there is nothing to compare or no peak)."""
    calib = calibration_times(frame, tracks)
    speedups, costs = [], []
    for _, row in frame.iterrows():
        if row["kind"] == "claim":
            minutes = row["claimed_time_min"]
            costs.append(hardware_flop_cost(row["hardware"], minutes * 60_000.0 if pd.notna(minutes) else None))
            speedups.append(None)
            continue
        mean = float(row["train_time_ms_mean"]) if pd.notna(row["train_time_ms_mean"]) else None
        base = calib.get((row["track"], int(row["track_version"]), row["hardware"])) if pd.notna(row["track_version"]) else None
        speedups.append(base / mean if base and mean else None)
        costs.append(hardware_flop_cost(row["hardware"], mean))
    return frame.assign(speedup_vs_calibration=pd.array(speedups, dtype="Float64"),
                        hardware_flop_cost=pd.array(costs, dtype="Float64"))
