"""records: record.toml parsed and validated, the frozen digest computed, written and checked,
and a record's lineage: which files differ from the record it was copied from (`parent`)."""
from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from nanopoor.errors import UserError, did_you_mean
from nanopoor.jsonio import write_atomic

REQUIRED = {"name": str, "title": str, "author": str, "date": str, "track": str, "entrypoint": str}
SCALE_FIELDS = ("seq_len", "batch_size", "grad_accum", "steps")
_FROZEN = re.compile(r"^\[frozen\][^\[]*", re.M)
IGNORED_PARTS = {"__pycache__", ".pytest_cache"}
RECORDS_DIR = Path("records")


@dataclass
class Record:
    name: str
    title: str
    author: str
    date: str
    track: str
    entrypoint: str
    path: Path
    seeds: int = 3
    scales: dict[str, dict] = field(default_factory=dict)
    claims: list[dict] = field(default_factory=list)
    frozen_sha256: str | None = None
    parent: str | None = None     # the record this one was copied from, by name

    @property
    def entry_path(self) -> Path:
        return self.path / self.entrypoint

    def scale(self, name: str) -> dict:
        """the scale's settings with its token budget: seq_len × batch_size × grad_accum × steps."""
        if name not in self.scales:
            raise UserError(f"record {self.name} has no scale '{name}'{did_you_mean(name, self.scales)}; "
                            f"its scales: {', '.join(sorted(self.scales))}")
        s = dict(self.scales[name])
        s.setdefault("track", self.track)
        s.setdefault("args", {})
        s["budget_tokens"] = s["seq_len"] * s["batch_size"] * s["grad_accum"] * s["steps"]
        s["formula"] = " × ".join(str(s[k]) for k in SCALE_FIELDS)
        return s


def load_record(path: str | Path) -> Record:
    """parse records/<name>/record.toml; every problem is one UserError naming the field."""
    p = Path(path)
    if not p.exists() and len(p.parts) == 1 and (RECORDS_DIR / p).is_dir():
        p = RECORDS_DIR / p   # a bare name, as verify and compare take it: records/<name>
    toml_path = p / "record.toml" if p.is_dir() or not p.suffix else p
    p = toml_path.parent
    if not p.exists():
        # the folder the user meant, else records/: list what exists there
        where = p.parent if len(p.parts) > 1 and p.parent.is_dir() else RECORDS_DIR
        names = sorted(d.parent.name for d in where.glob("*/record.toml"))
        hint = f"; records in {where.as_posix()}/: {', '.join(names)}" if names else f"; {where.as_posix()}/ holds no records"
        raise UserError(f"no record at {p}{did_you_mean(p.name, names)}{hint}")
    if not toml_path.is_file():
        raise UserError(f"{p} has no record.toml: a record is a folder with record.toml and its entrypoint")
    try:
        raw = tomllib.loads(toml_path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{toml_path}: not valid TOML ({e})") from None
    for key, typ in REQUIRED.items():
        if key not in raw:
            raise UserError(f"{toml_path}: missing field '{key}'")
        if not isinstance(raw[key], typ):
            raise UserError(f"{toml_path}: field '{key}' must be a {typ.__name__}, not {type(raw[key]).__name__}")
    scales = raw.get("scales")
    if not isinstance(scales, dict) or not scales:
        raise UserError(f"{toml_path}: missing table [scales.full] / [scales.smoke]")
    for sname, s in scales.items():
        for k in SCALE_FIELDS:
            if not isinstance(s.get(k), int) or s[k] <= 0:
                raise UserError(f"{toml_path}: field 'scales.{sname}.{k}' must be a positive integer")
        if "args" in s and not isinstance(s["args"], dict):
            raise UserError(f"{toml_path}: field 'scales.{sname}.args' must be a table")
    seeds = raw.get("seeds", 3)
    if not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"{toml_path}: field 'seeds' must be a positive integer")
    parent = raw.get("parent")
    if parent is not None and (not isinstance(parent, str) or not parent or "/" in parent):
        raise UserError(f"{toml_path}: field 'parent' must be the name of another record, e.g. parent = \"muon\"")
    claims = raw.get("claims", [])
    if not isinstance(claims, list):
        raise UserError(f"{toml_path}: field 'claims' must be an array of tables ([[claims]])")
    rec = Record(name=raw["name"], title=raw["title"], author=raw["author"], date=str(raw["date"]),
                 track=raw["track"], entrypoint=raw["entrypoint"], path=p, seeds=seeds, scales=scales,
                 claims=claims, frozen_sha256=(raw.get("frozen") or {}).get("sha256"), parent=parent)
    if rec.parent == rec.name:
        raise UserError(f"{toml_path}: field 'parent' names the record itself; name the record it was copied from")
    if rec.name != p.name:
        raise UserError(f"{toml_path}: field 'name' is '{rec.name}' but the folder is '{p.name}'")
    if not rec.entry_path.is_file():
        raise UserError(f"{toml_path}: field 'entrypoint' names {rec.entrypoint}, which is not in {p}")
    return rec


