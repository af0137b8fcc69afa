"""the source scan's harness_internals flag: derived from the harness itself, so it cannot drift."""
from __future__ import annotations

import ast
import importlib
import inspect
import shutil
from pathlib import Path

import pytest

import harness
from harness.clock import Clock
from supervisor.source_scan import HARNESS_DIR, UNDOCUMENTED_SESSION_ATTRIBUTES, harness_private_names, scan_record

REDTEAM = Path(__file__).parent / "redteam"


def internals(tmp_path: Path, *lines: str, harness_dir: Path = HARNESS_DIR) -> list[str]:
    """the lines of a one-file record that the scan flags as harness_internals."""
    rec = tmp_path / "rec"
    rec.mkdir(exist_ok=True)
    (rec / "train.py").write_text("\n".join(lines) + "\n")
    return [f["text"] for f in scan_record(rec, harness_dir) if f["pattern"] == "harness_internals"]


def private_names_at_run_time() -> set[str]:
    """the private names a record could reach, found by importing the harness (not by reading it):
    each module's globals, each of its classes' attributes, a clock's instance attributes."""
    found = set(vars(Clock()))
    for path in sorted(HARNESS_DIR.glob("*.py")):
        mod = importlib.import_module(f"harness.{path.stem}") if path.stem != "__init__" else harness
        found |= set(vars(mod))
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__:
                found |= set(vars(cls))
    return {n for n in found if n.startswith("_") and not n.startswith("__") and len(n) > 1}


def test_every_private_name_of_the_imported_harness_is_covered(tmp_path):
    shown = private_names_at_run_time()
    assert {"_elapsed_ns", "_now_ns", "_state", "_SESSION", "_COMPILED"} <= shown   # the probe sees real names
    assert shown - harness_private_names() == set()
    # the session's own, read from the source (a session needs a run to exist)
    assert {"_eval_plan", "_last_eval", "_last_step", "_pauses", "_progress_device", "_run_eval"} <= harness_private_names()
    missed = [n for n in sorted(shown) if not internals(tmp_path, f"x.{n} = 1")]   # one record each: flags are capped
    assert missed == []


def test_a_private_name_added_to_the_harness_is_covered_from_then_on(tmp_path):
    line = "h.clock_copy._brand_new_ns += 10**15"
    assert internals(tmp_path, line) == []                   # no such name in the harness today
    copy = tmp_path / "harness"
    shutil.copytree(HARNESS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    clock = copy / "clock.py"
    text = clock.read_text()
    clock.write_text(text.replace("        self._elapsed_ns = 0\n", "        self._elapsed_ns = 0\n        self._brand_new_ns = 0\n", 1))
    assert "_brand_new_ns" in harness_private_names(copy)
    assert internals(tmp_path, line, harness_dir=copy) == [line]
    assert internals(tmp_path, "getattr(clock, '_brand_new_ns')", harness_dir=copy) == ["getattr(clock, '_brand_new_ns')"]


def test_a_function_local_is_not_a_reachable_name():
    assert "_" not in harness_private_names()
    tree = ast.parse((HARNESS_DIR / "source_scan.py").read_text())
    scan = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "scan_record")
    local = {n.id for n in ast.walk(scan) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    assert local and not {n for n in local if n.startswith("_")} & harness_private_names()


@pytest.mark.parametrize("line, flagged", [
    ("h = harness.session()", False),
    ("import harness", False),
    ("from harness import session", False),
    ("x = h.eval_seq_len, h.eval_batch_size, h.local_batch_size", False),
    ("self._step = 0  # the record's own private name", False),
    ("from harness import clock", True),
    ("from supervisor.evaluate import cross_entropy_sum", True),
    ("import harness.watch", True),
    ("harness.session.Session", True),
    ("supervisor.tracks.load_tracks()", True),
    ("h.stream.client", True),
    ("h.clock.start()", True),
    ("h._eval_plan = (64, 1)", True),
    ("harness.integrity._state['allow'] += 1", True),
])
def test_what_harness_internals_flags(tmp_path, line, flagged):
    assert bool(internals(tmp_path, line)) is flagged


def test_the_undocumented_session_attributes_still_exist():
    tree = ast.parse((HARNESS_DIR / "session.py").read_text())
    session = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Session")
    attrs = {n.attr for n in ast.walk(session) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    attrs |= {n.name for n in session.body if isinstance(n, ast.FunctionDef)}
    assert set(UNDOCUMENTED_SESSION_ATTRIBUTES) <= attrs


@pytest.mark.parametrize("record, pattern", [
    ("rt_clock_tamper", "harness_internals"),     # h.clock._elapsed_ns = 0
    ("rt_eval_settings", "harness_internals"),    # h._eval_plan = …: missed by the old hand list
    ("rt_val_training", "harness_internals"),     # h.stream
    ("rt_over_budget", "harness_internals"),      # harness.integrity._state
    ("rt_shard_read", "object_walk"),
])
def test_the_red_team_records_are_flagged(record, pattern):
    assert pattern in {f["pattern"] for f in scan_record(REDTEAM / record)}


def test_the_honest_red_team_record_is_not_flagged():
    assert scan_record(REDTEAM / "rt_clean") == []
