"""where documents come from: fineweb-edu through `datasets` streaming, and local files.

every source is a function `rows(start)` that yields document texts from document index
`start` on; a resumed build calls it again with the index where its last shard ended.

fineweb-edu is used in stream order (its val split is the first tokens of the stream). local files
are tokenized once in file order into a temporary token file, then their documents are written in
a seeded pseudo-random order, so that val and train have the same distribution even when the
files are ordered by topic. the order is a fixed bijection (a feistel network over splitmix64,
defined here), so it does not depend on numpy's or python's random generators.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import lzma
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from harness.shards import write_shard
from nanopoor.data.defaults import (
    DEFAULT_FINEWEB_TRAIN_TOKENS, DEFAULT_LOCAL_VAL_TOKENS, DEFAULT_SHARD_TOKENS, DEFAULT_SHUFFLE_SEED,
    track_val_tokens,
)
from nanopoor.data.manifest import write_error
from nanopoor.data.tokenizer import DocEncoder, batch_texts
from nanopoor.data.writer import Build, BuildSpec, Reporter, WriteShard
from nanopoor.errors import UserError

FINEWEB_REPO = "HuggingFaceFW/fineweb-edu"
FINEWEB_CONFIG = "sample-10BT"
SHUFFLE_METHOD = "feistel-splitmix64-v1"

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
        yield _text_field(row, f"{what}: row {i}")


def _text_field(obj, where: str) -> str:
    """a row's 'text' (None reads as empty); no field, or not a string, is one line naming where."""
    if not isinstance(obj, Mapping) or "text" not in obj:
        keys = ", ".join(map(str, obj.keys())) if isinstance(obj, Mapping) else type(obj).__name__
        raise UserError(f"{where}: no 'text' field (has: {keys})")
    t = "" if obj["text"] is None else obj["text"]
    if not isinstance(t, str):
        raise UserError(f"{where}: 'text' is {type(t).__name__}, not a string")
    return t


def stream_batches(encoder: DocEncoder, rows: Rows) -> Callable[[int], Iterator]:
    """`batches(start)` for Build.run: read ahead in a thread, encode on the pool."""
    def batches(start: int):
        return encoder.encode(prefetch(batch_texts(rows(start))))
    return batches


# --- fineweb-edu -----------------------------------------------------------------------------
def fineweb_edu_stream(skip: int = 0, revision: str | None = None) -> Iterator[dict]:
    """the real source: HuggingFaceFW/fineweb-edu, config sample-10BT, split train, streamed."""
    where = f"{FINEWEB_REPO} ({FINEWEB_CONFIG})"
    try:
        from datasets import load_dataset

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


# --- local files -----------------------------------------------------------------------------
def _suffix(p: Path) -> str | None:
    name = p.name.lower()
    for s in (".jsonl.xz", ".parquet", ".jsonl", ".txt"):
        if name.endswith(s):
            return s
    return None


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """the input files, in the order given (a folder contributes its readable files, sorted)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and _suffix(q))
            if not found:
                raise UserError(f"{p} holds no .parquet, .jsonl, .jsonl.xz or .txt files")
            out.extend(found)
        elif p.is_file():
            if not _suffix(p):
                raise UserError(f"{p}: unsupported file type; nanopoor reads .parquet (a 'text' column), "
                                ".jsonl and .jsonl.xz (a 'text' field) and .txt (one document per file)")
            out.append(p)
        else:
            raise UserError(f"no such file: {p}")
    if not out:
        raise UserError("no input files given")
    seen: set[Path] = set()
    for p in out:
        r = p.resolve()
        if r in seen:
            raise UserError(f"{p} is given twice")
        seen.add(r)
    return out


def _parquet_file(p: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{p}: not a readable parquet file ({_first_line(e)})") from None
    names = f.schema_arrow.names
    if "text" not in names:
        raise UserError(f"{p} has no 'text' column (columns: {', '.join(names) or 'none'}); "
                        "nanopoor reads each document from a string column named 'text'")
    typ = f.schema_arrow.field("text").type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)):
        raise UserError(f"{p}: its 'text' column holds {typ}, not strings")
    return f


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else type(e).__name__


def check_input(p: Path) -> None:
    """fail before the build starts on what can be seen without reading everything."""
    if _suffix(p) == ".parquet":
        _parquet_file(p)


def _arrow_errors() -> tuple:
    """pyarrow's exception type once pyarrow is in use (it is imported only for parquet files)."""
    pa = sys.modules.get("pyarrow")
    return (pa.ArrowException,) if pa is not None else ()


