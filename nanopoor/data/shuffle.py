"""the seeded document order of a local-files build, and the reader that follows it.

pass 1 of the build (nanopoor/data/sources.py) writes every document's tokens in file order to
TOKENS_TMP and their start offsets to DOCS_TMP; pass 2 reads them back here in the order `permute`
gives. the order is a fixed bijection (a feistel network over splitmix64, defined here), so it does
not depend on numpy's or python's random generators."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from nanopoor.errors import UserError

SHUFFLE_METHOD = "feistel-splitmix64-v1"  # named in the manifest's source
TOKENS_TMP = "_stream.tokens.tmp"
DOCS_TMP = "_stream.docs.tmp"
GATHER_TOKENS = 4 << 20
GATHER_DOCS = 4096


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def permute(positions: np.ndarray, n: int, seed: int, rounds: int = 6) -> np.ndarray:
    """a seeded bijection of [0, n): the document written at position i is document permute(i).

    a balanced feistel network on the smallest even number of bits that holds n, with cycle
    walking back into [0, n); defined by integer arithmetic only, so it is the same everywhere."""
    bits = max(2, int(n - 1).bit_length())
    bits += bits & 1
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    keys = [np.uint64((seed * 0x100000001B3 + r * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF) for r in range(rounds)]

    def once(x: np.ndarray) -> np.ndarray:
        left, right = x >> half, x & mask
        for k in keys:
            left, right = right, left ^ (_splitmix64(right ^ k) & mask)
        return (left << half) | right

    with np.errstate(over="ignore"):
        x = once(np.asarray(positions, np.uint64))
        out_of_range = x >= np.uint64(n)
        while out_of_range.any():
            x[out_of_range] = once(x[out_of_range])
            out_of_range = x >= np.uint64(n)
    return x.astype(np.int64)


def shuffled_batches(out: Path, seed: int) -> tuple[int, int, Callable[[int], Iterator]]:
    """(documents, tokens, batches(start)): documents in seeded order, read from the token file."""
    bounds = np.memmap(out / DOCS_TMP, dtype="<u8", mode="r")
    n = len(bounds) - 1
    total = int(bounds[-1]) if n >= 0 else 0

    def batches(start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with open(out / TOKENS_TMP, "rb", buffering=0) as f:
            p = start
            while p < n:
                idx = permute(np.arange(p, min(p + GATHER_DOCS, n)), n, seed)
                s = bounds[idx].astype(np.int64)
                lens = bounds[idx + 1].astype(np.int64) - s
                cum = np.cumsum(lens)
                k = max(1, int(np.searchsorted(cum, GATHER_TOKENS, side="right")))
                s, lens, cum = s[:k], lens[:k], cum[:k]
                tokens = np.empty(int(cum[-1]), np.uint32)
                pos = 0
                for so, ln in zip(s.tolist(), lens.tolist()):
                    f.seek(so * 4)
                    got = f.readinto(memoryview(tokens[pos:pos + ln]).cast("B"))
                    if got != ln * 4:
                        raise UserError(f"{out / TOKENS_TMP} is shorter than its index: remove {out} and build again")
                    pos += ln
                starts = np.concatenate(([0], cum[:-1])).astype(np.int64)
                yield tokens, starts
                p += k

    return n, total, batches
