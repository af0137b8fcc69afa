"""`make test` says what it runs and names the slow red-team block as it starts, before the minutes
in which that block prints nothing; the lines are plain, so a CI log (no terminal) shows them."""
from __future__ import annotations

import re
from pathlib import Path

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
# a copy of the hooks' module of its own (the suite's own stays as it is), its block moved here
CONFTEST = f"""
import importlib.util
from pathlib import Path
spec = importlib.util.spec_from_file_location("suite_progress_copy", {str(REPO / "tests" / "suite_progress.py")!r})
progress = importlib.util.module_from_spec(spec)
spec.loader.exec_module(progress)
progress.REDTEAM = Path(__file__).parent / "redteam"
pytest_collection_finish, pytest_runtest_protocol = progress.pytest_collection_finish, progress.pytest_runtest_protocol
"""


def test_the_red_team_block_is_named_before_its_first_result(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a="def test_one(): pass\ndef test_two(): pass\n")
    red = pytester.mkdir("redteam")
    (red / "test_cheats.py").write_text("import time\ndef test_x(): pass\ndef test_y(): pass\ndef test_z(): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    assert "running 5 tests in 2 files; 3 of them are the red-team block (tests/redteam/)" in out
    start = out.index("redteam/test_cheats.py: the red-team block starts (3 tests)")
    assert re.search(r"redteam/test_cheats\.py \.\.\.", out[start:])   # its results come after the line
    assert re.search(r"test_a\.py \.\.", out[start:])                   # and the next file's, as it ends
    assert out.index("running 5 tests") < start and out.count("the red-team block starts") == 1


def test_nothing_is_said_of_a_block_that_is_not_selected(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a="def test_one(): pass\n")
    out = pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    assert "running 1 test in 1 file" in out and "red-team" not in out


def test_the_makefile_shows_per_file_progress():
    make = (REPO / "Makefile").read_text()
    for target in ("test", "test-all", "test-fast"):
        recipe = make.split(f"\n{target}: setup\n", 1)[1].split("\n", 1)[0]
        assert "pytest" in recipe and " -q" not in recipe, recipe   # -q would hide the file names
