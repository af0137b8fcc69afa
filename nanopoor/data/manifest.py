"""a dataset folder's manifest: reading it with one-line errors, its fingerprint, atomic json writes.

layout (docs/contract.md): manifest.json, val_000000.bin …, train_000000.bin …; while a build
runs (or after it was interrupted) progress.json records what is done and how to resume.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

from supervisor.shards import ShardError, read_header
from nanopoor.errors import UserError
from nanopoor.jsonio import write_atomic

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
REQUIRED_KEYS = (
    "schema_version", "dataset", "tokenizer", "vocab_size", "eot_id", "source",
    "val", "train", "val_tokens", "train_tokens", "fingerprint", "complete",
)


def fingerprint(tokenizer: str, vocab_size: int, val: list[dict], train: list[dict]) -> str:
    """sha256 over the tokenizer name, the vocabulary size and each shard's sha256, in order.

    exactly: sha256 of the utf-8 text "nanopoor-dataset-v1\\n{tokenizer}\\n{vocab_size}\\n" followed by
    one line "{split} {sha256}\\n" per shard, val shards first, then train, in stream order."""
    h = hashlib.sha256(f"nanopoor-dataset-v1\n{tokenizer}\n{vocab_size}\n".encode())
    for split, shards in (("val", val), ("train", train)):
        for s in shards:
            h.update(f"{split} {s['sha256']}\n".encode())
    return h.hexdigest()


def write_json_atomic(path: Path, obj: dict) -> None:
    """temp file beside the target, fsync, rename (nanopoor.jsonio): a reader sees the old file or the new one.
    not cleaned of nan/inf: a manifest holds counts and digests, and a wrong type there should fail loudly."""
    try:
        write_atomic(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")
    except OSError as e:
        raise write_error(path, e) from None


def write_error(path: Path, e: OSError) -> UserError:
    """one line for a failed write; the build keeps what it finished and resumes."""
    if e.errno == errno.ENOSPC:
        return UserError(
            f"disk full while writing {path}: free space on that disk and run the same command "
            "again; the shards already written are kept and the build resumes")
    return UserError(f"cannot write {path}: {e.strerror or e}; fix it and run the same command again to resume")


def build_hint(path: Path, dataset: str | None = None) -> str:
    """the command that (re)builds the dataset at path: the interrupted build's own command, else
    the builder of `dataset` (or of the folder's name) writing exactly there."""
    prog = Path(path) / PROGRESS
    if prog.is_file():
        try:
            cmd = json.loads(prog.read_text()).get("command")
            if cmd:
                return cmd
        except (OSError, ValueError):
            pass
    path = Path(path)
    name = dataset or path.name
    default = path.as_posix() == f"data/{name}"
    if name == "docs" and default:
        return "make data-docs"
    if name in ("fineweb-edu", "docs", "demo"):
        return f"nanopoor data {name}" + ("" if default else f" --out {path.as_posix()}")
    if dataset:   # a dataset built from local files (`nanopoor data files`)
        return f"nanopoor data files PATH… --dataset {dataset} --out {path.as_posix()}"
    return f"nanopoor data demo --out {path.as_posix()}"   # the track is unknown here: the default dataset


def load_manifest(path: str | os.PathLike) -> dict:
    """the parsed manifest of a complete dataset folder, or a one-line UserError saying what to run."""
    d = Path(path)
    if not d.exists():
        raise UserError(f"no dataset at {d}: build it with `{build_hint(d)}`")
    if not d.is_dir():
        raise UserError(f"{d} is a file, not a dataset folder (a folder with manifest.json and shards)")
    mf = d / MANIFEST
    if not mf.is_file():
        if (d / PROGRESS).is_file():
            raise UserError(f"the dataset at {d} is incomplete (its build was interrupted): resume it with `{build_hint(d)}`")
        raise UserError(f"no dataset at {d} (no {MANIFEST}): build it with `{build_hint(d)}`")
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read {mf}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{mf} is not valid json ({e}): rebuild it with `{build_hint(d)}`") from None
    if not isinstance(m, dict):
        raise UserError(f"{mf} is not a manifest (expected a json object): rebuild it with `{build_hint(d)}`")
    version = m.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise UserError(f"{mf} has schema_version {version}; this nanopoor reads up to {SCHEMA_VERSION}: update nanopoor")
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise UserError(f"{mf} lacks {', '.join(missing)}: rebuild it with `{build_hint(d)}`")
    if not m["complete"]:
        raise UserError(f"the dataset at {d} is incomplete: resume it with `{build_hint(d)}`")
    return m


def shard_paths(path: str | os.PathLike, manifest: dict) -> list[tuple[str, Path, dict]]:
    """(split, file path, manifest entry) for every shard, val first, in stream order."""
    d = Path(path)
    return [(split, d / e["file"], e) for split in ("val", "train") for e in manifest[split]]


def ensure_dataset(path: str | os.PathLike) -> dict:
    """the manifest of a usable dataset: complete, every shard present with the header and size the
    manifest says (no hashing: `nanopoor data audit` does that). one-line UserError otherwise."""
    d = Path(path)
    m = load_manifest(d)
    if not m["val"]:
        raise UserError(f"the dataset at {d} has no val shards: rebuild it with `{build_hint(d)}`")
    for _, p, e in shard_paths(d, m):
        if not p.is_file():
            raise UserError(f"shard {p} listed in {d / MANIFEST} is missing: rebuild with `{build_hint(d)}`")
        try:
            h = read_header(p)
        except ShardError as err:
            raise UserError(f"{err}") from None
        if h.vocab_size != m["vocab_size"]:
            raise UserError(
                f"shard {p}: vocabulary {h.vocab_size} does not match the manifest's {m['vocab_size']}; "
                f"rebuild with `{build_hint(d)}`")
        if h.tokens != e["tokens"]:
            raise UserError(f"shard {p} holds {h.tokens} tokens but the manifest says {e['tokens']}: rebuild with `{build_hint(d)}`")
    return m
