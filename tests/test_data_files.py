"""local files: parquet / jsonl / jsonl.xz / txt, the seeded shuffle, val size from the track, resume."""
from __future__ import annotations

import collections
import json
import lzma
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from supervisor.shards import open_shard
from nanopoor.data import sources, tokenizer
from nanopoor.data.audit import audit
from nanopoor.data.manifest import load_manifest
from nanopoor.data.sources import build_files, permute
from nanopoor.data.tokenizer import EOT_ID, get_encoding
from nanopoor.errors import UserError

DOCS_CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "docs"
WORDS = "alpha beta gamma delta table index query column vacuum kernel module perl python".split()


def texts_for(topic, n, seed):
    r = random.Random(seed)
    return [f"{topic} {i}: " + " ".join(r.choice(WORDS) for _ in range(r.randint(5, 80))) for i in range(n)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """one file of each kind, each its own topic (ordered by source, as the docs corpus is)."""
    d = tmp_path_factory.mktemp("in")
    by_file = {}
    t = texts_for("parquet", 120, 1)
    pq.write_table(pa.table({"id": list(range(len(t))), "text": t}), d / "a.parquet", row_group_size=25)
    by_file["a.parquet"] = t
    t = texts_for("jsonl", 80, 2)
    (d / "b.jsonl").write_text("".join(json.dumps({"text": x, "source": "b"}) + "\n" for x in t) + "\n")
    by_file["b.jsonl"] = t
    t = texts_for("xz", 90, 3)
    with lzma.open(d / "c.jsonl.xz", "wt") as f:
        f.writelines(json.dumps({"text": x}) + "\n" for x in t)
    by_file["c.jsonl.xz"] = t
    (d / "d.txt").write_text("a plain text file is one document.\n\nIt has two paragraphs.\n")
    by_file["d.txt"] = [(d / "d.txt").read_text()]
    paths = [d / name for name in by_file]
    return paths, by_file


KW = dict(dataset="local", val_tokens=600, shard_tokens=1000, threads=2)


def documents(out, m):
    """the documents of the dataset, in order, split at eot, decoded; val's last one is cut."""
    enc = get_encoding()
    toks = np.concatenate([open_shard(out / e["file"]) for e in m["val"] + m["train"]]).tolist()
    docs, cur = [], None
    for t in toks:
        if t == EOT_ID:
            if cur is not None:
                docs.append(enc.decode(cur))
            cur = []
        else:
            cur.append(t)
    docs.append(enc.decode(cur))
    return docs


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    paths, _ = inputs
    out = tmp_path_factory.mktemp("out")
    return out, build_files(paths, out, **KW)


def test_all_kinds_read_and_shuffled(inputs, built):
    paths, by_file = inputs
    out, m = built
    everything = [t for ts in by_file.values() for t in ts]
    got = documents(out, m)
    # val holds the first 600 tokens; its last document is cut there, train starts at the next one
    enc = get_encoding()
    n_val_docs = m["val"][0]["documents"]
    cut = got[n_val_docs - 1]
    whole = [d for i, d in enumerate(got) if i != n_val_docs - 1]
    missing = collections.Counter(everything) - collections.Counter(whole)
    assert len(missing) == 1 and next(iter(missing)).startswith(cut) and len(enc.encode_ordinary(cut)) < 600
    # shuffled: the topics are mixed in val and in train
    assert len(got) == len(everything)
    assert got != everything
    first_topics = {d.split(" ")[0] for d in got[:30]}
    assert len(first_topics) >= 3
    assert m["source"]["kind"] == "files"
    assert [f["name"] for f in m["source"]["files"]] == [p.name for p in paths]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["source"]["files"])
    assert m["source"]["shuffle"] == {"method": "feistel-splitmix64-v1", "seed": 1234}
    assert m["val_tokens"] == 600
    assert not list(out.glob("*.tmp"))
    assert audit(out)["ok"]


def test_deterministic_and_seeded(inputs, built, tmp_path):
    paths, _ = inputs
    out, m = built
    again = build_files(paths, tmp_path / "again", **KW)
    assert again["fingerprint"] == m["fingerprint"]
    for e in m["val"] + m["train"]:
        assert (tmp_path / "again" / e["file"]).read_bytes() == (out / e["file"]).read_bytes()
    other = build_files(paths, tmp_path / "seed7", **{**KW, "seed": 7})
    assert other["fingerprint"] != m["fingerprint"]
    assert other["source"]["shuffle"]["seed"] == 7


def test_permute_is_a_fixed_bijection():
    for n in (1, 2, 3, 17, 1000, 4097):
        p = permute(np.arange(n), n, 1234)
        assert sorted(p.tolist()) == list(range(n))
    # pinned: the order must not change between versions or machines
    assert permute(np.arange(10), 10, 1234).tolist() == [2, 3, 9, 4, 5, 1, 0, 8, 6, 7]
    assert permute(np.arange(5, 8), 10, 1234).tolist() == [1, 0, 8]


