"""fineweb-edu: the streaming build with a stand-in source; split, manifest, resume, the real loader call."""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from supervisor.shards import open_shard
from nanopoor.data import sources
from nanopoor.data.manifest import fingerprint, load_manifest
from nanopoor.data.sources import build_fineweb_edu
from nanopoor.data.tokenizer import EOT_ID, get_encoding
from nanopoor.errors import UserError

WORDS = "the a of river stone light quiet number seven garden because under over small bright".split()


def make_texts(n=300, seed=0):
    r = random.Random(seed)
    texts = [" ".join(r.choice(WORDS) for _ in range(r.randint(1, 60))).capitalize() + "." for _ in range(n)]
    for i in range(0, n, 17):
        texts[i] = ""  # empty documents add nothing to the stream but still count as rows
    return texts


TEXTS = make_texts()


def source_of(texts, fail_after=None):
    """stand-in for the datasets stream: dicts with "text" from row `skip` on; raises after
    `fail_after` rows (counted over the whole build) to simulate an interruption."""
    served = {"n": 0}

    def source(skip=0):
        for t in texts[skip:]:
            if fail_after is not None and served["n"] >= fail_after:
                raise RuntimeError("interrupted")
            served["n"] += 1
            yield {"text": t, "id": "x"}
    return source


def stream_tokens(texts):
    enc = get_encoding()
    out, doc_of = [], []
    for i, t in enumerate(texts):
        if t:
            ids = [EOT_ID, *enc.encode_ordinary(t)]
            out.extend(ids)
            doc_of.extend([i] * len(ids))
    return out, doc_of


