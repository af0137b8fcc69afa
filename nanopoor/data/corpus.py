"""the docs corpus that ships with the project (corpus/docs): checked, then built into data/docs.

the corpus folder holds the compressed source files, SHA256SUMS (one `<sha256>  <file>` line per
file) and build.json: the file order, shuffle seed, val and shard sizes the committed docs runs
were built with, and the fingerprint that build gives. `nanopoor data docs` checks every file
against SHA256SUMS before it reads one, builds through the same path as `nanopoor data files`,
and compares the result's fingerprint with build.json, so a docs row can be re-checked from a
fresh clone, offline.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nanopoor.errors import UserError

CORPUS_DIR = Path("corpus/docs")
SUMS = "SHA256SUMS"
BUILD = "build.json"
RESTORE = "restore it with `git checkout -- {dir}`"


def read_sums(corpus: Path) -> dict[str, str]:
    """{file name: sha256} from SHA256SUMS, in the order written."""
    path = corpus / SUMS
    if not path.is_file():
        raise UserError(f"{path} is missing: the docs corpus ships with the project; {RESTORE.format(dir=corpus)}")
    sums: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            raise UserError(f"{path}:{n}: not a `<sha256>  <file>` line; {RESTORE.format(dir=corpus)}")
        sums[name.strip()] = digest.lower()
    return sums


def read_build(corpus: Path) -> dict:
    path = corpus / BUILD
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing: {RESTORE.format(dir=corpus)}") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid json ({e}): {RESTORE.format(dir=corpus)}") from None
    for key in ("dataset", "files", "seed", "val_tokens", "shard_tokens"):
        if key not in spec:
            raise UserError(f"{path} lacks '{key}': {RESTORE.format(dir=corpus)}")
    return spec


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def check_corpus(corpus: Path = CORPUS_DIR) -> list[Path]:
    """the corpus files in build order, each present and matching SHA256SUMS; the first file
    that is missing, unlisted or corrupt is one UserError naming it."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise UserError(f"no docs corpus at {corpus}: run from the project's root, or pass --corpus")
    sums, spec = read_sums(corpus), read_build(corpus)
    paths = []
    for name in spec["files"]:
        p = corpus / name
        if name not in sums:
            raise UserError(f"{p} is not listed in {corpus / SUMS}: {RESTORE.format(dir=corpus)}")
        if not p.is_file():
            raise UserError(f"{p} is missing: {RESTORE.format(dir=corpus)}")
        got = _sha256(p)
        if got != sums[name]:
            raise UserError(f"{p} is corrupt (sha256 {got[:12]}…, SHA256SUMS says {sums[name][:12]}…): "
                            f"{RESTORE.format(dir=corpus)}")
        paths.append(p)
    return paths


def build_docs(out: Path, corpus: Path = CORPUS_DIR, *, progress: bool = False, command: str = "") -> dict:
    """check the corpus, build it into `out`, and check the fingerprint against build.json."""
    from nanopoor.data.sources import build_files

    paths = check_corpus(corpus)
    spec = read_build(Path(corpus))
    m = build_files(paths, out, dataset=spec["dataset"], val_tokens=spec["val_tokens"],
                    shard_tokens=spec["shard_tokens"], seed=spec["seed"], progress=progress,
                    command=command or f"nanopoor data docs --out {out}")
    want = spec.get("fingerprint")
    if want and m["fingerprint"] != want:
        raise UserError(f"{out} was built, but its fingerprint {m['fingerprint'][:16]} is not the "
                        f"{want[:16]} of {Path(corpus) / BUILD} (the one the committed runs used): the tokenizer "
                        "differs (check the tiktoken version); its runs will not be ranked with the committed ones")
    return m
