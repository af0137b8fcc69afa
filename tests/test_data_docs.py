"""`nanopoor data docs`: the shipped corpus is checked file by file, then built offline into the
dataset the committed docs runs used. the tests build a slice of the shipped files, never all."""
from __future__ import annotations

import hashlib
import json
import lzma
import os
from itertools import islice
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus" / "docs"


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_corpus(d: Path, lines_per_file: int = 25, fingerprint: str | None = None) -> Path:
    """a slice of the shipped corpus: the first documents of two files, with its own sums and build.json."""
    d.mkdir(parents=True, exist_ok=True)
    names = ["linux-docs.jsonl.xz", "python-docs.jsonl.xz"]
    for name in names:
        with lzma.open(CORPUS / name, "rb") as src, lzma.open(d / name, "wb") as dst:
            dst.writelines(islice(src, lines_per_file))
    (d / "SHA256SUMS").write_text("".join(f"{sha256(d / n)}  {n}\n" for n in names))
    spec = {"dataset": "docs", "files": names, "seed": 1234, "val_tokens": 2048, "shard_tokens": 100_000_000}
    if fingerprint:
        spec["fingerprint"] = fingerprint
    (d / "build.json").write_text(json.dumps(spec))
    return d


def data_docs(app, corpus: Path, out: Path):
    return CliRunner().invoke(app, ["data", "docs", "--corpus", str(corpus), "--out", str(out)])


def test_a_slice_builds_the_same_bytes_twice_and_records_its_files(tmp_path, app):
    corpus = write_corpus(tmp_path / "corpus")
    res = data_docs(app, corpus, tmp_path / "a")
    assert res.exit_code == 0, res.output
    assert "docs at" in res.output and "2,048 val" in res.output
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m["dataset"] == "docs" and m["train_tokens"] > 10_000
    sums = dict(line.split("  ")[::-1] for line in (corpus / "SHA256SUMS").read_text().split("\n") if line)
    assert [(f["name"], f["sha256"]) for f in m["source"]["files"]] == list(sums.items())
    assert data_docs(app, corpus, tmp_path / "b").exit_code == 0
    for f in ("val_000000.bin", "train_000000.bin"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_the_fingerprint_must_be_the_pinned_one(tmp_path, app):
    corpus = write_corpus(tmp_path / "corpus")
    assert data_docs(app, corpus, tmp_path / "a").exit_code == 0
    fp = json.loads((tmp_path / "a" / "manifest.json").read_text())["fingerprint"]
    write_corpus(tmp_path / "corpus", fingerprint=fp)
    assert data_docs(app, corpus, tmp_path / "b").exit_code == 0
    write_corpus(tmp_path / "corpus", fingerprint="0" * 64)
    res = data_docs(app, corpus, tmp_path / "c")
    assert res.exit_code == 1 and "build.json" in res.output and "fingerprint" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["corrupt", "missing", "no-sums", "unlisted"])
def test_a_damaged_corpus_is_one_line_naming_the_file(tmp_path, app, damage):
    corpus = write_corpus(tmp_path / "corpus")
    victim = corpus / "python-docs.jsonl.xz"
    if damage == "corrupt":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif damage == "missing":
        victim.unlink()
    elif damage == "no-sums":
        victim = corpus / "SHA256SUMS"
        victim.unlink()
    else:
        sums = corpus / "SHA256SUMS"
        sums.write_text("".join(line for line in sums.read_text().splitlines(True) if victim.name not in line))
    res = data_docs(app, corpus, tmp_path / "out")
    assert res.exit_code == 1
    assert len(res.output.strip().splitlines()) == 1 and str(victim) in res.output, res.output
    assert "git checkout -- " in res.output
    assert not (tmp_path / "out").exists()   # nothing is built from a corpus that does not check


def test_the_shipped_corpus_matches_its_sums_and_the_committed_runs():
    """every shipped file hashes to SHA256SUMS, build.json builds all of them, and its pinned
    fingerprint is the dataset every committed docs run trained on."""
    from nanopoor.data.corpus import check_corpus, read_build, read_sums

    paths = check_corpus(CORPUS)
    spec = read_build(CORPUS)
    assert [p.name for p in paths] == spec["files"] == sorted(read_sums(CORPUS))
    assert spec["val_tokens"] == 524_288 and spec["seed"] == 1234
    docs_runs = [json.loads(p.read_text()) for p in (ROOT / "runs").glob("*/result.json")]
    docs_runs = [r for r in docs_runs if r.get("track") == "docs"]
    assert docs_runs and {r["dataset_fingerprint"] for r in docs_runs} == {spec["fingerprint"]}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NANOPOOR_FULL_CORPUS") != "1",
                    reason="builds all 14.8M tokens; NANOPOOR_FULL_CORPUS=1 runs it (CI builds a slice)")
def test_the_whole_corpus_builds_to_the_pinned_fingerprint(tmp_path, app):
    res = data_docs(app, CORPUS, tmp_path / "docs")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "docs" / "manifest.json").read_text())
    assert m["fingerprint"] == json.loads((CORPUS / "build.json").read_text())["fingerprint"]
    assert m["train_tokens"] == 14_258_877
