"""turn a stream of documents into val then train shards, atomically and resumably.

the stream is given as a function `batches(start_doc)` that yields (tokens, starts) pairs from
document `start_doc` on: tokens is the uint32 concatenation of whole documents (each non-empty
one preceded by eot), starts[i] the offset of the batch's i-th document. the val split is the first `val_tokens`
tokens; the train split starts at the document after the one that holds the last val token.

progress.json records every finished shard with the stream position (document, offset within
it) where the shard starts, and the position after the last one. a resumed build re-reads the
source from that position; since the stream is deterministic the result is byte-identical to an
uninterrupted build. the manifest is written last, with complete: true.

this module holds the build's spec, its progress file (resume) and its manifest; walking the
stream into shards is shard_cutter's, the progress bar progress_bar's.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supervisor.shards import DTYPES, ShardError, bytes_per_token_for, pack_header, read_header, write_shard
from nanopoor.data.manifest import (
    MANIFEST, PROGRESS, SCHEMA_VERSION, fingerprint, write_error, write_json_atomic,
)
from nanopoor.data.defaults import EOT_ID, TOKENIZER_NAME, VOCAB_SIZE
from nanopoor.data.progress_bar import Reporter
from nanopoor.data.shard_cutter import Batches, ShardCutter, WriteShard
from nanopoor.errors import UserError

PROGRESS_VERSION = 1


@dataclass
class BuildSpec:
    """what a build makes; two builds with equal specs write the same bytes."""
    dataset: str
    source: dict                      # recorded in the manifest: kind, repo/config or files, shuffle, …
    val_tokens: int
    train_tokens: int | None          # None: until the source ends
    shard_tokens: int
    command: str                      # how to run (and resume) this build, for messages
    # the token ids' meaning: cl100k_base for every real dataset; the tests' synthetic datasets name their own
    tokenizer: str = TOKENIZER_NAME
    vocab_size: int = VOCAB_SIZE
    eot_id: int = EOT_ID              # the tokenizer's end of text: each document starts with it

    def params(self) -> dict:
        return {
            "dataset": self.dataset, "tokenizer": self.tokenizer, "vocab_size": self.vocab_size,
            "source": self.source, "val_tokens": self.val_tokens, "train_tokens": self.train_tokens,
            "shard_tokens": self.shard_tokens,
        }


def command_line(args: list[str] | None = None) -> str:
    """the command as the user typed it, for 'run … again' messages."""
    argv = sys.argv if args is None else args
    if argv and Path(argv[0]).name in ("nanopoor", "__main__.py"):
        return shlex.join(["nanopoor", *argv[1:]])
    return ""


def shard_sha256(tokens: np.ndarray, vocab_size: int) -> str:
    """the sha256 of the shard file write_shard makes from these tokens (as wide as the vocabulary needs)."""
    h = hashlib.sha256(pack_header(tokens.size, vocab_size))
    h.update(memoryview(np.ascontiguousarray(tokens, dtype=DTYPES[bytes_per_token_for(vocab_size)])))
    return h.hexdigest()


class Build(ShardCutter):
    """one dataset folder being built: its spec, its progress file and its shards."""

    def __init__(self, out_dir: Path, spec: BuildSpec, reporter: Reporter | None = None):
        self.out = Path(out_dir)
        self.spec = spec
        self.report = reporter or Reporter(False)
        self.manifest: dict | None = None
        if spec.val_tokens <= 0:
            raise UserError(f"val tokens must be positive, not {spec.val_tokens}")
        if spec.shard_tokens <= 0:
            raise UserError(f"shard tokens must be positive, not {spec.shard_tokens}")
        if spec.train_tokens is not None and spec.train_tokens < 0:
            raise UserError(f"train tokens must be 0 or more, not {spec.train_tokens}")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create {self.out}: {e.strerror or e}") from None
        self._check_existing()
        if self.manifest is None:
            self.state = self._load_progress()
            self.save()  # from now on the folder says how to resume it

    @property
    def done(self) -> bool:
        return self.manifest is not None

    # --- existing folder -------------------------------------------------------------------
    def _check_existing(self) -> None:
        mf = self.out / MANIFEST
        if not mf.is_file():
            return
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            m = None
        if isinstance(m, dict) and m.get("complete") and m.get("build") == self.spec.params():
            self.manifest = m
            (self.out / PROGRESS).unlink(missing_ok=True)  # left if the last run stopped right after the manifest
            return
        raise UserError(
            f"{self.out} already holds a dataset built with other settings ({mf}): "
            "choose another --out or remove that folder")

    def _load_progress(self) -> dict:
        path = self.out / PROGRESS
        params = self.spec.params()
        fresh = {"version": PROGRESS_VERSION, "command": self.spec.command, "params": params,
                 "shards": [], "next": {"split": "val", "doc": 0, "offset": 0}}
        if not path.is_file():
            if any(self.out.glob("*_0*.bin")):
                raise UserError(f"{self.out} holds shards but no {PROGRESS} or {MANIFEST}: choose another --out or remove that folder")
            return fresh
        try:
            st = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"{path} is unreadable: remove {self.out} and build again") from None
        if st.get("version") != PROGRESS_VERSION or st.get("params") != params:
            raise UserError(
                f"{self.out} holds an interrupted build with other settings: resume it with "
                f"`{st.get('command') or 'the command that started it'}`, or remove that folder")
        # every recorded shard must still be there, whole; resume from the first one that is not
        for i, e in enumerate(st["shards"]):
            try:
                ok = read_header(self.out / e["file"]).tokens == e["tokens"]
            except ShardError:
                ok = False
            if not ok:
                st["shards"] = st["shards"][:i]
                st["next"] = {"split": e["split"], "doc": e["start"][0], "offset": e["start"][1]}
                break
        for tmp in self.out.glob("*.bin.tmp"):
            tmp.unlink(missing_ok=True)
        if st["shards"] or st.get("phase1"):
            self.report.note(f"resuming the build in {self.out} ({len(st['shards'])} shards already written)")
        return st

    def save(self) -> None:
        write_json_atomic(self.out / PROGRESS, self.state)

    # --- the stream ------------------------------------------------------------------------
    def _flush(self, split: str, tokens: np.ndarray, documents: int, start: tuple[int, int], nxt: dict,
               write: WriteShard) -> None:
        index = sum(1 for e in self.state["shards"] if e["split"] == split)
        name = f"{split}_{index:06d}.bin"
        path = self.out / name
        try:
            write(path, tokens, self.spec.vocab_size)
        except OSError as e:
            raise write_error(path, e) from None
        self.state["shards"].append({
            "split": split, "file": name, "tokens": int(tokens.size),
            "sha256": shard_sha256(tokens, self.spec.vocab_size),
            "documents": int(documents),  # documents that begin in this shard
            "start": [int(start[0]), int(start[1])],
        })
        self.state["next"] = nxt
        self.save()

    def run(self, batches: Batches, *, write: WriteShard = write_shard, describe: str = "writing shards",
            total: int | None = None) -> dict:
        """write the shards from the recorded position to the end, then the manifest."""
        if self.manifest is not None:
            return self.manifest
        if self.state["next"]["split"] != "done":
            self._stream(batches, write, describe, total)
        return self._finish()

    def _finish(self) -> dict:
        spec, st = self.spec, self.state
        entries = {"val": [], "train": []}
        for e in st["shards"]:
            entries[e["split"]].append({k: e[k] for k in ("file", "tokens", "sha256", "documents")})
        if not entries["val"]:
            raise UserError(f"the build in {self.out} wrote no val shard; remove that folder and build again")
        m = {
            "schema_version": SCHEMA_VERSION,
            "dataset": spec.dataset,
            "tokenizer": spec.tokenizer,
            "vocab_size": spec.vocab_size,
            "eot_id": spec.eot_id,
            "bytes_per_token": bytes_per_token_for(spec.vocab_size),
            "source": spec.source,
            "val": entries["val"],
            "train": entries["train"],
            "val_tokens": sum(e["tokens"] for e in entries["val"]),
            "train_tokens": sum(e["tokens"] for e in entries["train"]),
            "fingerprint": fingerprint(spec.tokenizer, spec.vocab_size, entries["val"], entries["train"]),
            "build": spec.params(),
            "complete": True,
        }
        write_json_atomic(self.out / MANIFEST, m)
        try:
            (self.out / PROGRESS).unlink(missing_ok=True)
        except OSError:
            pass
        self.manifest = m
        return m



def token_batches(document: Callable[[int], np.ndarray], eot_id: int, docs_per_batch: int = 256) -> Batches:
    """the writer's batches from `document(i)`, the token ids of document i (a function of i alone,
    so a resumed build reads the same stream), each non-empty document preceded by eot_id, as the
    tokenizer's encoder does. the stream has no end: give the build a train_tokens."""
    def batches(start: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        first = start
        while True:
            docs = [np.asarray(document(i), np.uint32) for i in range(first, first + docs_per_batch)]
            sizes = np.array([d.size + 1 if d.size else 0 for d in docs])  # an empty document adds nothing
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            parts = [np.concatenate([[eot_id], d]) for d in docs if d.size] or [np.zeros(0)]
            yield np.concatenate(parts).astype(np.uint32), starts
            first += docs_per_batch
    return batches


def build_token_documents(out_dir: Path, spec: BuildSpec, document: Callable[[int], np.ndarray]) -> dict:
    """a dataset from documents already given as token ids (the tests' synthetic datasets): the same
    Build as `nanopoor data`, so the shards, manifest and fingerprint are the ones it would write."""
    if spec.train_tokens is None:
        raise UserError("a build from generated documents needs train_tokens: the stream has no end")
    build = Build(out_dir, spec)
    return build.manifest if build.done else build.run(token_batches(document, spec.eot_id), describe=spec.dataset)
