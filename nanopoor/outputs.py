"""where the tool writes when the user did not say: ranked runs in runs/, everything else in dev-runs/.

runs/ is committed and is the only source of the leaderboard, so only runs meant for the board go
there (a full-scale run on a gpu). cpu and smoke runs, the demo, and the plots of verbs that only
read (review, reproduce) go to dev-runs/, which git ignores. nothing here imports torch."""
from __future__ import annotations

from pathlib import Path

RANKED_RUNS = Path("runs")
DEV_RUNS = Path("dev-runs")
PLOTS = DEV_RUNS / "plots"


def default_runs_dir(scale: str, gpu: bool) -> Path:
    """runs/ for a full-scale run on a gpu (meant for the board), dev-runs/ for anything else."""
    return RANKED_RUNS if scale == "full" and gpu else DEV_RUNS


def plot_path(given: Path | None, filename: str) -> Path:
    """the png a read-only verb writes: the user's file or folder, else dev-runs/plots/<filename>."""
    if given is None:
        return PLOTS / filename
    return given / filename if given.is_dir() else given
