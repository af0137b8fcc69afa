"""where documents come from: fineweb-edu through `datasets` streaming, and local files.

every source is a function `rows(start)` that yields document texts from document index
`start` on; a resumed build calls it again with the index where its last shard ended.

fineweb-edu is used in stream order (its val split is the first tokens of the stream). local files
are tokenized once in file order into a temporary token file, then their documents are written in
a seeded pseudo-random order, so that val and train have the same distribution even when the
files are ordered by topic (the order: nanopoor/data/shuffle.py; reading the files:
nanopoor/data/file_readers.py).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from supervisor.shards import write_shard
from nanopoor.data.defaults import (
    DEFAULT_FINEWEB_TRAIN_TOKENS, DEFAULT_LOCAL_VAL_TOKENS, DEFAULT_SHARD_TOKENS, DEFAULT_SHUFFLE_SEED,
    track_val_tokens,
)
from nanopoor.data.file_readers import (
    check_input, count_documents, expand_inputs, file_digest, iter_file, text_field,
)
from nanopoor.data.manifest import write_error
from nanopoor.data.shuffle import DOCS_TMP, SHUFFLE_METHOD, TOKENS_TMP, permute, shuffled_batches  # noqa: F401  (permute: re-exported)
from nanopoor.data.tokenizer import DocEncoder, batch_texts
from nanopoor.data.writer import Build, BuildSpec, Reporter, WriteShard
from nanopoor.errors import UserError

FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_CONFIG = "sample-10BT"

Rows = Callable[[int], Iterable[str]]


# --- a background reader ---------------------------------------------------------------------
class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """iterate `items` in a background thread, `depth` items ahead (reading and decompressing
    overlap tokenizing). an exception in the reader is raised here, in the consumer."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(items)
        try:
            for x in it:
                if not put(x):
                    return
            put(end)
        except BaseException as e:  # handed to the consumer
            put(_Raised(e))
        finally:
            close = getattr(it, "close", None)
            if close:
                close()

    t = threading.Thread(target=run, name="nanopoor-reader", daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is end:
                return
            if isinstance(x, _Raised):
                raise x.exc
            yield x
    finally:
        stop.set()


def _texts(rows: Iterable, what: str) -> Iterator[str]:
    for i, row in enumerate(rows):
        if isinstance(row, str):
            yield row
            continue
        yield text_field(row, f"{what}: row {i}")



def stream_batches(encoder: DocEncoder, rows: Rows) -> Callable[[int], Iterator]:
    """`batches(start)` for Build.run: read ahead in a thread, encode on the pool."""
    def batches(start: int):
        return encoder.encode(prefetch(batch_texts(rows(start))))
    return batches


# --- fineweb-edu -----------------------------------------------------------------------------
# the hub client and `datasets` log a line per retry (two per attempt, ten before they give up);
# the build says the one thing that matters itself, once, when the stream cannot be read
HUB_LOGGERS = ("huggingface_hub", "datasets", "fsspec", "urllib3")


@contextlib.contextmanager
def quiet_hub_retries():
    """the hub libraries' retry warnings held back while the stream is read; errors still show."""
    loggers = [logging.getLogger(name) for name in HUB_LOGGERS]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before):
            lg.setLevel(level)


def fineweb_edu_stream(skip: int = 0, revision: str | None = None) -> Iterator[dict]:
    """the real source: HuggingFaceFW/fineweb-edu, config sample-10BT, split train, streamed."""
    where = f"{FINEWEB_REPO} ({FINEWEB_CONFIG})"
    try:
        with quiet_hub_retries():
            from datasets import load_dataset
            # `datasets` sets its own loggers' level when it is first imported: quiet them again
            for name in HUB_LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)

            ds = load_dataset(FINEWEB_REPO, name=FINEWEB_CONFIG, split="train", streaming=True, revision=revision)
            if skip:
                ds = ds.skip(skip)
            yield from ds
    except UserError:
        raise
    except Exception as e:  # network, hub, parquet: one line, and the build resumes
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(
            f"cannot stream {where}: {type(e).__name__}: {msg[:300]}; check the network "
            "(or HF_ENDPOINT / HF_TOKEN) and run the same command again, the build resumes") from None


def build_stream(out_dir: Path, spec: BuildSpec, rows: Callable[[int], Iterable], *, progress: bool = False,
                 write: WriteShard = write_shard, threads: int | None = None, describe: str = "") -> dict:
    """build a dataset from a stream of documents in stream order (fineweb-edu, the demo)."""
    build = Build(out_dir, spec, Reporter(progress))
    if build.done:
        return build.manifest
    what = spec.dataset
    with DocEncoder(threads) as enc:
        return build.run(stream_batches(enc, lambda start: _texts(rows(start), what)),
                         write=write, describe=describe or f"{spec.dataset}")