def list_records(root: str | Path = "records") -> list[Record]:
    return [load_record(t.parent) for t in sorted(Path(root).glob("*/record.toml"))]


def describe_records(root: str | Path = "records") -> list[dict]:
    """what `nanopoor records` shows of each record: title, track, frozen digest and whether the
    files still match it, the parent and the lineage against it."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"no folder {root.as_posix()}: pass --records with a folder of records")
    return [{"name": rec.name, "title": rec.title, "track": rec.track, "frozen_sha256": rec.frozen_sha256,
             "frozen_ok": rec.frozen_sha256 is not None and compute_digest(rec.path) == rec.frozen_sha256,
             "parent": rec.parent, "lineage": lineage(rec)} for rec in list_records(root)]


UNCOVERED_SUFFIXES = {".pyc", ".pyo", ".so", ".pyd"}


def _files(path: Path) -> list[Path]:
    return sorted(f for f in path.rglob("*") if f.is_file() and not f.is_symlink() and not IGNORED_PARTS & set(f.parts)
                  and f.suffix not in UNCOVERED_SUFFIXES)


def uncovered(path: str | Path) -> list[str]:
    """what in a record folder the digest cannot vouch for: links (their target can change after
    freeze), compiled code (python runs a .pyc instead of its source), anything not a plain file."""
    path = Path(path)
    out = []
    for f in sorted(path.rglob("*")):
        rel = str(f.relative_to(path))
        if f.is_symlink():
            out.append(f"{rel} (a link)")
        elif f.is_file() and (IGNORED_PARTS & set(f.relative_to(path).parts) or f.suffix in UNCOVERED_SUFFIXES):
            out.append(f"{rel} (compiled or cached code)")
        elif not f.is_file() and not f.is_dir():
            out.append(f"{rel} (not a plain file)")
    return out


# a record is source text: what it ships can carry knowledge past its token budget (weights, tokens),
# so a record folder holds text files of these kinds only, in all at most RECORD_SOURCE_CAP_BYTES,
# and no literal long enough to be data (supervisor.source_scan.data_literals). the largest record
# today is 53 KB; the cap leaves five times that.
TEXT_SUFFIXES = {".py", ".toml", ".md", ".txt", ".rst", ".json", ".yaml", ".yml", ".cfg"}
RECORD_SOURCE_CAP_BYTES = 256 * 1024


def shipped_data(path: str | Path) -> list[str]:
    """what in a record folder is data rather than source: one line each (empty: nothing)."""
    from supervisor.source_scan import data_literals

    path = Path(path)
    out, total = [], 0
    for f in _files(path):
        rel = f.relative_to(path).as_posix()
        raw = f.read_bytes()
        total += len(raw)
        if f.suffix not in TEXT_SUFFIXES:
            out.append(f"{rel} is not source text ({f.suffix or 'no suffix'}; a record ships {', '.join(sorted(TEXT_SUFFIXES))} files only)")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append(f"{rel} is not UTF-8 text")
            continue
        if f.suffix == ".py":
            out += [f"{rel}:{line}: {what}, which is data, not source" for line, what in data_literals(text)]
    if total > RECORD_SOURCE_CAP_BYTES:
        out.append(f"the record's files hold {total:,} bytes, over the {RECORD_SOURCE_CAP_BYTES // 1024} KiB a record's source may hold")
    return out


def refuse_data(path: str | Path, verb: str) -> None:
    bad = shipped_data(path)
    if bad:
        extra = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{verb}: {Path(path).as_posix()}: {bad[0]}{extra}; a record ships source only "
                        "(docs/contract.md, record folders)")


def refuse_uncovered(path: str | Path, verb: str) -> None:
    bad = uncovered(path)
    if bad:
        extra = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{verb}: {Path(path) / bad[0].split(' (')[0]} is not covered by the record's digest: {bad[0].split(' (', 1)[1][:-1]}"
                        f"{extra}; remove it (links: copy the real file in) and try again")


def stage(rec: Record, dest: Path) -> Path:
    """copy exactly the digested files of a frozen record into dest and check the copy's digest:
    the run executes and reads these bytes, never the original folder."""
    import shutil

    refuse_uncovered(rec.path, "run")
    for f in _files(rec.path):
        target = dest / f.relative_to(rec.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    if compute_digest(dest) != rec.frozen_sha256:
        raise UserError(f"frozen record changed: {rec.path} changed while it was being staged; run it again")
    return dest


def record_files(path: str | Path) -> dict[str, str]:
    """sha256 per file of the record, so a later mismatch can say which file changed."""
    path = Path(path)
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest() for f in _files(path)}


def compute_digest(path: str | Path) -> str:
    """sha256 over every file of the record (relative path + bytes); record.toml without [frozen]."""
    path = Path(path)
    h = hashlib.sha256()
    for f in _files(path):
        data = f.read_bytes()
        if f.name == "record.toml" and f.parent == path:
            data = _FROZEN.sub("", data.decode()).rstrip().encode()
        h.update(str(f.relative_to(path)).encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def refuse_syntax_errors(rec: Record) -> None:
    """every python file of the record compiles: a frozen record with a syntax error could never
    run, and it could not be fixed without a new name."""
    from supervisor.source_scan import PARSE_LOCK

    for f in _files(rec.path):
        if f.suffix != ".py":
            continue
        try:
            with PARSE_LOCK:   # python 3.11's parser is not safe from two threads at once
                compile(f.read_bytes(), str(f), "exec", dont_inherit=True)
        except SyntaxError as e:
            where = f"{f.as_posix()}:{e.lineno}" if e.lineno else f.as_posix()
            raise UserError(f"freeze: {where}: {e.msg}: fix it and freeze again (nothing was written)") from None
        except ValueError as e:   # null bytes and the like
            raise UserError(f"freeze: {f.as_posix()}: {e}: fix it and freeze again (nothing was written)") from None


def freeze(path: str | Path) -> str:
    """write the current digest into record.toml's [frozen] table (replacing an old one), once
    every file is covered by the digest and every python file compiles."""
    rec = load_record(path)
    refuse_uncovered(rec.path, "freeze")
    refuse_syntax_errors(rec)
    refuse_data(rec.path, "freeze")
    digest = compute_digest(rec.path)
    toml_path = rec.path / "record.toml"
    text = _FROZEN.sub("", toml_path.read_text()).rstrip()
    write_atomic(toml_path, f'{text}\n\n[frozen]\nsha256 = "{digest}"\n')  # a crash leaves the old file, never half of one
    return digest


def check_frozen(rec: Record) -> str:
    """the digest, if it matches the frozen one; otherwise one line saying to make a new record."""
    digest = compute_digest(rec.path)
    if rec.frozen_sha256 is None:
        raise UserError(f"record {rec.name} is not frozen: run `nanopoor freeze {rec.path}` once it is final")
    if digest != rec.frozen_sha256:
        raise UserError(f"frozen record changed: {rec.path} no longer matches its [frozen] digest; "
                        f"make a new record (copy it to records/{rec.name}_v2 and `nanopoor freeze` that)")
    return digest


def _line_counts(old: bytes, new: bytes) -> dict[str, int]:
    """lines added and removed between two versions of a text file (binary files: none counted)."""
    try:
        a, b = old.decode().splitlines(), new.decode().splitlines()
    except UnicodeDecodeError:
        return {"added_lines": 0, "removed_lines": 0}
    diff = list(difflib.unified_diff(a, b, lineterm="", n=0))[2:]
    return {"added_lines": sum(d.startswith("+") for d in diff if not d.startswith("+++")),
            "removed_lines": sum(d.startswith("-") for d in diff if not d.startswith("---"))}


def lineage(rec: Record) -> dict | None:
    """what the record changes from its parent: files added, removed and changed (with line counts).
    None for a record without a parent; {"parent", "missing": True} when the parent is not beside it."""
    if rec.parent is None:
        return None
    parent_dir = rec.path.parent / rec.parent
    if not (parent_dir / "record.toml").is_file():
        return {"parent": rec.parent, "missing": True}
    mine, theirs = record_files(rec.path), record_files(parent_dir)
    changed = {}
    for name in sorted(set(mine) & set(theirs)):
        if name == "record.toml":
            old = _FROZEN.sub("", (parent_dir / name).read_text()).rstrip().encode()
            new = _FROZEN.sub("", (rec.path / name).read_text()).rstrip().encode()
        else:
            old, new = (parent_dir / name).read_bytes(), (rec.path / name).read_bytes()
        if old != new:
            changed[name] = _line_counts(old, new)
    return {"parent": rec.parent, "missing": False, "added": sorted(set(mine) - set(theirs)),
            "removed": sorted(set(theirs) - set(mine)), "changed": changed}


def describe_lineage(lin: dict | None) -> str:
    """one line: 'from muon: train.py (+12 -3), added opt.py' ('' for a record without a parent)."""
    if lin is None:
        return ""
    if lin["missing"]:
        return f"from {lin['parent']} (not found beside it)"
    parts = [f"{n} (+{c['added_lines']} -{c['removed_lines']})" for n, c in lin["changed"].items()]
    parts += [f"added {n}" for n in lin["added"]] + [f"removed {n}" for n in lin["removed"]]
    return f"from {lin['parent']}: " + (", ".join(parts) if parts else "no file differs")
