"""what the tool prints and where it writes when the user did not say.

every verb that prints results takes `--format table|json` (Format) and prints json through
print_json or print_json_array only, so every verb's stdout is one json document that json.loads
reads: cleaned (nan/inf as strings), keys sorted; an object for one result, an array of objects
for many (written as each one is ready, one a line). the formatters here are the ones more than
one verb shows numbers with.

where it writes: ranked runs in runs/, everything else in dev-runs/. runs/ is committed and is
the only source of the leaderboard, so only runs meant for the board go there (a full-scale run
on a gpu). cpu and smoke runs, the demo, and the plots of verbs that only read (review,
reproduce) go to dev-runs/, which git ignores. nothing here imports torch."""
from __future__ import annotations

import errno
import math
import os
import sys
from collections.abc import Iterable
from enum import Enum
from pathlib import Path

from supervisor.events import fmt_tokens  # the harness's own (it never imports the tool); shown here too
from nanopoor.jsonio import dumps

__all__ = ["DEV_RUNS", "PLOTS", "RANKED_RUNS", "Format", "Scale", "check_writable", "default_runs_dir", "fmt_loss",
           "fmt_mean_sd", "fmt_ms", "fmt_tokens", "os_error_line", "plot_path", "print_json",
           "print_json_array"]

RANKED_RUNS = Path("runs")
DEV_RUNS = Path("dev-runs")
PLOTS = DEV_RUNS / "plots"


class Format(str, Enum):
    """--format: a human-readable report, or json for scripts."""
    table = "table"
    json = "json"


class Scale(str, Enum):
    """--scale: a record's real budget (needs a gpu), or a smoke run of minutes on a cpu."""
    full = "full"
    smoke = "smoke"


def default_runs_dir(scale: str, gpu: bool) -> Path:
    """runs/ for a full-scale run on a gpu (meant for the board), dev-runs/ for anything else."""
    return RANKED_RUNS if scale == "full" and gpu else DEV_RUNS


def plot_path(given: Path | None, filename: str) -> Path:
    """the png a read-only verb writes: the user's file or folder, else dev-runs/plots/<filename>."""
    if given is None:
        return PLOTS / filename
    return given / filename if given.is_dir() else given


def _why_not_writable(folder: Path) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "a read-only file system"
    except OSError:
        pass
    return "not writable by this user"


def check_writable(path: Path, option: str) -> None:
    """before anything starts: the folder (or, when it does not exist yet, the folder it would be
    made in) can be written. one line naming the option to change, never a traceback halfway."""
    path = Path(path)
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if base.exists() and not base.is_dir():
        from nanopoor.errors import UserError
        raise UserError(f"{path.as_posix()} cannot be made: {base.as_posix()} is a file; pass {option} with a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        from nanopoor.errors import UserError
        where = path.as_posix() + ("" if base == path else f" (in {base.as_posix()})")
        raise UserError(f"cannot write {where}: {_why_not_writable(base)}; pass {option} with a folder you can write")


# errors of the file system that no check beforehand can rule out (a disk that fills, a mount
# that turns read-only): one line at the top of the cli instead of a traceback
WRITE_ERRNOS = {errno.EROFS: "a read-only file system", errno.ENOSPC: "no space left on the disk",
                errno.EDQUOT: "the disk quota is exceeded"}
ACCESS_ERRNOS = {errno.EACCES, errno.EPERM}


def os_error_line(e: OSError) -> str | None:
    """'cannot write X: why; what to do' for a file-system refusal, None for any other OSError."""
    where = e.filename if e.filename is not None else "a file"
    if e.errno in WRITE_ERRNOS:
        return (f"cannot write {where}: {WRITE_ERRNOS[e.errno]}; free space or pass --runs DIR / --out PATH "
                f"with a folder you can write")
    if e.errno in ACCESS_ERRNOS:
        return f"permission denied on {where}: fix its permissions or pass --runs DIR / --out PATH with a folder you can use"
    return None


# --- json ---------------------------------------------------------------------------------
def print_json(obj) -> None:
    """one result as the tool's json on stdout, indented by two."""
    sys.stdout.write(dumps(obj, indent=2) + "\n")
    sys.stdout.flush()


def print_json_array(items: Iterable) -> list:
    """many results as one json array on stdout, each element on a line of its own as soon as it
    is ready (a long review streams); returns the items. the whole output is one document: an
    array, never json lines."""
    out = []
    sys.stdout.write("[")
    for item in items:
        sys.stdout.write(("," if out else "") + "\n" + dumps(item, indent=None))
        sys.stdout.flush()
        out.append(item)
    sys.stdout.write("\n]\n" if out else "]\n")
    sys.stdout.flush()
    return out


# --- numbers for people --------------------------------------------------------------------
def fmt_ms(ms: float | None) -> str:
    """a duration in ms as seconds, or minutes from one minute on; '?' when unknown."""
    if ms is None:
        return "?"
    if not math.isfinite(ms):
        return str(ms)
    if ms >= 60_000:
        return f"{ms / 60_000:.2f} min"
    return f"{ms / 1000:.1f} s"


def fmt_loss(x) -> str:
    """a loss to four decimals; '-' when there is none."""
    return "-" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))


def fmt_mean_sd(st: dict | None, fmt) -> str:
    """'mean ± sd' of a {mean, sd} dict, each through fmt; '-' when there is none."""
    if not st:
        return "-"
    return fmt(st["mean"]) + (f" ± {fmt(st['sd'])}" if st["sd"] is not None else "")
