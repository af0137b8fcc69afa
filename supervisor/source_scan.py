"""a reviewer's index of a record: the lines and files that could carry knowledge past the budget.

nothing here decides a verdict. the record runs isolated and the supervisor keeps every number,
so what is left for a reviewer is what the record brings with it: data shipped in its folder (a
weights file, a long literal), code that loads saved tensors, and code that works in other
threads or processes or calls C (fine in a train script, worth a look). the supervisor lists
every such line in the run's events (`source_flags`)."""
from __future__ import annotations

import ast
import re
import threading
from pathlib import Path

# (name, pattern, why a reviewer should read the line)
PATTERNS: list[tuple[str, str, str]] = [
    ("weights_file", r"\btorch\.load\b|\bsafetensors\b|\bnp\.load\b|\bpickle\.loads?\b|\bjoblib\b",
     "loads saved tensors: weights or data made elsewhere would bypass the budget"),
    ("raw_file_read", r"\b(np|numpy)\.(memmap|fromfile)\b|\btorch\.from_file\b|\bmmap\.mmap\b|\bopen\(",
     "reads a file: the record's only files are its own source, so this reads something it shipped"),
    ("ctypes", r"\bctypes\b|\bcffi\b", "calls C directly"),
    ("concurrency", r"\bthreading\b|\bconcurrent\.futures\b|\bmultiprocessing\b|\bsubprocess\b|\bos\.(system|fork|spawn\w*|exec\w*|posix_spawn)\b",
     "works in another thread or process"),
    ("network", r"\bsocket\b|\burllib\b|\brequests\b|\bhttp\.client\b",
     "opens a network connection (an isolated run has no network)"),
]
DATA_SUFFIXES = {".pt", ".pth", ".bin", ".npy", ".npz", ".safetensors", ".pkl", ".pickle", ".ckpt", ".h5", ".arrow", ".parquet"}
MAX_PER_PATTERN = 5
LONG_STRING_CHARS = 4096     # a string or bytes literal this long is data, not code
LONG_SEQUENCE_ITEMS = 1024   # so is a list, tuple, set or dict literal of this many constants
_COMPILED = [(name, re.compile(rx), why) for name, rx, why in PATTERNS]
# python 3.11's parser is not safe to call from two threads at once (a SystemError, "AST constructor
# recursion depth mismatch", was seen when runs started from a thread pool froze their records)
PARSE_LOCK = threading.Lock()


def data_literals(source: str) -> list[tuple[int, str]]:
    """(line, what) of every literal long enough to be data."""
    try:
        with PARSE_LOCK:
            tree = ast.parse(source)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) >= LONG_STRING_CHARS:
            out.append((node.lineno, f"a {type(node.value).__name__} literal of {len(node.value):,} characters"))
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(node.elts) >= LONG_SEQUENCE_ITEMS:
            out.append((node.lineno, f"a {type(node).__name__.lower()} literal of {len(node.elts):,} items"))
        elif isinstance(node, ast.Dict) and len(node.keys) >= LONG_SEQUENCE_ITEMS:
            out.append((node.lineno, f"a dict literal of {len(node.keys):,} items"))
    return out


def scan_record(record_dir: str | Path) -> list[dict]:
    """every flagged line of the record's python files, and every data file it ships."""
    root = Path(record_dir)
    flags: list[dict] = []
    counts: dict[str, int] = {}

    def add(rel: str, line, name: str, text: str, why: str) -> None:
        if counts.get(name, 0) < MAX_PER_PATTERN:
            counts[name] = counts.get(name, 0) + 1
            flags.append({"file": rel, "line": line, "pattern": name, "text": text[:160], "why": why})

    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        rel = str(path.relative_to(root))
        if path.suffix in DATA_SUFFIXES:
            add(rel, None, "data_file", f"{path.stat().st_size:,} bytes",
                "ships a data file: pretrained weights or tokens would bypass the budget")
            continue
        if path.suffix != ".py":
            continue
        source = path.read_text(errors="replace")
        for n, what in data_literals(source):
            add(rel, n, "data_literal", what, "data written into the source: it bypasses the budget like a data file")
        for n, line in enumerate(source.splitlines(), 1):
            code = line.split("#", 1)[0]
            for name, rx, why in _COMPILED:
                if rx.search(code):
                    add(rel, n, name, line.strip(), why)
    return flags