@contextlib.contextmanager
def _read_errors(p: Path):
    """bad content or a failed read of p becomes one UserError line."""
    try:
        yield
    except UserError:
        raise
    except (lzma.LZMAError, EOFError) as e:
        raise UserError(f"{p}: corrupt or truncated xz data ({_first_line(e)})") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not utf-8 text (byte {e.start}: {e.reason})") from None
    except _arrow_errors() as e:
        raise UserError(f"{p}: corrupt parquet data ({_first_line(e)})") from None
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or _first_line(e)}") from None


def _jsonl_lines(p: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for the non-blank lines: each is one document. bytes: json.loads
    decodes the utf-8 itself, cheaper than a text-mode reader."""
    opener = lzma.open if _suffix(p) == ".jsonl.xz" else open
    with opener(p, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if line and not line.isspace():
                yield lineno, line


def count_documents(p: Path) -> int:
    kind = _suffix(p)
    with _read_errors(p):
        if kind == ".parquet":
            return _parquet_file(p).metadata.num_rows
        if kind == ".txt":
            return 1
        return sum(1 for _ in _jsonl_lines(p))


def iter_file(p: Path, skip: int = 0) -> Iterator[str]:
    """the documents of one file, from document `skip` on (parquet: row group by row group)."""
    kind = _suffix(p)
    with _read_errors(p):
        if kind == ".parquet":
            f = _parquet_file(p)
            for g in range(f.num_row_groups):
                n = f.metadata.row_group(g).num_rows
                if skip >= n:
                    skip -= n
                    continue
                texts = f.read_row_group(g, columns=["text"]).column("text").to_pylist()
                for t in texts[skip:]:
                    yield t if t is not None else ""
                skip = 0
        elif kind == ".txt":
            if skip == 0:
                with open(p, encoding="utf-8") as fh:
                    yield fh.read()
        else:
            for row, (lineno, line) in enumerate(_jsonl_lines(p)):
                if row < skip:
                    continue
                try:
                    obj = json.loads(line)
                except UnicodeDecodeError:
                    raise  # said as "not utf-8" by _read_errors
                except ValueError as e:
                    raise UserError(f"{p}:{lineno}: not valid json ({_first_line(e)})") from None
                yield _text_field(obj, f"{p}:{lineno}")


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


def file_digest(p: Path) -> dict:
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    return {"name": p.name, "bytes": p.stat().st_size, "sha256": h.hexdigest()}


# --- the shuffle -----------------------------------------------------------------------------
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


# --- local files: build ----------------------------------------------------------------------
TOKENS_TMP = "_stream.tokens.tmp"
DOCS_TMP = "_stream.docs.tmp"
CHECKPOINT_TOKENS = 32 << 20
GATHER_TOKENS = 4 << 20
GATHER_DOCS = 4096


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


def _shuffled_batches(out: Path, seed: int) -> tuple[int, int, Callable[[int], Iterator]]:
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


def build_files(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None, *,
                dataset: str = "local", val_tokens: int | None = None, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                seed: int = DEFAULT_SHUFFLE_SEED, progress: bool = False, write: WriteShard = write_shard,
                threads: int | None = None, command: str = "") -> dict:
    """import local .parquet / .jsonl / .jsonl.xz / .txt files as a shuffled dataset.

    val_tokens defaults to the track's when `dataset` names one (harness/tracks.toml), else 524,288."""
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
        n, total, batches = _shuffled_batches(out, seed)
        if total <= val_tokens:
            raise UserError(f"{', '.join(p.name for p in files)} hold {total:,} tokens, not more than the "
                            f"{val_tokens:,} val tokens: give more text or a smaller --val-tokens")
        build.run(batches, write=write, describe=f"writing {dataset} ({n:,} documents, shuffled)", total=total)
    for tmp in (TOKENS_TMP, DOCS_TMP):
        (out / tmp).unlink(missing_ok=True)
    return build.manifest
