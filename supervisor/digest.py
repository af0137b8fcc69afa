"""the harness's fingerprint: sha256 over the source files of the client and the supervisor.

every run stores it (result.json `harness_sha256`), and the runner compares it before and after a
run: the harness's files changed under a running record are a run that proves nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path


def package_files_digest(roots) -> str:
    """sha256 over every .py and .toml file below the given package folders, names included."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    h = hashlib.sha256()
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts:
                h.update(f"{root.name}/{p.relative_to(root)}".encode())
                h.update(p.read_bytes())
    return h.hexdigest()
