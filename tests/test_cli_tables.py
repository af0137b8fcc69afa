"""tables keep what people copy whole: at 80 columns (a pipe, a CI log) and narrower, record names,
run ids, log paths and the compared records' names are never cut; other columns wrap, or are left
out and said on a line of their own. every line stays within the terminal's width."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanopoor.tables import Col, fit

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "tests" / "fixtures" / "logs"


def shown(app, width: int, *args, longer: tuple[str, ...] = ()) -> str:
    """the verb's stdout at this width: nothing cut, no line wider than the terminal unless it
    holds an identifier that is itself too long for a table row there (written whole)."""
    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})
    assert res.exit_code in (0, 1), res.output
    text = res.stdout
    assert "…" not in text, text                      # rich's cut mark: nothing was cut
    wide = [line for line in text.splitlines() if len(line) > width]
    assert all(any(i in line for i in longer) for line in wide), wide
    return text


def whole(text: str, word: str) -> bool:
    """the word stands on one line, not split and not glued to more of itself."""
    return re.search(rf"(?<![\w/.-]){re.escape(word)}(?![\w-])", text) is not None


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize("width", [80, 60])
def test_records_keeps_every_name_whole(app, in_repo, width):
    names = [r["name"] for r in json.loads(CliRunner().invoke(app, ["records", "--format", "json"]).stdout)]
    text = shown(app, width, "records")
    assert all(whole(text, n) for n in names), [n for n in names if not whole(text, n)]
    assert whole(text, "dense_muon_t4_ddp_v2:")   # the parent column's content, on a line of its own at this width


@pytest.mark.parametrize("width", [80, 66])
def test_verify_keeps_every_run_id_pasteable(app, in_repo, width):
    ids = sorted(p.name for p in (REPO / "runs").iterdir() if p.is_dir())
    text = shown(app, width, "verify", "runs/", longer=tuple(i for i in ids if len(i) > width - 20))
    assert all(whole(text, i) for i in ids), [i for i in ids if not whole(text, i)]


@pytest.mark.parametrize("width", [80, 60])
def test_compare_keeps_both_record_names(app, in_repo, width):
    text = shown(app, width, "compare", "dense_muon_t4_ddp_v4", "baseline_adamw_epoch", "--hardware", "1× NVIDIA H200")
    assert whole(text, "dense_muon_t4_ddp_v4") and whole(text, "baseline_adamw_epoch")
    assert "p (A lower)" in text   # in the table, or on the line that says what it left out


def test_review_of_a_folder_keeps_log_names_and_readable_columns(app, in_repo):
    text = shown(app, 80, "review", LOGS)
    for log in LOGS.iterdir():
        assert whole(text, log.name), log.name
    cells = [c.strip() for line in text.splitlines() if line.startswith("│") for c in line.strip("│").split("│")]
    assert all(len(c) >= 6 or c in ("", "-") or re.fullmatch(r"[\d./ ]+", c) for c in cells), cells
    assert "rules" in text and "missing-source" in text   # the left-out rules, said below the table


def test_fit_drops_the_least_useful_columns_first_and_never_an_identifier():
    cols = [Col("id", ident=True), Col("note", wrap=True, drop=1), Col("extra", drop=2), Col("n")]
    rows = [["a-very-long-identifier-0123456789", "some words here", "x" * 20, "1"]]
    keep, needs = fit(cols, rows, 80)
    assert keep == [0, 1, 2, 3]
    keep, _ = fit(cols, rows, 60)
    assert keep == [0, 1, 3]                      # extra (drop 2) first
    keep, needs = fit(cols, rows, 40)
    assert keep == [0, 3] and needs[0] == len(rows[0][0])
