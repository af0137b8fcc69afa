"""datasets: token shards plus a manifest, built from fineweb-edu, local files or the embedded demo.

    build_demo(out_dir) -> Path          the demo track's dataset (offline, deterministic, idempotent)
    ensure_dataset(path) -> dict         the manifest of a usable dataset, or a one-line UserError
    load_manifest(path) -> dict          the manifest of a complete dataset, or a one-line UserError
    build_fineweb_edu(out_dir, …)        stream HuggingFaceFW/fineweb-edu sample-10BT
    build_files(paths, out_dir, …)       import .parquet / .jsonl / .jsonl.xz / .txt, shuffled
    audit(path) -> dict                  what a dataset or shard really contains

the names load on first use, so importing a light submodule (defaults) stays cheap.
"""
import importlib

_WHERE = {
    "audit": "nanopoor.data.audit",
    "build_demo": "nanopoor.data.demo",
    "ensure_dataset": "nanopoor.data.manifest",
    "load_manifest": "nanopoor.data.manifest",
    "build_files": "nanopoor.data.sources",
    "build_fineweb_edu": "nanopoor.data.sources",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'nanopoor.data' has no attribute {name!r}")
