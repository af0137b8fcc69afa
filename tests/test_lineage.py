"""lineage: a new record names the record it was copied from (`parent`); `records` and `verify` say what changed."""
import json

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, copy_record
from nanopoor.errors import UserError
from nanopoor.records import freeze, lineage, load_record


@pytest.fixture
def family(tmp_path):
    """records/tiny and records/tiny_v2: one line of train.py changed, a helper file added."""
    root = tmp_path / "records"
    copy_record(FIXTURES / "records" / "tiny", root)
    child = copy_record(FIXTURES / "records" / "tiny", root, name="tiny_v2", freeze=False)
    toml = child / "record.toml"
    toml.write_text(toml.read_text().replace('entrypoint = "train.py"', 'entrypoint = "train.py"\nparent = "tiny"'))
    train = child / "train.py"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(["# v2: a comment the parent does not have", *lines[1:]]) + "\n")
    (child / "helpers.py").write_text("X = 1\n")
    freeze(child)
    return root


def test_lineage_lists_added_and_changed_files_with_line_counts(family):
    lin = lineage(load_record(family / "tiny_v2"))
    assert lin["parent"] == "tiny" and not lin["missing"]
    assert lin["added"] == ["helpers.py"] and lin["removed"] == []
    assert lin["changed"]["train.py"] == {"added_lines": 1, "removed_lines": 1}
    assert "record.toml" in lin["changed"]            # its name and parent differ; [frozen] is not compared
    assert lineage(load_record(family / "tiny")) is None


def test_parent_must_be_another_records_name(family):
    toml = family / "tiny_v2" / "record.toml"
    for bad, words in (('parent = "tiny_v2"', "names the record itself"), ('parent = 3', "must be the name of another record"),
                       ('parent = "records/tiny"', "must be the name of another record")):
        toml.write_text(toml.read_text().replace('parent = "tiny"', bad))
        with pytest.raises(UserError, match=words):
            load_record(family / "tiny_v2")
        toml.write_text(toml.read_text().replace(bad, 'parent = "tiny"'))


def test_records_verb_shows_parent_and_changed_files(family, app):
    res = CliRunner().invoke(app, ["records", "--records", str(family), "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["tiny"]["parent"] is None and rows["tiny"]["frozen_ok"]
    assert rows["tiny_v2"]["parent"] == "tiny" and rows["tiny_v2"]["lineage"]["added"] == ["helpers.py"]
    res = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["records", "--records", str(family)])
    assert res.exit_code == 0 and "from tiny: record.toml (+2 -1), train.py (+1 -1), added helpers.py" in res.output


def test_verify_shows_the_change_and_flags_a_missing_parent(family, app, tmp_path):
    res = CliRunner().invoke(app, ["verify", str(family / "tiny_v2"), "--runs", str(tmp_path / "none")])
    assert res.exit_code == 0, res.output
    assert "tiny_v2 from tiny: record.toml (+2 -1), train.py (+1 -1), added helpers.py" in res.output
    (family / "tiny" / "record.toml").unlink()
    res = CliRunner().invoke(app, ["verify", str(family / "tiny_v2"), "--runs", str(tmp_path / "none"), "--format", "json"])
    out = json.loads(res.output)
    assert res.exit_code == 1 and "parent record 'tiny' is not in" in out["checks"][0]["problems"][0]
