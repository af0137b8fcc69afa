"""the source scan: a reviewer's index of what a record brings with it (data in files or literals,
code that loads saved tensors, reads files, calls C, spawns work or opens a socket). it decides
nothing; the freeze refuses data outright (tests/test_records.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.source_scan import LONG_SEQUENCE_ITEMS, LONG_STRING_CHARS, data_literals, scan_record

REDTEAM = Path(__file__).parent / "redteam"


def patterns(tmp_path: Path, *lines: str, files: dict | None = None) -> set[str]:
    rec = tmp_path / "rec"
    rec.mkdir(exist_ok=True)
    (rec / "train.py").write_text("\n".join(lines) + "\n")
    for name, data in (files or {}).items():
        (rec / name).write_bytes(data)
    return {f["pattern"] for f in scan_record(rec)}


@pytest.mark.parametrize("line, pattern", [
    ("w = torch.load('prior.pt')", "weights_file"),
    ("t = np.fromfile('tokens.bin', dtype=np.uint16)", "raw_file_read"),
    ("text = open('words.txt').read()", "raw_file_read"),
    ("lib = ctypes.CDLL('libc.so.6')", "ctypes"),
    ("subprocess.run(['ls'])", "concurrency"),
    ("import urllib.request", "network"),
    (f"VOCAB = {'x' * LONG_STRING_CHARS!r}", "data_literal"),
    (f"TABLE = [{', '.join(['1'] * LONG_SEQUENCE_ITEMS)}]", "data_literal"),
])
def test_what_the_scan_flags(tmp_path, line, pattern):
    assert pattern in patterns(tmp_path, line)


@pytest.mark.parametrize("line", ["h = harness.session()", "x, y = h.next_batch()", "SMALL = [1, 2, 3]",
                                  "# torch.load in a comment is not code", f"s = {'x' * 100!r}"])
def test_an_ordinary_train_script_line_is_not_flagged(tmp_path, line):
    assert patterns(tmp_path, line) == set()


def test_a_shipped_data_file_is_flagged(tmp_path):
    assert "data_file" in patterns(tmp_path, "pass", files={"prior.pt": b"\0" * 10})


def test_data_literals_names_the_line_and_size():
    src = "a = 1\nb = " + repr("y" * (LONG_STRING_CHARS + 1)) + "\n"
    assert data_literals(src) == [(2, f"a str literal of {LONG_STRING_CHARS + 1:,} characters")]
    assert data_literals("def (") == []   # a syntax error is the freeze's to report


def test_the_honest_red_team_record_is_not_flagged():
    assert scan_record(REDTEAM / "rt_clean") == []
