"""the cli's options mean one thing in every verb: --runs DIR is the folder of run folders, --seeds N
the number of runs, --out an output that is not the runs folder; Format and Scale come from
nanopoor/output.py, and every verb's json goes through output.print_json."""
from __future__ import annotations

import enum
import inspect
import json
import math
import typing
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from nanopoor import output
from nanopoor.cli import app as root
from nanopoor.cli.options import _runs_folder
from nanopoor.errors import UserError

NANOPOOR = Path(__file__).resolve().parents[1] / "nanopoor"

# verbs that read or write run folders: each takes the folder as --runs DIR
RUNS_VERBS = {"run", "submit", "reproduce", "sign", "demo", "leaderboard", "verify", "compare"}
# --out is an output other than the runs folder: leaderboard.md, or a dataset folder
OUT_VERBS = {"leaderboard", "submit", "data fineweb-edu", "data files", "data docs", "data demo"}


def _callbacks(app: typer.Typer, prefix: str = ""):
    """(verb, the python function behind it) for every command, sub-typers included."""
    for c in app.registered_commands:
        yield prefix + (c.name or c.callback.__name__), c.callback
    for g in app.registered_groups:
        yield from _callbacks(g.typer_instance, f"{prefix}{g.name} ")


def _click_commands(cmd, path: str = ""):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _click_commands(sub, f"{path}{name} ")
    else:
        yield path.strip(), cmd


def options() -> dict[str, dict[str, type]]:
    """verb -> {option as typed ('--runs'): its python annotation}, read from the real app."""
    hints = {verb: typing.get_type_hints(fn) for verb, fn in _callbacks(root)}
    out = {}
    for verb, cmd in _click_commands(typer.main.get_command(root)):
        out[verb] = {o: hints[verb][p.name] for p in cmd.params if p.param_type_name == "option" for o in p.opts}
    return out


def _bare(annotation):
    """Path from `Path | None`."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def test_every_verb_is_found():
    assert set(options()) >= RUNS_VERBS | OUT_VERBS | {"freeze", "review", "records", "data audit"}


def test_the_runs_folder_is_runs_dir_everywhere():
    opts = options()
    for verb, names in opts.items():
        assert not {"--runs-dir", "--runs-out", "--out-dir"} & set(names), verb
        if "--runs" in names:
            assert _bare(names["--runs"]) is Path, f"{verb} --runs is not a folder"
        if "--seeds" in names:
            assert _bare(names["--seeds"]) is int, verb
    assert {v for v, names in opts.items() if "--runs" in names} == RUNS_VERBS
    assert {v for v, names in opts.items() if "--seeds" in names} == {"run", "submit"}
    # --out never names the runs folder: only where the output is something else
    assert {v for v, names in opts.items() if "--out" in names} == OUT_VERBS


def test_format_and_scale_come_from_the_output_module():
    """one Format and one Scale: every enum a verb takes is one of them, defined once in nanopoor/."""
    seen = set()
    for verb, fn in _callbacks(root):
        for name, annotation in typing.get_type_hints(fn).items():
            t = _bare(annotation)
            if inspect.isclass(t) and issubclass(t, enum.Enum):
                assert t in (output.Format, output.Scale), f"{verb} {name}: {t.__module__}.{t.__qualname__}"
                seen.add(t)
    assert seen == {output.Format, output.Scale}
    for cls in ("Format", "Scale"):
        defined = [p for p in NANOPOOR.rglob("*.py") if f"class {cls}(" in p.read_text()]
        assert defined == [NANOPOOR / "output.py"], defined
    # the json choice is there for every verb that prints results
    assert all("--format" in names for verb, names in options().items()
               if verb not in {"freeze", "demo", "data fineweb-edu", "data files", "data docs", "data demo"}), options()


def test_the_cli_prints_json_one_way():
    """no verb formats json itself: cli modules and the run summary call output.print_json."""
    for path in [*sorted((NANOPOOR / "cli").glob("*.py")), NANOPOOR / "summary.py"]:
        text = path.read_text()
        assert "json.dumps" not in text and "print(json" not in text, path.name


def test_print_json_is_clean_sorted_and_parseable(capsys):
    output.print_json({"b": math.nan, "a": [1, Path("x")]})
    text = capsys.readouterr().out
    assert text == '{\n  "a": [\n    1,\n    "x"\n  ],\n  "b": "nan"\n}\n'
    assert output.print_json_array(iter([{"b": 1, "a": 2}, {"c": math.inf}])) == [{"b": 1, "a": 2}, {"c": math.inf}]
    text = capsys.readouterr().out
    assert text == '[\n{"a": 2, "b": 1},\n{"c": "inf"}\n]\n' and json.loads(text) == [{"a": 2, "b": 1}, {"c": "inf"}]
    output.print_json_array([])
    assert json.loads(capsys.readouterr().out) == []


def test_fmt_ms_lives_in_the_output_module():
    assert output.fmt_ms(None) == "?" and output.fmt_ms(1500.0) == "1.5 s" and output.fmt_ms(90_000) == "1.50 min"
    import nanopoor.review as review
    assert review.fmt_ms is output.fmt_ms


# --- the old meaning of --runs: a number ------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["run", "records/x", "--runs", "3"],
    ["submit", "records/x", "--runs", "3"],
    ["reproduce", "records/x", "--runs", "2"],
    ["demo", "--runs", "1"],
    ["leaderboard", "--runs", "3"],
    ["verify", "runs/", "--runs", "3"],
    ["sign", "runs/x", "--key", "k", "--runs", "3"],
    ["compare", "a", "b", "--runs", "3"],
])
def test_a_number_for_runs_is_one_line_pointing_at_seeds(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(root, args)
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --runs "), res.output
    assert "folder of run folders" in lines[0] and "use --seeds N for the number of runs" in lines[0]
    assert list(tmp_path.iterdir()) == []   # nothing started, nothing written


def test_a_runs_folder_named_by_a_number_is_still_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--seeds N"):
        _runs_folder(Path("3"))
    Path("3").mkdir()
    assert _runs_folder(Path("3")) == Path("3")
    assert _runs_folder(None) is None and _runs_folder(Path("runs")) == Path("runs")
