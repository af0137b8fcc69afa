"""token shard files: the one on-disk format the harness reads and the tools write.

a shard is a 256-byte header followed by the tokens. the header says how wide a token is,
so a reader can never read uint32 tokens as uint16 (the seed project's defect: every second
token came out as 0). modded-nanogpt's uint16 gpt-2 shards are readable too, never written.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"NPSHARD\x00"
FORMAT_VERSION = 1
HEADER_BYTES = 256
# magic(8s) version(I) header_bytes(I) tokens(Q) bytes_per_token(I) vocab_size(I)
_LAYOUT = struct.Struct("<8sIIQII")

MODDED_MAGIC = 20240520  # modded-nanogpt / llm.c gpt-2 token shards
MODDED_HEADER_INT32 = 256
DTYPES = {2: np.uint16, 4: np.uint32}


class ShardError(ValueError):
    """a shard file that does not match its header; the message is one line naming the file."""


@dataclass(frozen=True)
class ShardHeader:
    path: str
    format: str          # "nanopoor" or "modded-nanogpt"
    version: int
    header_bytes: int
    tokens: int
    bytes_per_token: int
    vocab_size: int      # 0 when the format does not say (modded-nanogpt)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.bytes_per_token])


def bytes_per_token_for(vocab_size: int) -> int:
    """the narrowest width that holds every id below vocab_size."""
    return 2 if vocab_size <= 2**16 else 4


def pack_header(tokens: int, vocab_size: int, bytes_per_token: int | None = None) -> bytes:
    bpt = bytes_per_token or bytes_per_token_for(vocab_size)
    if bpt not in DTYPES:
        raise ValueError(f"bytes per token must be 2 or 4, not {bpt}")
    head = _LAYOUT.pack(MAGIC, FORMAT_VERSION, HEADER_BYTES, tokens, bpt, vocab_size)
    return head + b"\x00" * (HEADER_BYTES - len(head))


def read_header(path: str | os.PathLike) -> ShardHeader:
    """parse and validate a shard's header against its file size; raise ShardError otherwise."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"cannot read shard {p}: {e.strerror or e}") from None
    if len(raw) >= _LAYOUT.size and raw[:8] == MAGIC:
        _, version, hbytes, ntok, bpt, vocab = _LAYOUT.unpack_from(raw)
        if version != FORMAT_VERSION or hbytes != HEADER_BYTES:
            raise ShardError(f"shard {p}: unsupported format version {version} (header {hbytes} bytes); rebuild it with `nanopoor data`")
        if bpt not in DTYPES:
            raise ShardError(f"shard {p}: header says {bpt} bytes per token; only 2 or 4 are valid")
        if vocab > 2 ** (8 * bpt):
            raise ShardError(f"shard {p}: vocabulary of {vocab} ids does not fit {bpt}-byte tokens")
        header = ShardHeader(str(p), "nanopoor", version, hbytes, ntok, bpt, vocab)
    elif len(raw) >= 12 and int(np.frombuffer(raw[:4], "<i4")[0]) == MODDED_MAGIC:
        ints = np.frombuffer(raw[:12], "<i4")
        version, ntok = int(ints[1]), int(ints[2])
        if version != 1:
            raise ShardError(f"shard {p}: modded-nanogpt shard version {version}; only version 1 (uint16) is readable")
        header = ShardHeader(str(p), "modded-nanogpt", version, MODDED_HEADER_INT32 * 4, ntok, 2, 0)
    else:
        raise ShardError(f"{p} is not a token shard (unknown magic); build shards with `nanopoor data`")
    expected = header.header_bytes + header.tokens * header.bytes_per_token
    if size != expected:
        raise ShardError(
            f"shard {p}: file is {size} bytes but its header says {header.tokens} tokens × "
            f"{header.bytes_per_token} B + {header.header_bytes} B header = {expected} bytes (truncated or corrupt)"
        )
    return header


def open_shard(path: str | os.PathLike, vocab_size: int | None = None) -> np.ndarray:
    """memory-map a shard's tokens (read-only) after validating it.

    vocab_size, when given, must match the header (a shard of another tokenizer is refused)."""
    h = read_header(path)
    if vocab_size is not None and h.vocab_size and h.vocab_size != vocab_size:
        raise ShardError(f"shard {path}: vocabulary {h.vocab_size} does not match the dataset's {vocab_size}; rebuild with the same tokenizer")
    if h.tokens == 0:
        return np.zeros(0, dtype=h.dtype)
    return np.memmap(path, dtype=h.dtype, mode="r", offset=h.header_bytes, shape=(h.tokens,))


class ShardFile:
    """a shard read with pread from an open file, never mapped: the process holding it keeps
    only the windows it has read in memory (the data process: a record that reads its memory,
    e.g. through /proc/<pid>/mem, finds the batches it was served and nothing more).
    supports len() and slicing with step 1, like the memory-mapped array of open_shard."""

    def __init__(self, path: str | os.PathLike, vocab_size: int | None = None):
        h = read_header(path)
        if vocab_size is not None and h.vocab_size and h.vocab_size != vocab_size:
            raise ShardError(f"shard {path}: vocabulary {h.vocab_size} does not match the dataset's {vocab_size}; rebuild with the same tokenizer")
        self.header, self.dtype = h, h.dtype
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def __len__(self) -> int:
        return self.header.tokens

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a ShardFile is read by contiguous slices")
        start, stop, _ = key.indices(len(self))
        n = max(0, stop - start)
        width = self.dtype.itemsize
        raw = os.pread(self._fd, n * width, self.header.header_bytes + start * width) if n else b""
        if len(raw) != n * width:
            raise ShardError(f"shard {self.header.path}: short read at token {start} (file changed on disk?)")
        return np.frombuffer(raw, dtype=self.dtype)

    def close(self) -> None:
        os.close(self._fd)


def write_shard(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int) -> None:
    """write tokens atomically: a temp file beside the target, fsync, then rename.

    an interrupted write leaves the old file (or none), never a torn one."""
    bpt = bytes_per_token_for(vocab_size)
    arr = np.asarray(tokens)
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got [{int(arr.min())}, {int(arr.max())}]")
    arr = arr.astype(DTYPES[bpt], copy=False)
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(pack_header(arr.size, vocab_size, bpt))
            f.write(memoryview(np.ascontiguousarray(arr)))  # no copy of the tokens
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
