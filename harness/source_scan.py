"""a reviewer's index of a record: the lines that use the tools a cheat would need.

nothing here decides a verdict: plenty of honest code uses threads or ctypes. but the checks the
harness runs inside the record's process can be defeated by code that walks the interpreter
(gc, frames), calls C directly, rebinds the harness's or the time module's functions, or works
in another thread or process while the clock is paused. those are rare in a train script and
easy to spot, so the launcher lists every such line in the run's events (`source_flags`), and
docs/trust.md tells the reviewer to read each one."""
from __future__ import annotations

import re
from pathlib import Path

# (name, pattern, why a reviewer should read the line)
PATTERNS: list[tuple[str, str, str]] = [
    ("object_walk", r"\bgc\.get_(objects|referents|referrers)\b",
     "walks the interpreter's live objects: can reach the harness's val tokens, clock and checks"),
    ("frames", r"\bsys\._getframe\b|\binspect\.(stack|currentframe|getouterframes|getmembers)\b|\.f_(back|locals|globals)\b",
     "inspects call frames: can tell the harness's calls apart or read its locals"),
    ("module_table", r"\bsys\.modules\b|\bimportlib\.reload\b|\.__code__\b|\.__globals__\b",
     "edits modules or function code"),
    ("ctypes", r"\bctypes\b|\bcffi\b",
     "calls C directly: file and memory access the data guard cannot see"),
    ("proc", r"/proc/",
     "reads /proc: process memory and open file descriptors"),
    ("raw_file_read", r"\b(np|numpy)\.(memmap|fromfile)\b|\btorch\.from_file\b|\bmmap\.mmap\b|\bos\.(pread|preadv|read|sendfile)\b",
     "reads files at a low level: train tokens must come from h.next_batch()"),
    ("weights_file", r"\btorch\.load\b|\bsafetensors\b|\bnp\.load\b|\bpickle\.loads?\b",
     "loads saved tensors: weights or data trained elsewhere would bypass the budget"),
    ("harness_internals", r"\bharness\.(clock|integrity|stream|dataserver|evaluate|causality|launch|events|session\.)\w*"
                          r"|\.(clock|stream|events|val_tokens_np|summary)\b(?!\s*\()"
                          r"|\.(_now_ns|_check_ns|_elapsed_ns|_started_ns|_span_t0|_pause_ns_in_span|_state|_watched|_val_device"
                          r"|_post_warmup_digest|_in_eval|_in_warmup|_causality|_last_eval|_proc)\b",
     "reaches into the harness beyond the contract (harness.session() and its documented attributes)"),
    ("time_rebind", r"\btime\.\w+\s*=[^=]|\bsetattr\(\s*time\b",
     "rebinds a function of the time module"),
    ("exit_hooks", r"\batexit\b|\bsignal\.signal\b|\bos\._exit\b",
     "runs code at exit or on a signal: after the harness has written its last event"),
    ("concurrency", r"\bthreading\b|\bconcurrent\.futures\b|\bmultiprocessing\b|\bsubprocess\b|\bos\.(system|fork|spawn\w*|exec\w*|posix_spawn)\b",
     "works in another thread or process: such work can go on while the clock is paused for evaluation"),
    ("interpreter_hooks", r"\bsys\.(settrace|setprofile|addaudithook)\b",
     "hooks the interpreter"),
]
_COMPILED = [(name, re.compile(rx), why) for name, rx, why in PATTERNS]
DATA_SUFFIXES = {".pt", ".pth", ".bin", ".npy", ".npz", ".safetensors", ".pkl", ".pickle", ".ckpt", ".h5", ".arrow", ".parquet"}
MAX_PER_PATTERN = 5


def scan_record(record_dir: str | Path) -> list[dict]:
    """every flagged line of the record's python files, and every data file it ships."""
    root = Path(record_dir)
    flags: list[dict] = []
    counts: dict[str, int] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = str(path.relative_to(root))
        if path.suffix in DATA_SUFFIXES:
            flags.append({"file": rel, "line": None, "pattern": "data_file", "text": f"{path.stat().st_size:,} bytes",
                          "why": "ships a data file: pretrained weights or tokens would bypass the budget"})
            continue
        if path.suffix != ".py":
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0]
            for name, rx, why in _COMPILED:
                if rx.search(code) and counts.get(name, 0) < MAX_PER_PATTERN:
                    counts[name] = counts.get(name, 0) + 1
                    flags.append({"file": rel, "line": n, "pattern": name, "text": line.strip()[:160], "why": why})
    return flags