def test_val_size_defaults_to_the_track(inputs, tmp_path):
    paths, _ = inputs
    # the docs track wants 524,288 val tokens, far more than these files hold
    with pytest.raises(UserError, match="524,288 val tokens"):
        build_files(paths, tmp_path / "docs", dataset="docs", shard_tokens=1000)
    from supervisor.tracks import get_track
    m = build_files(paths, tmp_path / "demo", dataset="demo", shard_tokens=100_000)
    assert m["val_tokens"] == get_track("demo").val_tokens and m["train_tokens"] > 0
    # a name that is no track gets 524,288 unless --val-tokens says otherwise
    with pytest.raises(UserError, match="524,288 val tokens"):
        build_files(paths, tmp_path / "mine", dataset="mine", shard_tokens=1000)


def test_a_folder_of_inputs(inputs, built, tmp_path):
    paths, _ = inputs
    out, m = built
    # a folder contributes its files sorted by name: the same order as given above
    again = build_files([paths[0].parent], tmp_path / "dir", **KW)
    assert again["fingerprint"] == m["fingerprint"]


@pytest.mark.parametrize("fail_after", [3, 150, 260])
def test_interrupted_while_tokenizing_resumes(inputs, built, tmp_path, monkeypatch, fail_after):
    paths, _ = inputs
    out, m = built
    monkeypatch.setattr(tokenizer, "BATCH_CHARS", 500)
    monkeypatch.setattr(sources, "CHECKPOINT_TOKENS", 200)
    real = sources.iter_file
    served = {"n": 0}

    def failing(p, skip=0):
        for t in real(p, skip):
            if served["n"] >= fail_after:
                raise RuntimeError("interrupted")
            served["n"] += 1
            yield t

    monkeypatch.setattr(sources, "iter_file", failing)
    with pytest.raises(RuntimeError):
        build_files(paths, tmp_path, **KW)
    state = json.loads((tmp_path / "progress.json").read_text())
    if fail_after >= 150:
        assert state["phase1"]["rows"] > 0  # resumes after the checkpoint, not from the start
    monkeypatch.setattr(sources, "iter_file", real)
    again = build_files(paths, tmp_path, **KW)
    assert again == m
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {p.name: p.read_bytes() for p in out.iterdir()}


def test_interrupted_while_writing_resumes(inputs, built, tmp_path):
    paths, _ = inputs
    out, m = built
    from supervisor.shards import write_shard
    calls = {"n": 0}

    def flaky(path, tokens, vocab):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        write_shard(path, tokens, vocab)

    with pytest.raises(KeyboardInterrupt):
        build_files(paths, tmp_path, write=flaky, **KW)
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["train_000000.bin", "val_000000.bin"]
    assert (tmp_path / sources.TOKENS_TMP).exists()  # pass 1 is not redone
    build_files(paths, tmp_path, **KW)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.skipif(not DOCS_CORPUS.is_dir(), reason="corpus/docs is not here")
def test_docs_corpus_imports_as_the_docs_track(tmp_path):
    smallest = min(DOCS_CORPUS.glob("*.jsonl.xz"), key=lambda p: p.stat().st_size)
    m = build_files([smallest], tmp_path, dataset="docs", threads=2)
    assert m["dataset"] == "docs" and m["val_tokens"] == 524_288
    assert m["train_tokens"] > 1_000_000
    assert load_manifest(tmp_path)["fingerprint"] == m["fingerprint"]
    report = audit(tmp_path)
    assert report["ok"], report["checks"]


def test_import_benchmark_methods_do_the_same_work(tmp_path, monkeypatch):
    """benchmarks/bench_data.py: every method tokenizes the same text, and the token-by-token
    baselines (struct writes, numpy-scalar writes, batch-encoded) write the same bytes. the real
    import keeps a little less: the rest of the document the val split ends in is dropped, so the
    train split starts at the next document."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_data", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    src = tmp_path / "t.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts_for("bench", 300, 5)))
    real_tmp, kept = bench.tempfile.TemporaryDirectory, []

    def keep(*args, **kwargs):  # a temporary folder that outlives the method, to compare the bytes
        kept.append(Path(bench.tempfile.mkdtemp(dir=tmp_path)))
        return contextlib.nullcontext(str(kept[-1]))

    monkeypatch.setattr(bench, "VAL_TOKENS", 1024)
    counts, written = {}, {}
    for method in bench.METHODS:
        naive = method.startswith("naive")
        monkeypatch.setattr(bench.tempfile, "TemporaryDirectory", keep if naive else real_tmp)
        counts[method] = bench.worker(method, [src], threads=2, shard_tokens=1_000_000)["tokens"]
        if naive:
            written[method] = b"".join(f.read_bytes() for f in sorted(kept[-1].glob("*.bin")))
    real = counts.pop("nanopoor")
    assert len(set(counts.values())) == 1 and counts["tiktoken"] > 5_000
    assert 0.99 * counts["tiktoken"] < real <= counts["tiktoken"]
    assert written["naive"] == written["naive-np"] == written["naive-batch"]
