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


def concat_tail(shards: list[np.ndarray], tokens: int) -> np.ndarray:
    """the last `tokens` tokens of the train split, across shard boundaries."""
    parts, need = [], tokens
    for s in reversed(shards):
        if need <= 0:
            break
        take = min(need, len(s))
        parts.append(np.asarray(s[len(s) - take:]))
        need -= take
    return np.concatenate(parts[::-1]).astype(np.int64) if parts else np.zeros(0, np.int64)


def split_tail(tail: np.ndarray, eval_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """the never-served tail in two interleaved halves: (progress, check). progress evaluations read
    chunks 0, 2, 4, ...; the held-out check reads chunks 1, 3, 5, ... so the check rests on tokens the
    record was never shown, and both halves hold the same mix of documents. a chunk is a whole
    number of eval windows (a sixteenth of the tail, or one window when the tail is short)."""
    chunk = eval_seq_len * max(1, (len(tail) // 16) // max(1, eval_seq_len))
    idx = np.arange(len(tail)) // chunk
    return tail[idx % 2 == 0], tail[idx % 2 == 1]
