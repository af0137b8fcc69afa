"""which files a `review` call reads: files as given, run folders as their events.jsonl, and any
other folder searched for logs, so one call can take a whole records/ tree."""
from __future__ import annotations

import os
from pathlib import Path

from nanopoor.errors import UserError

# what a training log is saved as; a folder search reads these and skips code, images and data
LOG_SUFFIXES = {".txt", ".log", ".out", ".stdout", ".jsonl"}


def collect_logs(paths: list[Path]) -> list[Path]:
    """every log the paths name, in a stable order, each once. a path that does not exist is a
    user error (nothing is read until every path is known to be there)."""
    for path in paths:
        if not Path(path).exists():
            raise UserError(f"no log at {path}: check the path (a log file, a run folder, or a folder of logs)")
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / "events.jsonl").is_file():
            found.append(path)                      # a run folder stands for its events.jsonl
        else:
            found += _search(path)
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _search(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        root_path = Path(root)
        if "events.jsonl" in files:
            out.append(root_path)                   # a run folder: its events, not its log.txt twice
            continue
        out += [root_path / f for f in sorted(files)
                if Path(f).suffix.lower() in LOG_SUFFIXES and not f.startswith(".")]
    return out
