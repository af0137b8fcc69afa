"""one sequential read of a shard: its statistics, its file's sha256 and the hashes of its documents.

the audit (nanopoor/data/audit.py) turns these into checks. memory stays flat: a shard is read in
fixed-size chunks, and documents are hashed as they stream past, split at eot, across shards."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from supervisor.shards import ShardError, ShardHeader

CHUNK_TOKENS = 8 << 20          # even, so positions keep their parity across chunks


@dataclass
class ShardScan:
    tokens: int = 0
    max_id: int = -1
    counts: np.ndarray | None = None
    out_of_range: int = 0
    even01: int = 0
    odd01: int = 0
    even: int = 0
    odd: int = 0
    sha256: str = ""


@dataclass
class DocHashes:
    """hashes of the documents of one split, split at eot, carried across its shards."""
    eot: int
    collect: bool                        # val: keep the hashes; train: look them up
    val: dict | None = None              # hash -> tokens (when looking up)
    seen: dict = field(default_factory=dict)
    shared_docs: set = field(default_factory=set)
    documents: int = 0
    _h: object = None
    _n: int = 0

    def feed(self, chunk: np.ndarray) -> None:
        cuts = np.flatnonzero(chunk == self.eot)
        prev = 0
        for c in cuts.tolist():
            self._part(chunk[prev:c])
            self.end()
            prev = c + 1
        self._part(chunk[prev:])

    def _part(self, seg: np.ndarray) -> None:
        if seg.size:
            if self._h is None:
                self._h = hashlib.blake2b(digest_size=16)
            self._h.update(memoryview(np.ascontiguousarray(seg)))
            self._n += seg.size

    def end(self) -> None:
        if self._h is None:
            return
        d, n = self._h.digest(), self._n
        self._h, self._n = None, 0
        self.documents += 1
        if self.collect:
            self.seen[d] = n
        elif self.val is not None and d in self.val:
            self.shared_docs.add(d)


def scan_shard(path: Path, header: ShardHeader, vocab_bound: int, docs: DocHashes | None = None) -> ShardScan:
    """one pass over a shard: statistics, the file's sha256, document hashes."""
    s = ShardScan(counts=np.zeros(vocab_bound, np.int64))
    h = hashlib.sha256()
    buf = np.empty(CHUNK_TOKENS, header.dtype)
    with open(path, "rb", buffering=0) as f:
        h.update(f.read(header.header_bytes))
        left = header.tokens
        while left:
            k = min(left, CHUNK_TOKENS)
            view = memoryview(buf[:k]).cast("B")
            got = 0
            while got < view.nbytes:
                r = f.readinto(view[got:])
                if not r:
                    raise ShardError(f"shard {path}: ended early while reading (truncated while being audited?)")
                got += r
            chunk = buf[:k]
            h.update(view)
            m = int(chunk.max())
            s.max_id = max(s.max_id, m)
            if m >= vocab_bound:
                inside = chunk[chunk < vocab_bound]
                s.out_of_range += k - inside.size
            else:
                inside = chunk
            s.counts += np.bincount(inside, minlength=vocab_bound)[:vocab_bound]
            low = chunk <= 1
            # chunks start at even positions (CHUNK_TOKENS is even)
            s.even01 += int(np.count_nonzero(low[0::2]))
            s.odd01 += int(np.count_nonzero(low[1::2]))
            s.even += (k + 1) // 2
            s.odd += k // 2
            if docs is not None:
                docs.feed(chunk)
            s.tokens += k
            left -= k
    s.sha256 = h.hexdigest()
    return s


def merge_scan(total: ShardScan, s: ShardScan) -> None:
    """one shard's scan added into the dataset's total."""
    total.tokens += s.tokens
    total.max_id = max(total.max_id, s.max_id)
    total.out_of_range += s.out_of_range
    if total.counts is None:
        total.counts = s.counts.copy()
    else:
        total.counts += s.counts
