"""reading documents out of local files: .parquet (a 'text' column), .jsonl and .jsonl.xz (a 'text'
field per line) and .txt (one document per file).

every failure to read one names the file (and the line) in one UserError line: bad json, a missing
'text', corrupt xz or parquet data, bytes that are not utf-8, an unreadable file."""
from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from nanopoor.errors import UserError


def text_field(obj, where: str) -> str:
    """a row's 'text' (None reads as empty); no field, or not a string, is one line naming where."""
    if not isinstance(obj, Mapping) or "text" not in obj:
        keys = ", ".join(map(str, obj.keys())) if isinstance(obj, Mapping) else type(obj).__name__
        raise UserError(f"{where}: no 'text' field (has: {keys})")
    t = "" if obj["text"] is None else obj["text"]
    if not isinstance(t, str):
        raise UserError(f"{where}: 'text' is {type(t).__name__}, not a string")
    return t


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
                yield text_field(obj, f"{p}:{lineno}")


def file_digest(p: Path) -> dict:
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    return {"name": p.name, "bytes": p.stat().st_size, "sha256": h.hexdigest()}
