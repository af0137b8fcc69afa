"""nanopoor.jsonio: nan/inf made writable, finite checks, and writes that leave the old file or the new one."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nanopoor.jsonio import clean, dumps, finite_or_none, is_finite, write_atomic, write_json_atomic


def test_clean_keeps_nan_and_inf_visible_and_makes_everything_writable():
    got = clean({"a": float("nan"), 2: [float("inf"), (1, -math.inf)], "p": Path("x/y"), "n": np.int64(3),
                 "f": np.float32(0.5), "b": True, "none": None})
    assert got == {"a": "nan", "2": ["inf", [1, "-inf"]], "p": "x/y", "n": 3, "f": 0.5, "b": True, "none": None}
    assert type(got["n"]) is int and json.loads(dumps(got)) == got


def test_finite_checks():
    assert [is_finite(x) for x in (1, 2.5, float("nan"), float("inf"), True, "1", None)] == [True, True, False, False, False, False, False]
    assert [finite_or_none(x) for x in (3, "2.5", "nan", "inf", None, "x")] == [3.0, 2.5, None, None, None, None]


def test_write_atomic_replaces_whole_files_and_leaves_the_old_one_on_error(tmp_path, monkeypatch):
    path = tmp_path / "board.md"
    write_atomic(path, "old\n")
    write_json_atomic(tmp_path / "r.json", {"loss": float("nan")})
    assert json.loads((tmp_path / "r.json").read_text()) == {"loss": "nan"}

    def no_space(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("nanopoor.jsonio.os.replace", no_space)
    with pytest.raises(OSError):
        write_atomic(path, b"new\n")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["board.md", "r.json"]
