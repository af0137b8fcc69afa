"""the run/freeze verbs through typer's runner: json output, and bad input as one line with exit 1."""
import json

import pytest
from typer.testing import CliRunner

from nanopoor.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.slow
def test_run_prints_json(tiny_record, tiny_data, tmp_path):
    res = invoke("run", tiny_record, "--data", tiny_data, "--runs", tmp_path / "runs", "--seed", 11, "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["status"] == "completed" and out["seed"] == 11 and out["class"] == "dev"


def test_missing_record(tmp_path):
    one_line_error(invoke("run", tmp_path / "records" / "nothing"), "no record at")


def test_malformed_record_names_the_field(tiny_record):
    toml = tiny_record / "record.toml"
    toml.write_text(toml.read_text().replace('author = "tests"\n', ""))
    one_line_error(invoke("run", tiny_record), "missing field 'author'")


def test_missing_data_folder(tiny_record, tmp_path):
    one_line_error(invoke("run", tiny_record, "--data", tmp_path / "nodata"), "needs the demo dataset at", "nanopoor data demo")


def test_unknown_track(tiny_record, tiny_data):
    one_line_error(invoke("run", tiny_record, "--data", tiny_data, "--track", "fineweb"), "unknown track 'fineweb'", "did you mean 'fineweb-edu'")


def test_unknown_scale(tiny_record, tiny_data):
    # a choice, as in submit and reproduce: click's usage error, as one line and exit 1
    one_line_error(invoke("run", tiny_record, "--data", tiny_data, "--scale", "ful"), "'ful' is not one of", "'full'", "run --help")


def test_dataset_of_another_track(tiny_record, tiny_data):
    one_line_error(invoke("run", tiny_record, "--data", tiny_data, "--track", "docs"), "needs 'docs'", "--track demo")


def test_changed_record_is_refused(tiny_record, tiny_data, tmp_path):
    (tiny_record / "train.py").write_text((tiny_record / "train.py").read_text() + "# edit\n")
    one_line_error(invoke("run", tiny_record, "--data", tiny_data, "--runs", tmp_path / "runs"), "frozen record changed", "make a new record")
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_freeze_writes_the_digest(tiny_record):
    (tiny_record / "train.py").write_text((tiny_record / "train.py").read_text() + "# v2\n")
    res = invoke("freeze", tiny_record)
    assert res.exit_code == 0 and "sha256" in res.output
    assert "[frozen]" in (tiny_record / "record.toml").read_text()


# `nanopoor demo` end to end: tests/test_cli_surface.py runs it on a fresh checkout (with every README verb)
