"""the train stream: batches from the train shards in an order fixed by the seed, counted exactly.

windows of seq_len + 1 tokens are cut from each shard with stride seq_len (inputs and their
next-token targets), permuted by the seed, and served global-batch by global-batch. under
torchrun each rank takes its slice of every global batch; every rank counts the global tokens,
so the budget is the same number everywhere. the last `heldout_tokens` of the train split are
never served: the harness evaluates on them afterwards to see whether val loss is believable.
"""
from __future__ import annotations

import numpy as np


class BudgetExceeded(RuntimeError):
    """the record asked for more tokens than it declared."""


class TrainStream:
    def __init__(self, shards: list[np.ndarray], seq_len: int, batch_size: int, budget_tokens: int,
                 seed: int, rank: int = 0, world_size: int = 1, heldout_tokens: int = 0):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world_size} ranks")
        self.seq_len, self.batch_size, self.budget_tokens = seq_len, batch_size, budget_tokens
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.local_batch_size = batch_size // world_size
        self.shards = shards
        # window starts per shard, excluding the held-out tail of the whole train split
        total = sum(len(s) for s in shards)
        servable_end = total - heldout_tokens  # global token index where the held-out tail begins
        starts, shard_ids, offset = [], [], 0
        for i, s in enumerate(shards):
            usable = min(len(s), max(0, servable_end - offset))
            n = max(0, (usable - 1) // seq_len)
            starts.append(np.arange(n, dtype=np.int64) * seq_len)
            shard_ids.append(np.full(n, i, dtype=np.int32))
            offset += len(s)
        self.window_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.window_shard = np.concatenate(shard_ids) if shard_ids else np.zeros(0, np.int32)
        if len(self.window_start) < batch_size:
            raise ValueError(f"the train split holds {len(self.window_start)} windows of {seq_len + 1} tokens; "
                             f"one batch needs {batch_size}")
        self.tokens_served = 0      # global, counted on every rank
        self.batches_served = 0
        self.epoch = 0
        self._order = self._permutation(0)
        self._pos = 0

    @property
    def windows(self) -> int:
        return len(self.window_start)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.windows)

    def tokens_per_batch(self) -> int:
        return self.batch_size * self.seq_len

    def next_indices(self) -> np.ndarray:
        """the window ids of this rank's slice of the next global batch; counts the tokens."""
        if self.tokens_served + self.tokens_per_batch() > self.budget_tokens:
            raise BudgetExceeded(
                f"the record asked for batch {self.batches_served + 1} ({self.tokens_served + self.tokens_per_batch():,} tokens) "
                f"past its declared budget of {self.budget_tokens:,} tokens")
        if self._pos + self.batch_size > self.windows:  # next epoch, new order
            self.epoch += 1
            self._order, self._pos = self._permutation(self.epoch), 0
        ids = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        self.tokens_served += self.tokens_per_batch()
        self.batches_served += 1
        return ids[self.rank::self.world_size]

    def next_numpy(self) -> np.ndarray:
        """(local_batch_size, seq_len + 1) int64: inputs are [:, :-1], targets [:, 1:]."""
        ids = self.next_indices()
        out = np.empty((len(ids), self.seq_len + 1), dtype=np.int64)
        for row, w in enumerate(ids):
            s = self.window_start[w]
            out[row] = self.shards[self.window_shard[w]][s:s + self.seq_len + 1]
        return out


def heldout_tokens_for(train_tokens: int, val_tokens: int) -> int:
    """size of the never-served tail: as large as the val sample, capped at 1M tokens and a tenth of train."""
    return int(min(val_tokens, 1 << 20, train_tokens // 10))


def tail_segments(train_tokens: int, heldout_tokens: int, eval_seq_len: int) -> tuple[list, list]:
    """the never-served tail in two interleaved halves, as (start, length) ranges of the train split:
    (progress, check). progress evaluations read chunks 0, 2, 4, ...; the held-out check reads chunks
    1, 3, 5, ... so the check rests on tokens the record was never shown, and both halves hold the
    same mix of documents. a chunk is a whole number of eval windows (a sixteenth of the tail, or one
    window when the tail is short)."""
    chunk = eval_seq_len * max(1, (heldout_tokens // 16) // max(1, eval_seq_len))
    start = train_tokens - heldout_tokens
    halves: tuple[list, list] = ([], [])
    for k, off in enumerate(range(0, heldout_tokens, chunk)):
        halves[k % 2].append((start + off, min(chunk, heldout_tokens - off)))
    return halves


class SegmentTokens:
    """a 1-d token sequence made of (start, length) ranges of some shards' concatenation, read on
    demand (pread through ShardFile): nothing is held in memory but what a read returns. the data
    process serves the val set and the held-out check through this, a window at a time, so its
    memory never holds tokens the record has not been scored on yet."""

    def __init__(self, shards, segments: list[tuple[int, int]]):
        self.shards, self.segments = shards, segments
        self.offsets = np.cumsum([0] + [n for _, n in segments])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, n: int) -> np.ndarray:
        """tokens [start, start + n) of the sequence."""
        parts = []
        while n > 0:
            k = int(np.searchsorted(self.offsets, start, side="right")) - 1
            seg_start, seg_len = self.segments[k]
            take = min(n, seg_len - (start - int(self.offsets[k])))
            parts.append(read_range(self.shards, seg_start + start - int(self.offsets[k]), take))
            start, n = start + take, n - take
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def read_range(shards, start: int, n: int) -> np.ndarray:
    """tokens [start, start + n) of the shards' concatenation."""
    parts, offset = [], 0
    for s in shards:
        end = offset + len(s)
        if n > 0 and start < end:
            lo = start - offset
            take = min(n, len(s) - lo)
            parts.append(np.asarray(s[lo:lo + take]))
            start, n = start + take, n - take
        offset = end
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
