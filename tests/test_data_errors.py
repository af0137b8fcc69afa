"""bad input: one clear line, and nothing already written is lost (a full disk, then a resume)."""
from __future__ import annotations

import errno
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from supervisor.shards import write_shard
from nanopoor.data import sources
from nanopoor.data.sources import build_files, build_fineweb_edu
from nanopoor.errors import UserError


def one_line(e: pytest.ExceptionInfo, *parts: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, (p, msg)
    return msg


def texts(n=200):
    return [f"document {i}: " + "words that repeat and repeat " * (1 + i % 9) for i in range(n)]


def src(skip=0):
    return ({"text": t} for t in texts()[skip:])


def enospc_on(call):
    """a shard writer whose disk fills up at its `call`-th shard."""
    calls = {"n": 0}

    def write(path, tokens, vocab):
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_shard(path, tokens, vocab)
    return write


KW = dict(val_tokens=500, train_tokens=2500, shard_tokens=600)


def test_full_disk_keeps_shards_and_resumes(tmp_path):
    clean = tmp_path / "clean"
    build_fineweb_edu(clean, source=src, **KW)
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        build_fineweb_edu(out, source=src, write=enospc_on(3), **KW)
    one_line(e, "disk full", "train_000001.bin", "run the same command again")
    # the two shards finished before the disk filled are still there and recorded
    assert sorted(p.name for p in out.glob("*.bin")) == ["train_000000.bin", "val_000000.bin"]
    state = json.loads((out / "progress.json").read_text())
    assert [s["file"] for s in state["shards"]] == ["val_000000.bin", "train_000000.bin"]
    assert not list(out.glob("*.tmp"))
    build_fineweb_edu(out, source=src, **KW)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {p.name: p.read_bytes() for p in clean.iterdir()}


def test_full_disk_while_tokenizing_local_files(tmp_path, monkeypatch):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()))
    clean = build_files([f], tmp_path / "clean", val_tokens=500, shard_tokens=600)
    real_open = sources._open_truncated

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(sources, "_open_truncated", lambda p, size: Full(real_open(p, size)))
    with pytest.raises(UserError) as e:
        build_files([f], tmp_path / "out", val_tokens=500, shard_tokens=600)
    one_line(e, "disk full", "run the same command again")
    monkeypatch.setattr(sources, "_open_truncated", real_open)
    assert build_files([f], tmp_path / "out", val_tokens=500, shard_tokens=600) == clean


def test_full_disk_while_writing_local_shards(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()))
    clean = build_files([f], tmp_path / "clean", val_tokens=500, shard_tokens=600)
    with pytest.raises(UserError, match="disk full"):
        build_files([f], tmp_path / "out", val_tokens=500, shard_tokens=600, write=enospc_on(2))
    assert (tmp_path / "out" / "val_000000.bin").exists()
    assert build_files([f], tmp_path / "out", val_tokens=500, shard_tokens=600) == clean


def test_other_write_errors_are_one_line(tmp_path):
    def denied(path, tokens, vocab):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(UserError) as e:
        build_fineweb_edu(tmp_path, source=src, write=denied, **KW)
    one_line(e, "cannot write", "val_000000.bin", "Permission denied")


def test_corrupt_parquet(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "out")
    one_line(e, str(p), "not a readable parquet file")
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_truncated_parquet(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": texts()}), good, row_group_size=20)
    p = tmp_path / "cut.parquet"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "out")
    one_line(e, str(p))


def test_corrupt_parquet_row_group(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": texts()}), good, row_group_size=20, compression="snappy")
    data = bytearray(good.read_bytes())
    meta = pq.ParquetFile(good).metadata
    col = meta.row_group(3).column(0)
    start = col.data_page_offset
    for i in range(start + 20, start + col.total_compressed_size - 10):
        data[i] ^= 0x5A
    p = tmp_path / "garbled.parquet"
    p.write_bytes(bytes(data))
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "out", val_tokens=500, shard_tokens=600)
    one_line(e, str(p))


def test_parquet_without_text_column(tmp_path):
    p = tmp_path / "notext.parquet"
    pq.write_table(pa.table({"content": ["a", "b"], "id": [1, 2]}), p)
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "out")
    one_line(e, str(p), "no 'text' column", "content, id")


def test_parquet_text_column_not_strings(tmp_path):
    p = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), p)
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "out")
    one_line(e, "not strings")


def test_jsonl_problems(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o1")
    one_line(e, f"{p}:2", "no 'text' field", "body")
    p.write_text('{"text": "fine"}\n\n{"text": "x", \n')
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o2")
    one_line(e, f"{p}:3", "not valid json")
    p.write_text('{"text": 5}\n')
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o3")
    one_line(e, "'text' is int")


def test_corrupt_and_truncated_xz(tmp_path):
    p = tmp_path / "a.jsonl.xz"
    p.write_bytes(b"\xfd7zXZ\x00 garbage garbage garbage")
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o1")
    one_line(e, str(p), "xz")
    full = lzma.compress("".join(json.dumps({"text": t}) + "\n" for t in texts(2000)).encode())
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o2", val_tokens=500, shard_tokens=600)
    one_line(e, str(p), "truncated xz")


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o")
    one_line(e, str(p), "not utf-8")
    q = tmp_path / "latin1.jsonl"
    q.write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError) as e:
        build_files([q], tmp_path / "o2")
    one_line(e, str(q), "not utf-8")


def test_bad_paths(tmp_path):
    with pytest.raises(UserError) as e:
        build_files([tmp_path / "missing.jsonl"], tmp_path / "o")
    one_line(e, "no such file")
    p = tmp_path / "data.csv"
    p.write_text("text\nhello\n")
    with pytest.raises(UserError) as e:
        build_files([p], tmp_path / "o")
    one_line(e, "unsupported file type", ".parquet")
    q = tmp_path / "x.txt"
    q.write_text("hello")
    with pytest.raises(UserError, match="given twice"):
        build_files([q, q], tmp_path / "o")


def test_cli_errors_are_one_line_and_exit_1(tmp_path):
    from nanopoor.cli import app
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"nope")
    r = CliRunner().invoke(app, ["data", "files", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not a readable parquet file" in lines[0]
    r = CliRunner().invoke(app, ["data", "audit", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "no dataset or shard" in r.output
