"""shared fixtures: a tiny synthetic 'demo' dataset and a frozen copy of the tiny test record."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.shards import write_shard

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared"
VOCAB = 100277


def make_dataset(root: Path, dataset: str = "demo", val_tokens: int = 16384 + 1, train_tokens: int = 60_000,
                 seed: int = 0) -> Path:
    """a learnable synthetic stream: short repeating 'sentences' over a few hundred ids."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(0, 400, size=rng.integers(3, 9)) for _ in range(50)]

    def stream(n):
        out = []
        while sum(len(p) for p in out) < n:
            out.append(phrases[rng.integers(0, len(phrases))])
            out.append(np.array([100257]))
        return np.concatenate(out)[:n]

    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for split, n in (("val", val_tokens), ("train", train_tokens)):
        toks = stream(n)
        f = f"{split}_000000.bin"
        write_shard(root / f, toks, VOCAB)
        entries[split] = [{"file": f, "tokens": int(n), "sha256": hashlib.sha256((root / f).read_bytes()).hexdigest(), "documents": None}]
    fp = hashlib.sha256(("cl100k_base" + str(VOCAB) + "".join(e[0]["sha256"] for e in entries.values())).encode()).hexdigest()
    manifest = {"schema_version": 1, "dataset": dataset, "tokenizer": "cl100k_base", "vocab_size": VOCAB, "eot_id": 100257,
                "source": {"kind": "synthetic-test"}, "val": entries["val"], "train": entries["train"],
                "val_tokens": val_tokens, "train_tokens": train_tokens, "fingerprint": fp, "complete": True}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "demo")


def copy_record(src: Path, dst_root: Path, name: str | None = None, args: dict | None = None, freeze: bool = True) -> Path:
    """a copy of a record in a temp folder, optionally with changed smoke args, then frozen."""
    from nanopoor.records import freeze as do_freeze

    name = name or src.name
    dst = dst_root / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    toml = dst / "record.toml"
    text = toml.read_text().replace(f'name = "{src.name}"', f'name = "{name}"')
    if args:
        import re
        extra = ", ".join(f"{k} = {json.dumps(v)}" for k, v in args.items())
        text = re.sub(r"(\[scales\.smoke\][^\[]*?args = \{)([^}]*)\}", lambda m: f"{m.group(1)}{m.group(2)}, {extra} }}", text, count=1, flags=re.S)
    toml.write_text(text)
    if freeze:
        do_freeze(dst)
    return dst


def pytest_collection_modifyitems(config, items):
    """the red-team cases each start a real run of a cheating record: the whole module is slow."""
    redteam = Path(__file__).parent / "redteam"
    for item in items:
        if redteam in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def app():
    """the real root cli (its group turns a UserError into one line and exit 1)."""
    from nanopoor.cli import app as root

    return root


@pytest.fixture
def tiny_record(tmp_path) -> Path:
    return copy_record(FIXTURES / "records" / "tiny", tmp_path / "records")
