"""`data audit`: clean data passes; the seed's uint32-read-as-uint16 defect, overlap, corruption do not."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from supervisor.shards import MODDED_MAGIC, open_shard, write_shard
from nanopoor.cli import data as cli_data
from nanopoor.data.audit import audit
from nanopoor.data.demo import build_demo, demo_document
from nanopoor.data.manifest import fingerprint
from nanopoor.data.sources import build_fineweb_edu
from nanopoor.data.tokenizer import EOT_ID, get_encoding


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo") / "demo")


def app():
    a = typer.Typer()
    cli_data.register(a)
    a.command("noop")(lambda: None)
    return a


def failed(report):
    return {c["check"] for c in report["checks"] if not c["ok"]}


def seed_defect_tokens(tmp_path, n_docs=300):
    """what the seed's train script saw: real cl100k tokens written as uint32 after a 12-byte
    header, memory-mapped as uint16 at offset 1024."""
    enc = get_encoding()
    toks = []
    for i in range(n_docs):
        toks += [EOT_ID, *enc.encode_ordinary(demo_document(i))]
    raw = tmp_path / "seed_tokens.bin"
    raw.write_bytes(np.array([20240801, 1, len(toks)], "<i4").tobytes() + np.array(toks, "<u4").tobytes())
    return np.memmap(raw, dtype=np.uint16, mode="r", offset=1024)


def test_clean_dataset_passes(demo):
    r = audit(demo)
    assert r["ok"], r["checks"]
    assert r["kind"] == "dataset"
    names = {c["check"] for c in r["checks"]}
    assert {"manifest", "shards", "sha256", "ids", "id 0", "most common id", "alternating 0/1", "train/val overlap"} <= names
    st = r["stats"]
    assert st["max_id"] < st["vocab_size"] == 100277
    assert st["id0_share"] < 0.01 and st["top_share"] < 0.3
    assert st["overlap"]["shared_documents"] == 0 and st["overlap"]["val_documents"] > 10


def test_seed_defect_is_flagged(tmp_path):
    bad = seed_defect_tokens(tmp_path)
    halves = np.asarray(bad)
    assert (halves[1::2] <= 1).mean() > 0.99  # every second token is the high half: 0 (or 1)
    p = tmp_path / "train_000000.bin"
    write_shard(p, halves, 100277)
    r = audit(p)
    assert not r["ok"]
    assert {"alternating 0/1", "id 0"} <= failed(r)
    detail = next(c["detail"] for c in r["checks"] if c["check"] == "alternating 0/1")
    assert "uint32 tokens read as uint16" in detail
    assert r["stats"]["id0_share"] > 0.4
    # the same tokens read correctly pass
    good = tmp_path / "good.bin"
    write_shard(good, np.fromfile(tmp_path / "seed_tokens.bin", "<u4", offset=12), 100277)
    assert audit(good)["ok"], audit(good)["checks"]


def test_seed_defect_in_a_dataset_exits_1(demo, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(demo, d)
    m = json.loads((d / "manifest.json").read_text())
    bad = np.asarray(seed_defect_tokens(tmp_path))
    e = m["train"][1]
    write_shard(d / e["file"], bad, 100277)
    import hashlib
    e.update(tokens=int(bad.size), sha256=hashlib.sha256((d / e["file"]).read_bytes()).hexdigest())
    m["train_tokens"] = sum(x["tokens"] for x in m["train"])
    m["fingerprint"] = fingerprint("cl100k_base", 100277, m["val"], m["train"])
    (d / "manifest.json").write_text(json.dumps(m))
    r = CliRunner().invoke(app(), ["data", "audit", str(d)])
    assert r.exit_code == 1
    assert "FAIL  alternating 0/1" in r.output and e["file"] in r.output
    r = CliRunner().invoke(app(), ["data", "audit", str(d), "--format", "json"])
    assert r.exit_code == 1
    report = json.loads(r.output)
    assert report["ok"] is False and "alternating 0/1" in failed(report)


def test_cli_clean_exit_0_and_json(demo):
    r = CliRunner().invoke(app(), ["data", "audit", str(demo)])
    assert r.exit_code == 0, r.output
    assert "no findings" in r.output
    r = CliRunner().invoke(app(), ["data", "audit", str(demo / "val_000000.bin"), "--format", "json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["kind"] == "shard" and report["ok"]


def test_train_val_overlap_is_flagged(tmp_path):
    enc = get_encoding()
    texts = [demo_document(i) for i in range(60)]
    n_val = 0
    while sum(len(enc.encode_ordinary(t)) + 1 for t in texts[:n_val + 1]) <= 2000:
        n_val += 1
    # the val documents come back later in the stream, whole
    stream = texts[:n_val + 2] + texts[:n_val] + texts[n_val + 2:]

    def source(skip=0):
        return ({"text": t} for t in stream[skip:])

    m = build_fineweb_edu(tmp_path, source=source, val_tokens=2000, train_tokens=None, shard_tokens=5000)
    assert m["val"][0]["documents"] == n_val + 1
    r = audit(tmp_path)
    assert "train/val overlap" in failed(r)
    assert r["stats"]["overlap"]["shared_documents"] == n_val


def test_corruption_is_flagged(demo, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(demo, d)
    p = d / "train_000000.bin"
    data = bytearray(p.read_bytes())
    data[5000] ^= 0xFF
    p.write_bytes(bytes(data))
    assert failed(audit(d)) >= {"sha256"}
    assert "sha256" not in failed(audit(d, hashes=False))
    with open(p, "r+b") as f:
        f.truncate(len(data) - 4)
    r = audit(d)
    assert "shards" in failed(r)
    assert any("truncated" in c["detail"] for c in r["checks"])


def test_a_check_that_could_not_run_is_not_ok(demo, tmp_path):
    # a truncated shard cannot be read: its sha256 was never compared, and the overlap check lost
    # the split it compares against. neither may say "ok" about what it did not see.
    d = tmp_path / "d"
    shutil.copytree(demo, d)
    for f in sorted(d.glob("train_*.bin")):
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size - 4)
    r = audit(d)
    checks = {c["check"]: c for c in r["checks"]}
    assert not checks["sha256"]["ok"] and "could not be read" in checks["sha256"]["detail"]
    assert not checks["train/val overlap"]["ok"] and checks["train/val overlap"]["detail"].startswith("not checked")
    assert not r["ok"]


def test_ids_beyond_the_vocabulary_are_flagged(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(1000) % 50000, 100277)
    raw = bytearray(p.read_bytes())
    raw[256:260] = np.array([4_000_000_000], "<u4").tobytes()  # past what the header allows
    p.write_bytes(bytes(raw))
    r = audit(p)
    assert "ids" in failed(r)


def test_modded_nanogpt_shard(tmp_path):
    p = tmp_path / "fineweb_train_000001.bin"
    header = np.zeros(256, "<i4")
    toks = (np.arange(4000) * 7919 % 50257).astype("<u2")
    header[:3] = [MODDED_MAGIC, 1, toks.size]
    p.write_bytes(header.tobytes() + toks.tobytes())
    r = audit(p)
    assert r["ok"], r["checks"]
    assert "gpt-2" in next(c["detail"] for c in r["checks"] if c["check"] == "ids")


def test_missing_path(tmp_path):
    from nanopoor.errors import UserError
    with pytest.raises(UserError, match="no dataset or shard"):
        audit(tmp_path / "nothing")


def test_folder_of_shards_without_manifest(tmp_path, demo):
    shutil.copy(demo / "val_000000.bin", tmp_path / "val_000000.bin")
    r = audit(tmp_path)
    assert r["kind"] == "folder" and failed(r) == {"manifest"}
    assert open_shard(tmp_path / "val_000000.bin").size > 0