def files_of(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


KW = dict(val_tokens=1000, train_tokens=3000, shard_tokens=700, threads=2)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    m = build_fineweb_edu(out, source=source_of(TEXTS), **KW)
    return out, m


def test_split_and_manifest(clean):
    out, m = clean
    stream, doc_of = stream_tokens(TEXTS)
    val = np.concatenate([open_shard(out / e["file"], 100277) for e in m["val"]])
    train = np.concatenate([open_shard(out / e["file"], 100277) for e in m["train"]])
    # val: the first val_tokens of the stream, in two shards of at most 700
    assert val.tolist() == stream[:1000]
    assert [e["tokens"] for e in m["val"]] == [700, 300]
    # train starts at the document after the one holding the last val token
    first = stream.index(EOT_ID, 1000) if doc_of[1000] == doc_of[999] else 1000
    assert doc_of[first] == doc_of[999] + 1
    assert len(stream) > first + 3000
    assert train.tolist() == stream[first:first + 3000]
    assert [e["tokens"] for e in m["train"]] == [700, 700, 700, 700, 200]
    assert m["val_tokens"] == 1000 and m["train_tokens"] == 3000
    for key in ("schema_version", "dataset", "tokenizer", "vocab_size", "eot_id", "source", "val", "train",
                "val_tokens", "train_tokens", "fingerprint", "complete"):
        assert key in m
    assert (m["dataset"], m["tokenizer"], m["vocab_size"], m["eot_id"], m["complete"]) == ("fineweb-edu", "cl100k_base", 100277, 100257, True)
    assert m["source"] == {"kind": "huggingface", "repo": "HuggingFaceFW/fineweb-edu", "config": "sample-10BT",
                           "split": "train", "revision": "main"}
    for e in m["val"] + m["train"]:
        data = (out / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"]
        assert e["documents"] == int(np.count_nonzero(open_shard(out / e["file"]) == EOT_ID))
    assert m["fingerprint"] == fingerprint("cl100k_base", 100277, m["val"], m["train"])
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json"] + [e["file"] for e in m["val"] + m["train"]])
    assert load_manifest(out) == m


@pytest.fixture
def small_batches(monkeypatch):
    """encode a few documents at a time, so an interruption finds shards already written;
    the bytes do not depend on the batch size (the clean build uses the default)."""
    from nanopoor.data import tokenizer
    monkeypatch.setattr(tokenizer, "BATCH_CHARS", 300)
    monkeypatch.setattr(tokenizer, "PIECE_CHARS", 80)


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("k", [1, 5, 12, 25, 40, 70, 110])
def test_interrupted_build_resumes_to_the_same_bytes(clean, tmp_path, k):
    out, _ = clean
    with pytest.raises(RuntimeError, match="interrupted"):
        build_fineweb_edu(tmp_path, source=source_of(TEXTS, fail_after=k), **KW)
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(UserError, match="incomplete.*resume it with"):
        load_manifest(tmp_path)
    done = json.loads((tmp_path / "progress.json").read_text())["shards"]
    if k >= 70:  # the resume starts after shards already written, not from the beginning
        assert done
    if k >= 110:
        assert any(e["split"] == "train" for e in done)
    build_fineweb_edu(tmp_path, source=source_of(TEXTS), **KW)
    assert files_of(tmp_path) == files_of(out)


@pytest.mark.usefixtures("small_batches")
def test_interrupted_twice_then_resumed(clean, tmp_path):
    out, _ = clean
    for k in (8, 60):
        with pytest.raises(RuntimeError):
            build_fineweb_edu(tmp_path, source=source_of(TEXTS, fail_after=k), **KW)
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["shards"] and progress["shards"][0]["start"] == [0, 0]
    build_fineweb_edu(tmp_path, source=source_of(TEXTS), **KW)
    assert files_of(tmp_path) == files_of(out)


def test_finished_build_is_not_redone(clean):
    out, m = clean
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert build_fineweb_edu(out, source=source_of([], fail_after=0), **KW) == m
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_other_settings_in_the_same_folder_refused(clean):
    out, _ = clean
    with pytest.raises(UserError, match="other settings"):
        build_fineweb_edu(out, source=source_of(TEXTS), **{**KW, "train_tokens": 10})


def test_until_the_source_ends(tmp_path):
    m = build_fineweb_edu(tmp_path, source=source_of(TEXTS), **{**KW, "train_tokens": None})
    stream, doc_of = stream_tokens(TEXTS)
    first = next(i for i in range(1000, len(stream)) if doc_of[i] == doc_of[999] + 1)
    assert m["train_tokens"] == len(stream) - first


def test_val_only(tmp_path):
    m = build_fineweb_edu(tmp_path, source=source_of(TEXTS), **{**KW, "train_tokens": 0})
    assert m["val_tokens"] == 1000 and m["train"] == [] and m["train_tokens"] == 0


def test_source_shorter_than_val(tmp_path):
    with pytest.raises(UserError, match="fewer than the 1,000 val tokens"):
        build_fineweb_edu(tmp_path, source=source_of(TEXTS[:5]), **KW)


def test_rows_without_text_refused(tmp_path):
    with pytest.raises(UserError, match="no 'text' field"):
        build_fineweb_edu(tmp_path, source=lambda skip: iter([{"content": "x"}]), **KW)


def test_the_real_stream_asks_datasets_for_sample_10bt(monkeypatch):
    import datasets

    calls = {}

    class FakeStream:
        def __init__(self, rows):
            self.rows = rows

        def skip(self, n):
            calls["skip"] = n
            return FakeStream(self.rows[n:])

        def __iter__(self):
            return iter(self.rows)

    def load_dataset(path, name=None, split=None, streaming=False, revision=None):
        calls.update(path=path, name=name, split=split, streaming=streaming, revision=revision)
        return FakeStream([{"text": "a"}, {"text": "b"}, {"text": "c"}])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert [r["text"] for r in sources.fineweb_edu_stream(skip=1)] == ["b", "c"]
    assert calls == {"path": "HuggingFaceFW/fineweb-edu", "name": "sample-10BT", "split": "train",
                     "streaming": True, "revision": None, "skip": 1}


def test_a_failing_stream_is_one_line(monkeypatch):
    import datasets

    def load_dataset(*a, **k):
        raise ConnectionError("Couldn't reach 'HuggingFaceFW/fineweb-edu' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(UserError) as e:
        list(sources.fineweb_edu_stream())
    assert "\n" not in str(e.value) and "run the same command again" in str(e.value)


def test_cli_fineweb_edu(tmp_path, monkeypatch):
    import typer

    from nanopoor.cli import data as cli_data

    monkeypatch.setattr(sources, "fineweb_edu_stream", lambda skip=0, revision=None: source_of(TEXTS)(skip))
    monkeypatch.setattr(sources, "track_val_tokens", lambda dataset: 1000)
    app = typer.Typer()
    cli_data.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `data` a sub-command
    out = tmp_path / "fw"
    r = CliRunner().invoke(app, ["data", "fineweb-edu", "--out", str(out), "--train-tokens", "2000",
                                 "--shard-tokens", "800"])
    assert r.exit_code == 0, r.output
    m = load_manifest(out)
    assert (m["val_tokens"], m["train_tokens"], len(m["train"])) == (1000, 2000, 3)
    assert "fineweb-edu at" in r.output
