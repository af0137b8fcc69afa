"""the shard format (supervisor/shards.py): header fields, size checks, modded-nanogpt shards, atomic writes."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from supervisor import shards
from supervisor.shards import (
    HEADER_BYTES, MAGIC, MODDED_MAGIC, ShardError, open_shard, pack_header, read_header, write_shard,
)


def _one_line_naming(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg


def test_roundtrip_uint32_header_fields(tmp_path):
    p = tmp_path / "s.bin"
    toks = np.array([100257, 0, 1, 65535, 65536, 100276, 42], np.int64)
    write_shard(p, toks, 100277)
    raw = p.read_bytes()
    assert raw[:8] == MAGIC
    version, hbytes, ntok, bpt, vocab = struct.unpack_from("<IIQII", raw, 8)
    assert (version, hbytes, ntok, bpt, vocab) == (1, 256, 7, 4, 100277)
    assert raw[32:HEADER_BYTES] == b"\x00" * (HEADER_BYTES - 32)
    assert len(raw) == HEADER_BYTES + 7 * 4
    h = read_header(p)
    assert (h.format, h.tokens, h.bytes_per_token, h.vocab_size, h.dtype) == ("nanopoor", 7, 4, 100277, np.uint32)
    got = open_shard(p, 100277)
    assert got.dtype == np.uint32 and got.tolist() == toks.tolist()


def test_small_vocabulary_uses_uint16(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(50257), 50257)
    h = read_header(p)
    assert h.bytes_per_token == 2 and os.path.getsize(p) == HEADER_BYTES + 2 * 50257
    assert open_shard(p).tolist() == list(range(50257))


def test_empty_shard(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.zeros(0, np.uint32), 100277)
    assert read_header(p).tokens == 0 and open_shard(p).size == 0


@pytest.mark.parametrize("cut", [1, 4, 100])
def test_truncated_shard_refused(tmp_path, cut):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(100), 100277)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - cut)
    with pytest.raises(ShardError) as e:
        read_header(p)
    _one_line_naming(e, p)
    assert "truncated" in str(e.value)


def test_trailing_bytes_refused(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(10), 100277)
    with open(p, "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(ShardError) as e:
        open_shard(p)
    _one_line_naming(e, p)


def test_unknown_magic_refused(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(b"\x01" * 1024)
    with pytest.raises(ShardError) as e:
        read_header(p)
    _one_line_naming(e, p)
    assert "not a token shard" in str(e.value)


def test_seed_style_12_byte_header_refused(tmp_path):
    # the seed's tokenizer wrote a 12-byte header and uint32 tokens; it is not a shard
    p = tmp_path / "seed.bin"
    p.write_bytes(np.array([20240801, 1, 3], "<i4").tobytes() + np.array([1, 2, 3], "<u4").tobytes())
    with pytest.raises(ShardError):
        read_header(p)


def test_bad_version_width_and_vocab_refused(tmp_path):
    p = tmp_path / "s.bin"
    head = struct.pack("<8sIIQII", MAGIC, 2, 256, 0, 4, 100277)
    p.write_bytes(head + b"\x00" * (256 - len(head)))
    with pytest.raises(ShardError, match="version 2"):
        read_header(p)
    head = struct.pack("<8sIIQII", MAGIC, 1, 256, 0, 3, 100)
    p.write_bytes(head + b"\x00" * (256 - len(head)))
    with pytest.raises(ShardError, match="2 or 4"):
        read_header(p)
    head = struct.pack("<8sIIQII", MAGIC, 1, 256, 0, 2, 100277)
    p.write_bytes(head + b"\x00" * (256 - len(head)))
    with pytest.raises(ShardError, match="does not fit"):
        read_header(p)


def test_vocabulary_mismatch_refused(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(10), 100277)
    with pytest.raises(ShardError) as e:
        open_shard(p, vocab_size=50257)
    _one_line_naming(e, p)
    assert "100277" in str(e.value) and "50257" in str(e.value)


def test_missing_file_is_a_shard_error(tmp_path):
    p = tmp_path / "nope.bin"
    with pytest.raises(ShardError) as e:
        read_header(p)
    _one_line_naming(e, p)


def _modded(path, tokens, version=1, count=None):
    header = np.zeros(256, "<i4")
    header[:3] = [MODDED_MAGIC, version, len(tokens) if count is None else count]
    path.write_bytes(header.tobytes() + np.asarray(tokens, "<u2").tobytes())


def test_modded_nanogpt_shard_is_readable(tmp_path):
    p = tmp_path / "fineweb_val_000000.bin"
    toks = [50256, 464, 2068, 7586, 21831]
    _modded(p, toks)
    h = read_header(p)
    assert (h.format, h.tokens, h.bytes_per_token, h.header_bytes, h.vocab_size) == ("modded-nanogpt", 5, 2, 1024, 0)
    arr = open_shard(p)
    assert arr.dtype == np.uint16 and arr.tolist() == toks
    # the vocabulary is not stated, so any expected vocabulary is accepted
    assert open_shard(p, vocab_size=50257).tolist() == toks


def test_modded_nanogpt_shard_checked_too(tmp_path):
    p = tmp_path / "m.bin"
    _modded(p, [1, 2, 3], count=4)
    with pytest.raises(ShardError) as e:
        read_header(p)
    _one_line_naming(e, p)
    _modded(p, [1, 2, 3], version=2)
    with pytest.raises(ShardError, match="version 2"):
        read_header(p)


def test_write_refuses_ids_outside_the_vocabulary(tmp_path):
    p = tmp_path / "s.bin"
    with pytest.raises(ValueError):
        write_shard(p, np.array([0, 100277]), 100277)
    with pytest.raises(ValueError):
        write_shard(p, np.array([-1, 3]), 100277)
    assert not p.exists() and not list(tmp_path.iterdir())


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(5), 100277)
    before = p.read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards.os, "fsync", boom)
    with pytest.raises(OSError):
        write_shard(p, np.arange(50), 100277)
    assert p.read_bytes() == before  # the old shard is intact
    assert [q.name for q in tmp_path.iterdir()] == ["s.bin"]  # no temp file left behind


def test_pack_header_matches_written_header(tmp_path):
    p = tmp_path / "s.bin"
    write_shard(p, np.arange(9), 100277)
    assert p.read_bytes()[:HEADER_BYTES] == pack_header(9, 100277)