def build_fineweb_edu(out_dir: str | os.PathLike = "data/fineweb-edu", *, train_tokens: int | None = DEFAULT_FINEWEB_TRAIN_TOKENS,
                      val_tokens: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                      source: Callable[[int], Iterable] | None = None, revision: str | None = None,
                      progress: bool = False, write: WriteShard = write_shard, threads: int | None = None,
                      command: str = "") -> dict:
    """stream fineweb-edu sample-10BT, tokenize, write val (the first val_tokens) then train.

    `source(skip)` stands in for the stream (it yields dicts with "text" from row `skip` on);
    everything after it is the real path."""
    val = val_tokens if val_tokens is not None else track_val_tokens("fineweb-edu")
    src = {"kind": "huggingface", "repo": FINEWEB_REPO, "config": FINEWEB_CONFIG, "split": "train",
           "revision": revision or "main"}
    out = Path(out_dir)
    spec = BuildSpec("fineweb-edu", src, val, train_tokens, shard_tokens,
                     command or f"nanopoor data fineweb-edu --out {out}")
    rows = source or functools.partial(fineweb_edu_stream, revision=revision)
    return build_stream(out, spec, rows, progress=progress, write=write, threads=threads,
                        describe="fineweb-edu")


# --- local files: build ----------------------------------------------------------------------
CHECKPOINT_TOKENS = 32 << 20


def iter_files(paths: list[Path], skip: int = 0) -> Iterator[str]:
    """the documents of all files in order, from document `skip` on."""
    for p in paths:
        if skip:
            n = count_documents(p)
            if skip >= n:
                skip -= n
                continue
        yield from iter_file(p, skip)
        skip = 0


def _open_truncated(path: Path, size: int):
    try:
        f = open(path, "r+b" if path.exists() else "w+b")
        f.truncate(size)
        f.seek(size)
        return f
    except OSError as e:
        raise write_error(path, e) from None


def _tokenize_files(build: Build, paths: list[Path], enc: DocEncoder, reporter: Reporter) -> None:
    """pass 1: every document in file order into a temporary token file and its start offsets;
    checkpointed, so an interrupted pass resumes near where it stopped."""
    st = build.state.setdefault("phase1", {"rows": 0, "docs": 0, "tokens": 0, "done": False})
    if st["done"]:
        return
    tok_path, doc_path = build.out / TOKENS_TMP, build.out / DOCS_TMP
    tf = _open_truncated(tok_path, st["tokens"] * 4)
    df = _open_truncated(doc_path, st["docs"] * 8)
    rows, docs, ntok = st["rows"], st["docs"], st["tokens"]
    last = ntok

    def checkpoint(done: bool) -> None:
        try:
            for f in (tf, df):
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise write_error(tok_path, e) from None
        st.update(rows=rows, docs=docs, tokens=ntok, done=done)
        build.save()

    reporter.start(f"tokenizing {len(paths)} file{'s' * (len(paths) > 1)}", None)
    reporter.advance(ntok)
    try:
        for tokens, starts in stream_batches(enc, lambda s: iter_files(paths, s))(rows):
            lens = np.diff(starts, append=len(tokens))
            doc_starts = (starts[lens > 0] + ntok).astype("<u8")
            try:
                tf.write(memoryview(tokens))
                df.write(memoryview(doc_starts))
            except OSError as e:
                raise write_error(tok_path, e) from None
            rows += len(starts)
            docs += len(doc_starts)
            ntok += len(tokens)
            reporter.advance(len(tokens))
            if ntok - last >= CHECKPOINT_TOKENS:
                checkpoint(False)
                last = ntok
        try:
            df.write(np.array([ntok], "<u8").tobytes())  # the end of the last document
        except OSError as e:
            raise write_error(doc_path, e) from None
        checkpoint(True)
    finally:
        reporter.stop()
        tf.close()
        df.close()


def build_files(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None, *,
                dataset: str = "local", val_tokens: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                seed: int = DEFAULT_SHUFFLE_SEED, progress: bool = False, write: WriteShard = write_shard,
                threads: int | None = None, command: str = "") -> dict:
    """import local .parquet / .jsonl / .jsonl.xz / .txt files as a shuffled dataset.

    val_tokens defaults to the track's when `dataset` names one (supervisor/tracks.toml), else 524,288."""
    files = expand_inputs(paths)
    for p in files:
        check_input(p)
    out = Path(out_dir) if out_dir is not None else Path("data") / dataset
    if val_tokens is None:
        val_tokens = track_val_tokens(dataset) or DEFAULT_LOCAL_VAL_TOKENS
    src = {"kind": "files", "files": [file_digest(p) for p in files],
           "shuffle": {"method": SHUFFLE_METHOD, "seed": seed}}
    cmd = command or f"nanopoor data files {' '.join(map(str, files))} --dataset {dataset} --out {out}"
    spec = BuildSpec(dataset, src, val_tokens, None, shard_tokens, cmd)
    reporter = Reporter(progress)
    build = Build(out, spec, reporter)
    if not build.done:
        with DocEncoder(threads) as enc:
            _tokenize_files(build, files, enc, reporter)
        n, total, batches = shuffled_batches(out, seed)
        if total <= val_tokens:
            raise UserError(f"{', '.join(p.name for p in files)} hold {total:,} tokens, not more than the "
                            f"{val_tokens:,} val tokens: give more text or a smaller --val-tokens")
        build.run(batches, write=write, describe=f"writing {dataset} ({n:,} documents, shuffled)", total=total)
    for tmp in (TOKENS_TMP, DOCS_TMP):
        (out / tmp).unlink(missing_ok=True)
    return build.manifest
