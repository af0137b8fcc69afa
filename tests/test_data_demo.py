"""the embedded demo dataset, and the manifest readers (load_manifest, ensure_dataset)."""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from supervisor.shards import open_shard, write_shard
from supervisor.tracks import get_track
from nanopoor.data.demo import DEMO_FINGERPRINT, TRAIN_TOKENS, build_demo, demo_document
from nanopoor.data.manifest import ensure_dataset, load_manifest
from nanopoor.errors import UserError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    t = time.perf_counter()
    assert build_demo(out) == out
    return out, time.perf_counter() - t


def test_demo_is_the_pinned_dataset(demo):
    out, seconds = demo
    m = ensure_dataset(out)
    # the same bytes on every machine: if the generator, the tokenizer or the demo track's val size
    # changes, this changes too (bump GENERATOR in nanopoor/data/demo.py and pin the new value)
    assert m["fingerprint"] == DEMO_FINGERPRINT
    assert m["dataset"] == "demo" and m["val_tokens"] == get_track("demo").val_tokens
    assert m["train_tokens"] == TRAIN_TOKENS
    assert m["source"]["kind"] == "generated"
    assert seconds < 15


def test_build_demo_is_idempotent(demo):
    out, _ = demo
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    t = time.perf_counter()
    assert build_demo(out) == out
    assert time.perf_counter() - t < 2
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_a_damaged_demo_is_rebuilt(demo, tmp_path):
    out, _ = demo
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    (copy / "train_000001.bin").unlink()
    with pytest.raises(UserError, match="missing"):
        ensure_dataset(copy)
    build_demo(copy)
    assert ensure_dataset(copy)["fingerprint"] == DEMO_FINGERPRINT


def test_an_outdated_demo_is_rebuilt(demo, tmp_path):
    out, _ = demo
    copy = tmp_path / "demo"
    shutil.copytree(out, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["build"]["val_tokens"] = 16384  # made when the track asked for another val size
    (copy / "manifest.json").write_text(json.dumps(m))
    build_demo(copy)
    assert ensure_dataset(copy)["fingerprint"] == DEMO_FINGERPRINT


def test_demo_text_is_deterministic_english():
    a, b = demo_document(7), demo_document(7)
    assert a == b and a != demo_document(8)
    assert len(a.split()) > 20 and a.isascii()


def test_demo_is_learnable(demo):
    """a bigram model fit on train beats the unigram model on val by far: the text has structure a
    tiny model picks up in a few hundred steps (measured: see benchmarks/bench_data.py's notes)."""
    out, _ = demo
    m = load_manifest(out)
    train = np.concatenate([open_shard(out / e["file"]) for e in m["train"]]).astype(np.int64)
    val = np.concatenate([open_shard(out / e["file"]) for e in m["val"]]).astype(np.int64)
    ids, train_c = np.unique(train, return_inverse=True)
    k = len(ids)
    val_c = np.searchsorted(ids, val).clip(0, k - 1)
    seen = ids[val_c] == val
    assert seen.mean() > 0.999
    uni = np.bincount(train_c, minlength=k) + 0.1
    uni_ce = -np.log(uni[val_c] / uni.sum())[seen].mean()
    big = np.zeros((k, k))
    np.add.at(big, (train_c[:-1], train_c[1:]), 1)
    big += 0.1
    prev, nxt = val_c[:-1], val_c[1:]
    ok = seen[:-1] & seen[1:]
    bi_ce = -np.log(big[prev, nxt] / big[prev].sum(1))[ok].mean()
    assert uni_ce > 5.0 and bi_ce < 0.6 * uni_ce, (uni_ce, bi_ce)


# --- load_manifest / ensure_dataset ---------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(UserError) as e:
        ensure_dataset(tmp_path / "demo")
    assert str(e.value) == f"no dataset at {tmp_path / 'demo'}: build it with `nanopoor data demo --out {tmp_path / 'demo'}`"
    with pytest.raises(UserError, match="no dataset at .*: build it with `nanopoor data demo --out data/demo-that-is-not-here`"):
        load_manifest("data/demo-that-is-not-here")


def test_folder_without_manifest(tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        load_manifest(tmp_path)


def test_interrupted_build_says_how_to_resume(tmp_path):
    (tmp_path / "progress.json").write_text(json.dumps({"command": "nanopoor data files x.jsonl --out here"}))
    with pytest.raises(UserError) as e:
        ensure_dataset(tmp_path)
    assert "incomplete" in str(e.value) and "resume it with `nanopoor data files x.jsonl --out here`" in str(e.value)


def test_bad_manifests(demo, tmp_path):
    out, _ = demo
    d = tmp_path / "d"
    shutil.copytree(out, d)
    mf = d / "manifest.json"
    good = json.loads(mf.read_text())
    mf.write_text("{not json")
    with pytest.raises(UserError, match="not valid json"):
        load_manifest(d)
    mf.write_text(json.dumps({k: v for k, v in good.items() if k != "fingerprint"}))
    with pytest.raises(UserError, match="lacks fingerprint"):
        load_manifest(d)
    mf.write_text(json.dumps({**good, "complete": False}))
    with pytest.raises(UserError, match="incomplete"):
        load_manifest(d)
    mf.write_text(json.dumps({**good, "schema_version": 99}))
    with pytest.raises(UserError, match="schema_version 99"):
        load_manifest(d)


def test_truncated_shard_is_one_line(demo, tmp_path):
    out, _ = demo
    d = tmp_path / "d"
    shutil.copytree(out, d)
    p = d / "val_000000.bin"
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 2)
    with pytest.raises(UserError) as e:
        ensure_dataset(d)
    assert "\n" not in str(e.value) and str(p) in str(e.value) and "truncated" in str(e.value)


def test_vocabulary_mismatch_is_one_line(demo, tmp_path):
    out, _ = demo
    d = tmp_path / "d"
    shutil.copytree(out, d)
    p = d / "val_000000.bin"
    toks = np.asarray(open_shard(p)) % 50257
    write_shard(p, toks, 50257)  # same count, other tokenizer's vocabulary
    with pytest.raises(UserError) as e:
        ensure_dataset(d)
    assert "\n" not in str(e.value) and "vocabulary 50257" in str(e.value) and "100277" in str(e.value)
