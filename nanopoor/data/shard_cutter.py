"""cutting the document stream into shards: the val split's tokens, then the train split from the
document after the one that holds the last val token, each shard recorded as it is flushed.

ShardCutter is the part of writer.Build that walks the stream; it uses the build's spec, state,
report, save() and _flush()."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanopoor.errors import UserError

Batches = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]]
WriteShard = Callable[[Path, np.ndarray, int], None]


@dataclass
class _Cursor:
    """where a build is in the stream: the split being written and the shard being filled."""
    split: str
    limit: float                 # tokens the split takes in all (inf: until the source ends)
    in_split: int                # tokens of the split already in finished shards
    start: tuple[int, int]       # (document, offset) where the shard being filled starts
    base: int                    # the document the current batch starts with
    skip: int                    # tokens of the first batch already written (a resumed build)
    n: int = 0                   # tokens in the shard being filled
    docs: int = 0                # documents that begin in it


def _position(base: int, starts: np.ndarray, size: int, q: int) -> tuple[int, int]:
    """(document, offset within it) of token q of a batch of `size` tokens whose documents start at `starts`."""
    if q >= size:
        return base + len(starts), 0
    j = int(np.searchsorted(starts, q, side="right")) - 1
    return base + j, q - int(starts[j])



class ShardCutter:
    """the stream side of a build: from the recorded position to the end of the train split."""

    def _stream(self, batches: Batches, write: WriteShard, describe: str, total: int | None) -> None:
        cur = self._cursor()
        if cur is None:
            return
        spec = self.spec
        if total is None and spec.train_tokens is not None:
            total = spec.val_tokens + spec.train_tokens
        self.report.start(describe, total)
        self.report.advance(sum(e["tokens"] for e in self.state["shards"]))
        buf = np.empty(spec.shard_tokens, np.uint32)  # pages are touched only as they fill
        stream = iter(batches(cur.base))
        try:
            for tokens, starts in stream:
                if self._write_batch(cur, buf, tokens, starts, write):
                    return
                cur.base += len(starts)
            self._source_ended(cur, buf, write)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
            self.report.stop()

    def _train_limit(self) -> float:
        return self.spec.train_tokens if self.spec.train_tokens is not None else math.inf

    def _cursor(self) -> _Cursor | None:
        """the recorded position; None when the train split takes no tokens (the build is done)."""
        st = self.state
        nxt = st["next"]
        split, doc, offset = nxt["split"], int(nxt["doc"]), int(nxt["offset"])
        limit = self.spec.val_tokens if split == "val" else self._train_limit()
        if split == "train" and limit == 0:
            st["next"] = {"split": "done", "doc": doc, "offset": 0}
            self.save()
            return None
        in_split = sum(e["tokens"] for e in st["shards"] if e["split"] == split)
        return _Cursor(split, limit, in_split, (doc, offset), base=doc, skip=offset)

    def _write_batch(self, cur: _Cursor, buf: np.ndarray, tokens: np.ndarray, starts: np.ndarray,
                     write: WriteShard) -> bool:
        """copy one batch into shards, flushing each one that fills; True once the build's last shard is written."""
        size = len(tokens)
        p, cur.skip = cur.skip, 0
        while p < size:
            take = int(min(size - p, self.spec.shard_tokens - cur.n, cur.limit - cur.in_split - cur.n))
            piece = tokens[p:p + take]
            buf[cur.n:cur.n + take] = piece
            cur.docs += int(np.count_nonzero(piece == self.spec.eot_id))
            cur.n += take
            p += take
            self.report.advance(take)
            if cur.in_split + cur.n == cur.limit:
                if cur.split == "train":
                    doc, offset = _position(cur.base, starts, size, p)
                    self._flush_cursor(cur, buf, {"split": "done", "doc": doc, "offset": offset}, write)
                    return True
                p = self._end_val(cur, buf, starts, size, p, write)
                if p is None:
                    return True
            elif cur.n == self.spec.shard_tokens:
                end = _position(cur.base, starts, size, p)
                self._flush_cursor(cur, buf, {"split": cur.split, "doc": end[0], "offset": end[1]}, write)
                cur.in_split += cur.n
                cur.n = cur.docs = 0
                cur.start = end
        return False

    def _end_val(self, cur: _Cursor, buf: np.ndarray, starts: np.ndarray, size: int, p: int,
                 write: WriteShard) -> int | None:
        """close the val split after the batch's token p-1; train starts at the next document.
        returns where in the batch train starts, or None when the build takes no train tokens."""
        last, _ = _position(cur.base, starts, size, p - 1)
        first_train = last + 1
        train_limit = self._train_limit()
        self._flush_cursor(cur, buf, {"split": "train" if train_limit else "done", "doc": first_train, "offset": 0}, write)
        if not train_limit:
            return None
        cur.split, cur.limit, cur.in_split, cur.n, cur.docs = "train", train_limit, 0, 0, 0
        cur.start = (first_train, 0)
        rel = first_train - cur.base
        return int(starts[rel]) if rel < len(starts) else size

    def _source_ended(self, cur: _Cursor, buf: np.ndarray, write: WriteShard) -> None:
        """the source has no more documents: the last train shard, or a one-line error if val is short."""
        spec = self.spec
        if cur.split == "val":
            raise UserError(
                f"the source ended after {cur.in_split + cur.n:,} tokens, fewer than the {spec.val_tokens:,} "
                "val tokens it needs: give more text or a smaller --val-tokens")
        if cur.n:
            self._flush_cursor(cur, buf, {"split": "done", "doc": cur.base, "offset": 0}, write)
        else:
            self.state["next"] = {"split": "done", "doc": cur.base, "offset": 0}
            self.save()
        if spec.train_tokens is not None and cur.in_split + cur.n < spec.train_tokens:
            self.report.note(f"note: the source ended after {cur.in_split + cur.n:,} train tokens (asked for {spec.train_tokens:,})")

    def _flush_cursor(self, cur: _Cursor, buf: np.ndarray, nxt: dict, write: WriteShard) -> None:
        self._flush(cur.split, buf[:cur.n], cur.docs, cur.start, nxt, write)
