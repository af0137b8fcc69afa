"""`nanopoor data audit`: what a dataset (or one shard) really contains.

one sequential read of every shard gives: header/size consistency, the file's sha256 against the
manifest, the largest id against the vocabulary, the share of id 0 and of the most common id, the
share of 0/1 tokens on even and odd positions (uint32 tokens read as uint16 make every second token
0 or 1: the seed project's defect) and, split at eot, a hash of every document, to find documents
that are in both val and train. memory stays flat: the shards are read in fixed-size chunks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.shards import ShardError, read_header
from nanopoor.data.manifest import MANIFEST, fingerprint, load_manifest
from nanopoor.data.shard_scan import CHUNK_TOKENS, DocHashes, ShardScan, merge_scan, scan_shard
from nanopoor.data.tokenizer import EOT_ID, TOKENIZER_NAME, VOCAB_SIZE
from nanopoor.errors import UserError

__all__ = ["CHUNK_TOKENS", "DocHashes", "ShardScan", "audit", "audit_dataset", "audit_shard", "render", "scan_shard"]

MAX_ID0_SHARE = 0.05            # real cl100k text: id 0 ('!') is well under 1%
MAX_TOP_SHARE = 0.30            # one id making up more than this is not natural text
MAX_ALTERNATING = 0.90          # share of 0/1 tokens on even or odd positions
MAX_OVERLAP_SHARE = 0.001       # share of val tokens that sit in documents also in train
GPT2_VOCAB, GPT2_EOT = 50257, 50256


class Report:
    def __init__(self, path: Path, kind: str):
        self.data: dict = {"path": str(path), "kind": kind, "ok": True, "checks": [], "stats": {}, "shards": []}

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.data["checks"].append({"check": name, "ok": bool(ok), "detail": detail})
        if not ok:
            self.data["ok"] = False

    @property
    def ok(self) -> bool:
        return self.data["ok"]


def _token_text(tid: int, vocab_size: int) -> str:
    if vocab_size != VOCAB_SIZE:
        return ""
    try:
        from nanopoor.data.tokenizer import get_encoding
        return repr(get_encoding().decode_single_token_bytes(tid).decode("utf-8", "replace"))
    except Exception:  # an id the tokenizer does not know
        return ""


def _stat_checks(rep: Report, total: ShardScan, vocab_size: int, vocab_note: str, per_shard: list[tuple[str, ShardScan]]) -> None:
    n = total.tokens
    st = rep.data["stats"]
    st["tokens"] = n
    st["max_id"] = total.max_id
    st["vocab_size"] = vocab_size
    if n == 0:
        rep.check("tokens", False, "no tokens at all")
        return
    rep.check("ids", total.max_id < vocab_size,
              f"largest id {total.max_id} {'<' if total.max_id < vocab_size else '>='} vocabulary {vocab_size}{vocab_note}"
              + (f"; {total.out_of_range:,} ids out of range" if total.out_of_range else ""))
    id0 = int(total.counts[0]) / n
    top = int(total.counts.argmax())
    top_share = int(total.counts[top]) / n
    st.update(id0_share=round(id0, 6), top_id=top, top_share=round(top_share, 6))
    rep.check("id 0", id0 <= MAX_ID0_SHARE, f"id 0 is {id0:.2%} of tokens (at most {MAX_ID0_SHARE:.0%} expected)")
    txt = _token_text(top, vocab_size)
    rep.check("most common id", top_share <= MAX_TOP_SHARE,
              f"most common id {top}{' ' + txt if txt else ''} is {top_share:.2%} of tokens (at most {MAX_TOP_SHARE:.0%} expected)")
    worst = None
    for name, s in per_shard:
        for share, side in ((s.odd01 / s.odd if s.odd else 0.0, "odd"), (s.even01 / s.even if s.even else 0.0, "even")):
            if worst is None or share > worst[0]:
                worst = (share, side, name, s.tokens)
    share, side, name, ntok = worst
    st["alternating_01_share"] = round(share, 6)
    if share > MAX_ALTERNATING and ntok >= 16:
        rep.check("alternating 0/1", False,
                  f"{share:.1%} of the {side} positions of {name} are token 0 or 1: every second token is 0 or 1, "
                  "the signature of uint32 tokens read as uint16 (the seed project's defect); rebuild with `nanopoor data`")
    else:
        rep.check("alternating 0/1", True, f"at most {share:.1%} of even or odd positions are token 0 or 1")


def audit_shard(path: Path) -> dict:
    rep = Report(path, "shard")
    try:
        h = read_header(path)
    except ShardError as e:
        rep.check("header", False, str(e))
        return rep.data
    if h.format == "modded-nanogpt":
        vocab, note = GPT2_VOCAB, " (gpt-2, modded-nanogpt shard)"
    else:
        vocab, note = h.vocab_size, ""
    rep.check("header", True, f"{h.format} shard v{h.version}: {h.tokens:,} tokens × {h.bytes_per_token} B, "
              f"vocabulary {h.vocab_size or 'unstated'}; the file size matches")
    bound = max(vocab, 1)
    s = scan_shard(path, h, bound)
    rep.data["shards"].append({"file": path.name, "tokens": s.tokens, "sha256": s.sha256})
    _stat_checks(rep, s, vocab, note, [(path.name, s)])
    return rep.data


def audit_dataset(path: Path, *, hashes: bool = True) -> dict:
    rep = Report(path, "dataset")
    try:
        m = load_manifest(path)
    except UserError as e:
        rep.check("manifest", False, str(e))
        return rep.data
    vocab, eot = int(m["vocab_size"]), int(m.get("eot_id", EOT_ID))
    rep.data.update(dataset=m["dataset"], tokenizer=m["tokenizer"], fingerprint=m["fingerprint"])
    _manifest_check(rep, m, vocab)
    scan = _DatasetScan(DocHashes(eot, collect=True), DocHashes(eot, collect=False))
    for split in ("val", "train"):
        if split == "train":
            scan.val_docs.end()
            scan.train_docs.val = scan.val_docs.seen
        for e in m[split]:
            _scan_entry(rep, scan, Path(path), split, e, vocab, hashes)
    scan.train_docs.end()
    _shard_checks(rep, scan, len(m["val"]) + len(m["train"]), hashes)
    if scan.per_shard:
        _stat_checks(rep, scan.total, vocab, "", scan.per_shard)
    _overlap_check(rep, scan.val_docs, scan.train_docs)
    return rep.data


def _manifest_check(rep: Report, m: dict, vocab: int) -> None:
    """the manifest agrees with itself: split totals, the fingerprint, the tokenizer's vocabulary."""
    problems = []
    for split in ("val", "train"):
        if sum(e["tokens"] for e in m[split]) != m[f"{split}_tokens"]:
            problems.append(f"{split}_tokens {m[f'{split}_tokens']} is not the sum of its shards")
    if fingerprint(m["tokenizer"], vocab, m["val"], m["train"]) != m["fingerprint"]:
        problems.append("the fingerprint does not match the shards' sha256")
    if m["tokenizer"] == TOKENIZER_NAME and vocab != VOCAB_SIZE:
        problems.append(f"vocab_size {vocab} is not {TOKENIZER_NAME}'s {VOCAB_SIZE}")
    rep.check("manifest", not problems, "; ".join(problems) or
              f"{m['dataset']}: {len(m['val'])} val + {len(m['train'])} train shards, "
              f"{m['val_tokens']:,} + {m['train_tokens']:,} tokens, fingerprint {m['fingerprint'][:12]}")


