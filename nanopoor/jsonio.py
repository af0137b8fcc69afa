"""json in and out for the whole tool: nan/inf made writable, finite-number checks, atomic writes.

json has no nan or inf. what the tool writes for a reader keeps them visible as the strings "nan" and
"inf" (`clean`); a number the tool computes with is a finite float or None (`finite_or_none`). every
file the tool replaces is written beside its target, fsynced and renamed over it (`write_atomic`), so
a reader or a crash sees the old bytes or the new ones. the harness keeps its own copy of `clean`
(harness/events.py): it never imports the tool."""
from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path


def is_finite(x) -> bool:
    """a real int or float that is neither nan nor inf (a bool is not a number here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_or_none(v) -> float | None:
    """a finite float, or None (the event log writes nan/inf as strings; they come back as None)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def clean(v):
    """v made json-writable: nan/inf as strings, numpy numbers as python ones, tuples as lists,
    keys and paths (anything else) as str."""
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, numbers.Integral):   # numpy's integers too
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v) if math.isfinite(v) else str(float(v))
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    return str(v)


def dumps(obj, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """the tool's json text of obj, cleaned first."""
    return json.dumps(clean(obj), indent=indent, sort_keys=sort_keys)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """write data to path through a temp file beside it: flushed, fsynced, then renamed over it.
    an OSError leaves the old file as it was (the temp file is removed) and is raised."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    """obj as json (cleaned, newline-terminated), written atomically."""
    write_atomic(path, dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")
