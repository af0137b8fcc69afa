"""record.toml validation, the frozen digest, freeze and the refusal of a changed record."""
import pytest

from nanopoor.errors import UserError
from nanopoor.records import check_frozen, compute_digest, freeze, load_record


def test_freeze_then_check(tiny_record):
    rec = load_record(tiny_record)
    assert rec.frozen_sha256 == compute_digest(tiny_record)
    assert check_frozen(rec) == rec.frozen_sha256
    # freezing again changes nothing: the [frozen] table is outside the digest
    assert freeze(tiny_record) == rec.frozen_sha256


def test_changed_file_is_refused_with_one_line(tiny_record):
    (tiny_record / "train.py").write_text((tiny_record / "train.py").read_text() + "\n# edit\n")
    with pytest.raises(UserError, match="frozen record changed.*make a new record"):
        check_frozen(load_record(tiny_record))


def test_added_file_changes_the_digest(tiny_record):
    before = compute_digest(tiny_record)
    (tiny_record / "notes.txt").write_text("x")
    assert compute_digest(tiny_record) != before


def test_budget_is_the_product_of_the_scale(tiny_record):
    s = load_record(tiny_record).scale("full")
    assert s["budget_tokens"] == 32 * 4 * 2 * 6 and s["formula"] == "32 × 4 × 2 × 6"


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('title = "tiny causal model for harness tests"\n', ""), "title"),
    (lambda t: t.replace("seq_len = 32", "seq_len = -3", 1), "scales.smoke.seq_len"),
    (lambda t: t.replace('entrypoint = "train.py"', 'entrypoint = "nope.py"'), "entrypoint"),
    (lambda t: t.replace("seeds = 2", 'seeds = "two"'), "seeds"),
])
def test_malformed_record_names_the_field(tiny_record, edit, field):
    toml = tiny_record / "record.toml"
    toml.write_text(edit(toml.read_text()))
    with pytest.raises(UserError, match=f"'{field}'"):
        load_record(tiny_record)


def test_unknown_scale_suggests(tiny_record):
    with pytest.raises(UserError, match="did you mean 'smoke'"):
        load_record(tiny_record).scale("smok")


def test_missing_record_lists_what_exists(tmp_path, tiny_record):
    with pytest.raises(UserError, match="no record at .*tinny.*did you mean 'tiny'"):
        load_record(tiny_record.parent / "tinny")


def test_not_toml(tiny_record):
    (tiny_record / "record.toml").write_text("name = [unclosed\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_record(tiny_record)


# -- what the digest cannot vouch for is refused, by freeze and by run, in one line ---------------
def _pyc(rec):
    cache = rec / "__pycache__"
    cache.mkdir()
    (cache / "train.cpython-311.pyc").write_bytes(b"\x00compiled")   # python would run this, not train.py


def _pyc_beside(rec):
    (rec / "helper.pyc").write_bytes(b"\x00compiled")


def _linked_file(rec):
    (rec.parent / "elsewhere.py").write_text("x = 1\n")
    (rec / "helper.py").symlink_to(rec.parent / "elsewhere.py")


def _linked_folder(rec):
    (rec.parent / "lib").mkdir()
    (rec.parent / "lib" / "util.py").write_text("x = 1\n")
    (rec / "lib").symlink_to(rec.parent / "lib", target_is_directory=True)


UNCOVERED = [(_pyc, "compiled or cached code"), (_pyc_beside, "compiled or cached code"),
             (_linked_file, "a link"), (_linked_folder, "a link")]


@pytest.mark.parametrize("plant, why", UNCOVERED)
def test_freeze_refuses_what_the_digest_cannot_cover(tiny_record, app, plant, why):
    from typer.testing import CliRunner

    plant(tiny_record)
    before = (tiny_record / "record.toml").read_text()
    out = CliRunner().invoke(app, ["freeze", str(tiny_record)])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1, out.output
    assert "freeze: " in out.output and f"not covered by the record's digest: {why}" in out.output
    assert (tiny_record / "record.toml").read_text() == before   # nothing written


@pytest.mark.parametrize("plant, why", UNCOVERED)
def test_run_refuses_what_the_digest_cannot_cover(tiny_record, tiny_data, tmp_path, app, plant, why):
    from typer.testing import CliRunner

    plant(tiny_record)   # after freeze: the digest still matches, since it skips these files
    out = CliRunner().invoke(app, ["run", str(tiny_record), "--data", str(tiny_data), "--runs", str(tmp_path / "runs")])
    assert out.exit_code == 1 and len(out.output.strip().splitlines()) == 1, out.output
    assert "run: " in out.output and f"not covered by the record's digest: {why}" in out.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())   # no half-made run folder
