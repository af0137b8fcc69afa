"""shared fixtures: a tiny synthetic 'demo' dataset and a frozen copy of the tiny test record."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nanopoor.data.writer import BuildSpec, build_token_documents
from suite_progress import pytest_collection_finish, pytest_runtest_protocol  # noqa: F401  (hooks: what make test says as it runs)

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(__file__).resolve().parents[2] / "shared"
VOCAB = 100277
SHARD_TOKENS = 1 << 20  # one shard per split at the fixtures' sizes


def make_dataset(root: Path, dataset: str = "demo", val_tokens: int = 16384 + 1, train_tokens: int = 60_000,
                 seed: int = 0) -> Path:
    """a learnable synthetic dataset, built by the project's writer (the manifest and fingerprint
    `nanopoor data` would write): documents of 4-11 short repeating 'sentences' drawn from fifty,
    over a few hundred cl100k ids; one shard per split."""
    rng = np.random.default_rng(seed)
    phrases = [rng.integers(0, 400, size=rng.integers(3, 9)) for _ in range(50)]

    def document(i: int) -> np.ndarray:
        r = np.random.default_rng([seed, i])  # document i depends on i alone, as the writer needs
        return np.concatenate([phrases[k] for k in r.integers(0, len(phrases), size=r.integers(4, 12))])

    spec = BuildSpec(dataset, {"kind": "synthetic-test", "seed": seed}, val_tokens, train_tokens, SHARD_TOKENS,
                     "tests/conftest.py make_dataset")
    build_token_documents(root, spec, document)
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


def archive_selected(request) -> bool:
    """whether any test of the requesting fixture's module marked `archive` runs in this session: a
    module-scoped fixture then starts the archived cases' runs too, else only the others'."""
    return any(i.get_closest_marker("archive") for i in request.session.items if i.module is request.module)


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