@dataclass
class _DatasetScan:
    """what the read of every shard of a dataset has gathered so far."""
    val_docs: DocHashes
    train_docs: DocHashes
    total: ShardScan = field(default_factory=ShardScan)
    per_shard: list[tuple[str, ShardScan]] = field(default_factory=list)
    bad_headers: list[str] = field(default_factory=list)
    bad_hashes: list[str] = field(default_factory=list)


def _scan_entry(rep: Report, scan: _DatasetScan, path: Path, split: str, e: dict, vocab: int, hashes: bool) -> None:
    """one shard of the manifest: its header against the manifest, then one read of it."""
    p = path / e["file"]
    try:
        h = read_header(p)
    except ShardError as err:
        scan.bad_headers.append(str(err))
        return
    if h.vocab_size != vocab:
        scan.bad_headers.append(f"shard {p}: vocabulary {h.vocab_size} does not match the manifest's {vocab}")
    if h.tokens != e["tokens"]:
        scan.bad_headers.append(f"shard {p}: {h.tokens:,} tokens, the manifest says {e['tokens']:,}")
    s = scan_shard(p, h, max(vocab, 1), scan.val_docs if split == "val" else scan.train_docs)
    if hashes and s.sha256 != e["sha256"]:
        scan.bad_hashes.append(e["file"])
    rep.data["shards"].append({"split": split, "file": e["file"], "tokens": s.tokens, "sha256": s.sha256})
    scan.per_shard.append((e["file"], s))
    merge_scan(scan.total, s)


