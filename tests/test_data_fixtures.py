"""the tests' datasets are built by the project's writer: their manifest is the one `nanopoor data` writes."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_dataset
from supervisor.shards import write_shard
from nanopoor.data.manifest import MANIFEST, PROGRESS, fingerprint
from nanopoor.data.writer import Build, BuildSpec, build_token_documents, token_batches
from nanopoor.errors import UserError

HERE = Path(__file__).parent


def _make_redteam_dataset():
    # the red-team module is collected as slow; its dataset helper is cheap and checked here
    spec = importlib.util.spec_from_file_location("redteam_datasets", HERE / "redteam" / "test_redteam.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_redteam_dataset


def _fingerprint_of_files(d: Path, m: dict) -> str:
    """manifest.fingerprint over the sha256 of the shard files themselves (not the manifest's digests)."""
    files = {split: [{"sha256": hashlib.sha256((d / e["file"]).read_bytes()).hexdigest()} for e in m[split]]
             for split in ("val", "train")}
    return fingerprint(m["tokenizer"], m["vocab_size"], files["val"], files["train"])


@pytest.mark.parametrize("maker", ["make_dataset", "make_redteam_dataset"])
def test_a_fixture_dataset_is_what_the_writer_makes(tmp_path, app, maker):
    make = make_dataset if maker == "make_dataset" else _make_redteam_dataset()
    d = make(tmp_path / "demo")
    m = json.loads((d / MANIFEST).read_text())
    assert m["fingerprint"] == _fingerprint_of_files(d, m)
    # the sizes the tests rely on: exactly the asked tokens, one shard per split
    assert (m["val_tokens"], m["train_tokens"]) == (16384 + 1, 60_000)
    assert [e["file"] for e in m["val"] + m["train"]] == ["val_000000.bin", "train_000000.bin"]
    assert m["complete"] and m["build"]["shard_tokens"] >= m["train_tokens"] and not (d / PROGRESS).exists()
    res = CliRunner().invoke(app, ["data", "audit", str(d), "--format", "json"])
    report = json.loads(res.output)
    assert res.exit_code == 0 and report["ok"], [c for c in report["checks"] if not c["ok"]]


def test_a_fixture_dataset_depends_on_its_seed_alone(tmp_path):
    a, b, c = (json.loads((make_dataset(tmp_path / n, seed=s) / MANIFEST).read_text()) for n, s in (("a", 0), ("b", 0), ("c", 1)))
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]


def _spec(**kw) -> BuildSpec:
    base = dict(dataset="demo", source={"kind": "t"}, val_tokens=1000, train_tokens=3000, shard_tokens=700, command="")
    return BuildSpec(**{**base, **kw})


def _doc(i: int) -> np.ndarray:
    return np.random.default_rng([7, i]).integers(0, 300, size=i % 9)  # every ninth document is empty


def test_an_interrupted_token_build_resumes_to_the_same_bytes(tmp_path):
    whole = build_token_documents(tmp_path / "whole", _spec(), _doc)
    calls = []

    def fails_at_third(path, tokens, vocab):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        write_shard(path, tokens, vocab)

    with pytest.raises(UserError, match="disk full"):
        Build(tmp_path / "cut", _spec()).run(token_batches(_doc, _spec().eot_id), write=fails_at_third)
    again = build_token_documents(tmp_path / "cut", _spec(), _doc)
    assert again == whole and len(whole["train"]) == 5    # 3000 tokens in shards of 700
    assert sum(e["documents"] for e in whole["val"] + whole["train"]) > 0


def test_a_token_build_writes_as_wide_a_token_as_its_vocabulary_needs(tmp_path):
    m = build_token_documents(tmp_path / "d", _spec(tokenizer="synthetic", vocab_size=512, eot_id=511), _doc)
    assert m["bytes_per_token"] == 2 and m["eot_id"] == 511 and m["tokenizer"] == "synthetic"
    assert m["fingerprint"] == _fingerprint_of_files(tmp_path / "d", m)
    with pytest.raises(UserError, match="train_tokens"):
        build_token_documents(tmp_path / "e", _spec(train_tokens=None), _doc)

