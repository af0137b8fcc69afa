"""`nanopoor data …`: build datasets (fineweb-edu, local files, the demo) and audit them."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from nanopoor.data.defaults import (
    DEFAULT_FINEWEB_TRAIN_TOKENS, DEFAULT_SHARD_TOKENS, DEFAULT_SHUFFLE_SEED,
)
from nanopoor.cli.options import format_option
from nanopoor.errors import UserError
from nanopoor.output import Format, print_json

data_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="build token datasets (shards + manifest) and audit them")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _progress() -> bool:
    return sys.stderr.isatty()


def _summary(m: dict, out: Path) -> None:
    typer.echo(f"{m['dataset']} at {out}: {m['val_tokens']:,} val + {m['train_tokens']:,} train tokens "
               f"in {len(m['val']) + len(m['train'])} shards, fingerprint {m['fingerprint'][:16]}")


def _interruptible(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except KeyboardInterrupt:
        raise UserError("interrupted: what was finished is kept; run the same command again to resume") from None


@data_app.command("fineweb-edu")
def fineweb_edu(
    out: Path = typer.Option(Path("data/fineweb-edu"), "--out", help="dataset folder"),
    train_tokens: int = typer.Option(DEFAULT_FINEWEB_TRAIN_TOKENS, "--train-tokens", min=0,
                                     help="train tokens after the val split; 0: the val split only"),
    shard_tokens: int = typer.Option(DEFAULT_SHARD_TOKENS, "--shard-tokens", min=1, help="tokens per shard"),
    revision: str = typer.Option(None, "--revision", help="dataset revision (git commit or branch) to stream"),
):
    """stream FineWeb-Edu sample-10BT, tokenize with cl100k_base, write val (its first 10,485,760
    tokens) then train shards. interrupted? run the same command again: it resumes."""
    from nanopoor.data.sources import build_fineweb_edu
    from nanopoor.data.writer import command_line

    m = _interruptible(build_fineweb_edu, out, train_tokens=train_tokens, shard_tokens=shard_tokens,
                       revision=revision, progress=_progress(), command=command_line())
    _summary(m, out)


@data_app.command("files")
def files(
    paths: list[Path] = typer.Argument(..., help=".parquet (text column), .jsonl / .jsonl.xz (text field), .txt (one document each), or folders of them"),
    dataset: str = typer.Option("local", "--dataset", help="dataset name; a track's name (e.g. docs) sets its val size"),
    val_tokens: int = typer.Option(None, "--val-tokens", min=1, help="val split size [default: the track's val_tokens, else 524288]"),
    out: Path = typer.Option(None, "--out", help="dataset folder [default: data/<dataset>]"),
    shard_tokens: int = typer.Option(DEFAULT_SHARD_TOKENS, "--shard-tokens", min=1, help="tokens per shard"),
    seed: int = typer.Option(DEFAULT_SHUFFLE_SEED, "--seed", help="shuffle seed (recorded in the manifest)"),
):
    """import local files: documents are shuffled with a fixed seed, then split into val and train."""
    from nanopoor.data.sources import build_files
    from nanopoor.data.writer import command_line

    out = out or Path("data") / dataset
    m = _interruptible(build_files, paths, out, dataset=dataset, val_tokens=val_tokens, shard_tokens=shard_tokens,
                       seed=seed, progress=_progress(), command=command_line())
    _summary(m, out)


@data_app.command("docs")
def docs(
    out: Path = typer.Option(Path("data/docs"), "--out", help="dataset folder"),
    corpus: Path = typer.Option(Path("corpus/docs"), "--corpus", help="the corpus folder (SHA256SUMS, build.json, *.jsonl.xz)"),
):
    """build the docs track's dataset from the corpus shipped in corpus/docs, offline: every file
    is checked against SHA256SUMS first, and the result must have the fingerprint of build.json
    (the dataset the committed docs runs used)."""
    from nanopoor.data.corpus import build_docs
    from nanopoor.data.writer import command_line

    m = _interruptible(build_docs, out, corpus, progress=_progress(), command=command_line())
    _summary(m, out)


@data_app.command("demo")
def demo(out: Path = typer.Option(Path("data/demo"), "--out", help="dataset folder")):
    """build the embedded demo dataset: generated offline, the same on every machine (a few seconds)."""
    from nanopoor.data.demo import build_demo
    from nanopoor.data.manifest import load_manifest

    _interruptible(build_demo, out, progress=_progress())
    _summary(load_manifest(out), out)


@data_app.command("audit")
def audit(
    path: Path = typer.Argument(..., help="a dataset folder or a single shard file"),
    fmt: Format = format_option(),
    no_hash: bool = typer.Option(False, "--no-hash", help="skip comparing each shard's sha256 with the manifest"),
):
    """check headers against file sizes, ids against the vocabulary, token statistics (share of id 0,
    of the most common id, every-second-token 0/1) and train/val document overlap. exit 1 on a finding."""
    from nanopoor.data.audit import audit as run_audit, render

    report = run_audit(path, hashes=not no_hash)
    if fmt == Format.json:
        print_json(report)
    else:
        typer.echo(render(report))
    if not report["ok"]:
        raise typer.Exit(1)