def _shard_checks(rep: Report, scan: _DatasetScan, n_shards: int, hashes: bool) -> None:
    """the shards' headers, and (when asked) their sha256 against the manifest."""
    bad_headers, bad_hashes = scan.bad_headers, scan.bad_hashes
    rep.check("shards", not bad_headers, "; ".join(bad_headers[:3]) + (f" (and {len(bad_headers) - 3} more)" if len(bad_headers) > 3 else "")
              if bad_headers else f"{n_shards} shards: headers match file sizes, token counts and vocabulary match the manifest")
    if hashes:
        unread = n_shards - len(scan.per_shard)
        if bad_hashes:
            detail = f"sha256 differs from the manifest for {', '.join(bad_hashes)}"
        elif unread:
            detail = f"{unread} of {n_shards} shards could not be read, so their sha256 was not checked"
        else:
            detail = f"all {n_shards} shards match their sha256 in the manifest"
        rep.check("sha256", not bad_hashes and not unread, detail)


def _overlap_check(rep: Report, val_docs: DocHashes, train_docs: DocHashes) -> None:
    """the share of val tokens in documents that are also in train."""
    shared = train_docs.shared_docs
    shared_tokens = sum(val_docs.seen[d] for d in shared)
    val_tok = max(1, sum(val_docs.seen.values()))
    rep.data["stats"]["overlap"] = {"val_documents": val_docs.documents, "train_documents": train_docs.documents,
                                    "shared_documents": len(shared), "shared_val_tokens": shared_tokens}
    share = shared_tokens / val_tok
    if not val_docs.documents or not train_docs.documents:  # a check with nothing to compare did not run
        rep.check("train/val overlap", False, f"not checked: {val_docs.documents:,} val and {train_docs.documents:,} train "
                                              "documents could be read (a split is missing, unreadable or empty)")
    else:
        rep.check("train/val overlap", share <= MAX_OVERLAP_SHARE,
                  f"{len(shared)} of {val_docs.documents:,} val documents ({share:.3%} of val tokens) also appear in train "
                  f"(checked against {train_docs.documents:,} train documents; at most {MAX_OVERLAP_SHARE:.1%} allowed)")


def audit(path: str | os.PathLike, *, hashes: bool = True) -> dict:
    """audit a dataset folder (with manifest.json) or a single shard file; report['ok'] is the verdict."""
    p = Path(path)
    if p.is_file():
        return audit_shard(p)
    if p.is_dir() and not (p / MANIFEST).exists() and not (p / "progress.json").exists():
        shards = sorted(p.glob("*.bin"))
        if shards:  # a folder of shards without a manifest: audit each
            rep = Report(p, "folder")
            rep.check("manifest", False, f"no {MANIFEST} in {p}; auditing its {len(shards)} .bin files one by one")
            for s in shards:
                sub = audit_shard(s)
                for c in sub["checks"]:
                    if not c["ok"]:
                        rep.check(c["check"], False, f"{s.name}: {c['detail']}")
                rep.data["shards"].append({"file": s.name, "ok": sub["ok"], "stats": sub["stats"]})
            return rep.data
    if not p.exists():
        raise UserError(f"no dataset or shard at {p}")
    return audit_dataset(p, hashes=hashes)


def render(report: dict) -> str:
    lines = [f"audit of {report['kind']} {report['path']}"
             + (f" ({report['dataset']}, {report['tokenizer']})" if "dataset" in report else "")]
    for c in report["checks"]:
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'}  {c['check']}: {c['detail']}")
    bad = sum(1 for c in report["checks"] if not c["ok"])
    lines.append("no findings" if report["ok"] else f"{bad} finding{'s' * (bad > 1)}")
    return "\n".join(lines)
