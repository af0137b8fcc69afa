"""a reviewer's index of a record: the lines that use the tools a cheat would need.

nothing here decides a verdict: plenty of honest code uses threads or ctypes. but the checks the
harness runs inside the record's process can be defeated by code that walks the interpreter
(gc, frames), calls C directly, rebinds the harness's or the time module's functions, or works
in another thread or process while the clock is paused. those are rare in a train script and
easy to spot, so the launcher lists every such line in the run's events (`source_flags`), and
docs/trust.md tells the reviewer to read each one."""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent.parent / "harness"  # the client a record imports
# the session's public attributes that docs/contract.md does not offer a record (a test checks
# that each is still an attribute of the session); its private ones are found in the source
UNDOCUMENTED_SESSION_ATTRIBUTES = ("clock", "stream", "events", "summary")
INTERNALS_WHY = "reaches into the harness beyond the contract (harness.session() and its documented attributes)"
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
    # at scan time this pattern also gets the harness's modules and private names (harness_regex)
    ("harness_internals", r"\.(" + "|".join(UNDOCUMENTED_SESSION_ATTRIBUTES) + r")\b(?!\s*\()",
     INTERNALS_WHY),
    ("time_rebind", r"\btime\.\w+\s*=[^=]|\bsetattr\(\s*time\b",
     "rebinds a function of the time module"),
    ("exit_hooks", r"\batexit\b|\bsignal\.signal\b|\bos\._exit\b",
     "runs code at exit or on a signal: after the harness has written its last event"),
    ("concurrency", r"\bthreading\b|\bconcurrent\.futures\b|\bmultiprocessing\b|\bsubprocess\b|\bos\.(system|fork|spawn\w*|exec\w*|posix_spawn)\b",
     "works in another thread or process: such work can go on while the clock is paused for evaluation"),
    ("interpreter_hooks", r"\bsys\.(settrace|setprofile|addaudithook)\b",
     "hooks the interpreter"),
]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and len(name) > 1


def _defined_names(body: list[ast.stmt]) -> set[str]:
    """the names a module or class body binds: assignments, functions, classes, imports."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):  # a guarded import or constant
            names |= _defined_names([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])
    return names


@functools.cache
def harness_private_names(package_dir: Path = HARNESS_DIR) -> frozenset[str]:
    """every private name the harness defines, read from its own source: module-level names,
    class attributes and methods, and attributes it sets on objects (self._x = …, f._x = …). a
    private name added to the harness is covered the day it is added; a function's locals are not
    reachable from outside and are left out."""
    names: set[str] = set()
    for path in sorted(Path(package_dir).glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names |= _defined_names(tree.body)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names |= _defined_names(node.body)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return frozenset(n for n in names if _private(n))


def harness_regex(package_dir: Path = HARNESS_DIR) -> str:
    """what harness_internals adds for this harness: its modules (harness.session() excepted), an
    import from it, and its private names as attributes or strings (getattr)."""
    modules = sorted(p.stem for p in Path(package_dir).glob("*.py") if p.stem != "__init__")
    private = sorted(harness_private_names(package_dir))
    return (r"\bharness\.(" + "|".join(modules) + r")\b(?!\s*\()"
            r"|\bfrom\s+harness\b(?!\s+import\s+session\s*$)"
            r"|[.'\"](" + "|".join(private) + r")\b")


@functools.cache
def compiled_patterns(package_dir: Path = HARNESS_DIR) -> list[tuple[str, re.Pattern, str]]:
    return [(name, re.compile(rx + "|" + harness_regex(package_dir) if name == "harness_internals" else rx), why)
            for name, rx, why in PATTERNS]


DATA_SUFFIXES = {".pt", ".pth", ".bin", ".npy", ".npz", ".safetensors", ".pkl", ".pickle", ".ckpt", ".h5", ".arrow", ".parquet"}
MAX_PER_PATTERN = 5


def scan_record(record_dir: str | Path, harness_dir: Path = HARNESS_DIR) -> list[dict]:
    """every flagged line of the record's python files, and every data file it ships."""
    root = Path(record_dir)
    patterns = compiled_patterns(Path(harness_dir))
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
            for name, rx, why in patterns:
                if rx.search(code) and counts.get(name, 0) < MAX_PER_PATTERN:
                    counts[name] = counts.get(name, 0) + 1
                    flags.append({"file": rel, "line": n, "pattern": name, "text": line.strip()[:160], "why": why})
    return flags
