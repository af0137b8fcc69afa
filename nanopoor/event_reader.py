"""reading a run's events.jsonl (written by supervisor.events), tolerant of a torn last line."""
from __future__ import annotations

import json
from pathlib import Path


def read_events(path: Path) -> list[dict]:
    events = []
    if not Path(path).is_file():
        return events
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a process killed mid-write leaves a partial line; the rest stands
    return events


class EventTail:
    """incremental reader: each poll() returns the events appended since the last one."""

    def __init__(self, path: Path):
        self.path, self._offset, self._buf = Path(path), 0, ""

    def poll(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            f.seek(self._offset)
            chunk = f.read()
            self._offset = f.tell()
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def first(events: list[dict], type_: str) -> dict | None:
    """the first event of a type. for run_end that is the harness's: the launcher writes it once
    and ends the process, so a run_end before it can only be a record's forgery."""
    return next((e for e in events if e.get("type") == type_), None)
