"""the data a run is fed, held by the supervisor: the train stream, the progress slice, and the
claim's two evaluations (the val set and the held-out check).

the dataset's files are opened here, outside the record's sandbox, and read with pread (never
mapped). the train split is served global batch by global batch in the seed's order; under
torchrun each rank is sent its slice of every global batch, and the global tokens are counted
once, when a batch is first sent. nothing past the declared budget is ever sent. the last
`heldout_tokens` of the train split are never served for training: one half of them (the
progress slice, at most a tenth of the budget) can be shown to the record for its own progress
evaluations; the other half is the held-out check the scorer runs after training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from supervisor.evaluate import num_windows
from supervisor.shards import ShardFile
from supervisor.stream import BudgetExceeded, SegmentTokens, TrainStream, heldout_tokens_for, tail_segments

MIN_HELDOUT_WINDOWS = 8  # a held-out check on fewer eval windows than this cannot run: the run does not start


class FeedError(ValueError):
    """the dataset cannot feed this run (one line: what, where, what to do)."""


class DataFeed:
    def __init__(self, data_dir: Path, track: dict, seq_len: int, batch_size: int, budget_tokens: int, seed: int,
                 world_size: int, eval_seq_len: int):
        data_dir = Path(data_dir)
        manifest = json.loads((data_dir / "manifest.json").read_text())
        if manifest.get("dataset") != track["dataset"]:
            raise FeedError(f"dataset '{manifest.get('dataset')}' at {data_dir} is not track {track['name']}'s '{track['dataset']}'")
        self.vocab_size = int(manifest["vocab_size"])
        if self.vocab_size > 2**31:
            raise FeedError(f"a vocabulary of {self.vocab_size:,} ids does not fit the int32 batches")
        self.fingerprint = manifest.get("fingerprint")
        shards = [ShardFile(data_dir / s["file"], self.vocab_size) for s in manifest["train"]]
        val_shards = [ShardFile(data_dir / s["file"], self.vocab_size) for s in manifest["val"]]
        val_have = sum(len(s) for s in val_shards)
        if val_have < int(track["val_tokens"]):
            raise FeedError(f"the val split at {data_dir} has {val_have:,} tokens; track {track['name']} needs {int(track['val_tokens']):,}")
        train_total = int(sum(len(s) for s in shards))
        self.heldout_tokens = heldout_tokens_for(train_total, int(track["val_tokens"]))
        if batch_size % world_size:
            raise FeedError(f"batch_size {batch_size} is not divisible by {world_size} ranks")
        self.world_size, self.seq_len, self.batch_size = world_size, seq_len, batch_size
        # one global stream: every rank's slice of global batch k is cut from the same window ids
        self.stream = TrainStream(shards, seq_len, batch_size, budget_tokens, seed, 0, 1, self.heldout_tokens)
        self._shards = shards
        self._global: dict[int, np.ndarray] = {}   # global batch k -> its window ids, until every rank took it
        self._taken: dict[int, int] = {}           # global batch k -> ranks that took it
        progress_segs, check_segs = tail_segments(train_total, self.heldout_tokens, eval_seq_len)
        self.progress = SegmentTokens(shards, progress_segs)
        # a record could train on what progress evals show it (real text the budget does not count):
        # the slice it may be shown is a tenth of its budget at most, and at least one eval window
        self.progress_shown = min(len(self.progress), max(budget_tokens // 10, eval_seq_len + 1))
        self.check = SegmentTokens(shards, check_segs)
        self.val = SegmentTokens(val_shards, [(0, int(track["val_tokens"]))])
        windows = num_windows(len(self.check), eval_seq_len)
        if windows < MIN_HELDOUT_WINDOWS:
            raise FeedError(f"the held-out check cannot run: the never-served tail holds {windows} windows of "
                            f"{eval_seq_len + 1} tokens (at least {MIN_HELDOUT_WINDOWS} needed); use a shorter "
                            f"eval_seq_len or a dataset with a longer train split")

    @property
    def tokens_served(self) -> int:
        return self.stream.tokens_served

    @property
    def epoch(self) -> int:
        return self.stream.epoch

    def batch(self, rank: int, k: int) -> tuple[bool, bytes | str]:
        """rank's slice of global batch k (0-based) as int32 (local_batch_size, seq_len + 1) bytes,
        or (False, 'budget: ...') past the budget. global batches are cut in order."""
        if k not in self._global:
            if k != self.stream.batches_served:
                return False, f"protocol: global batch {k} asked for out of order (next is {self.stream.batches_served})"
            try:
                self._global[k] = self.stream.next_indices()   # counts the global tokens, once
            except BudgetExceeded as e:
                return False, f"budget: {e}"
        ids = self._global[k][rank::self.world_size]
        self._taken[k] = self._taken.get(k, 0) + 1
        if self._taken[k] >= self.world_size:
            self._global.pop(k, None)
        out = np.empty((len(ids), self.seq_len + 1), dtype=np.int32)
        T = self.seq_len
        for row, w in enumerate(ids):
            s = int(self.stream.window_start[w])
            out[row] = self._shards[self.stream.window_shard[w]][s:s + T + 1]
        return True, out.tobytes()

    def progress_tokens(self) -> np.ndarray:
        """the progress slice (int32), as often as asked: the same tokens every time."""
        return self.progress.read(0, self.progress_shown).astype(np.int32)

    def eval_tokens(self, kind: str) -> np.ndarray:
        """the claim's tokens (int32): the val set ("val") or the held-out check ("check")."""
        part = self.val if kind == "val" else self.check
        return part.read(0, len(part)).astype(np.int32)
