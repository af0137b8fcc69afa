"""a reproduction and its signed statement: what a trusted person vouches for when they sign a re-run.

a run folder proves nothing against its maker, and neither does a second folder that says it
re-ran the first: both can be written by hand, hashes and all. what a forger cannot make is a
signature by a key in reproducers/allowed_signers (nanopoor.ssh_signature). after `nanopoor
reproduce runs/<id>` has re-run a committed run, its signer signs reproduction.json, a statement
that ties the re-run to the run it re-ran: both run ids and result digests, the record's digest,
seed, track and version, ranks, scale, both val losses and the harness version. the run folder's
own files are written once and hashed before the run ends; the statement and its signature
(reproduction.json.sig) come later, so they are the two files a run folder may hold beyond its
hashes. `verify` checks both (check_reproduction); the board counts a re-run (standing) only when
it is signed by a listed key and also lands within the track's tolerance under the current
harness, isolated."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

STATEMENT_FILE = "reproduction.json"
SIGNATURE_FILE = "reproduction.json.sig"
SIGNED_FILES = (STATEMENT_FILE, SIGNATURE_FILE)
SIGNERS_FILE = Path("reproducers/allowed_signers")
STATEMENT_KIND = "nanopoor reproduction"
STATEMENT_VERSION = 1
# what `nanopoor reproduce` keeps from the run it re-runs: a re-run that differs in one of these re-ran something else
SAME = ("record", "record_sha256", "seed", "track", "track_version", "nproc", "scale")


def _same_value(result: dict, key: str):
    """a result's value for a SAME key as the runner means it (a missing nproc or track_version is 1)."""
    value = result.get(key)
    return int(value or 1) if key in ("nproc", "track_version") else value


def statement(repro: dict, original: dict) -> dict:
    """the statement a signer signs about the re-run `repro` of `original` (both results)."""
    return {
        "statement": STATEMENT_KIND, "statement_version": STATEMENT_VERSION,
        "reproduction": {k: repro.get(k) for k in ("run_id", "result_sha256", "val_loss", "harness_version", "status")},
        "original": {k: original.get(k) for k in ("run_id", "result_sha256", "val_loss")},
        **{k: _same_value(repro, k) for k in SAME},
    }


def statement_bytes(st: dict) -> bytes:
    """the one byte form of a statement: the bytes signed and the bytes written."""
    return (json.dumps(st, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode()


def find_original(run_dir: Path, run_id: str, runs_dir: Path | None) -> Path | None:
    """the folder of the run a reproduction re-ran: beside it, else in runs_dir."""
    for folder in (Path(run_dir).parent, runs_dir):
        if folder is not None and run_id and (Path(folder) / run_id / "result.json").is_file():
            return Path(folder) / run_id
    return None


def identity_problems(repro: dict, original: dict) -> list[str]:
    """how a re-run differs from its original in what `nanopoor reproduce` keeps the same."""
    return [f"reproduces {original.get('run_id')}, but its {k} is {_same_value(repro, k)!r} and the original's "
            f"{_same_value(original, k)!r}" for k in SAME if _same_value(repro, k) != _same_value(original, k)]


def _differences(said, want, path: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, what the statement says, what the folders say) wherever they differ."""
    if isinstance(said, dict) and isinstance(want, dict):
        return [d for k in sorted(set(said) | set(want)) for d in _differences(said.get(k), want.get(k), f"{path}{k}.")]
    return [] if said == want else [(path.rstrip("."), said, want)]


def statement_problems(data: bytes, repro: dict, original: dict | None) -> list[str]:
    """reproduction.json must be the one byte form of what the two result.json files say."""
    try:
        said = json.loads(data)
    except ValueError as e:
        return [f"{STATEMENT_FILE} is not valid JSON ({e})"]
    if not isinstance(said, dict) or said.get("statement") != STATEMENT_KIND:
        return [f"{STATEMENT_FILE} is not a statement of a reproduction (no \"statement\": \"{STATEMENT_KIND}\")"]
    if data != statement_bytes(said):
        return [f"{STATEMENT_FILE} is not in its canonical form (sorted keys, two-space indent, ascii): rewritten after signing?"]
    want = statement(repro, original or {})
    if original is None:   # only the reproduction's half can be compared; the original's run id is in its result
        want["original"] = {**said.get("original", {}), "run_id": repro.get("reproduces")} if isinstance(said.get("original"), dict) else {}
    return [f"{STATEMENT_FILE}: {key} says {a!r}, but {'the original' if key.startswith('original.') else 'the run'}'s "
            f"result.json says {b!r}" for key, a, b in _differences(said, want)]


def check_reproduction(run_dir: Path, result: dict, runs_dir: Path | None,
                       signers: Path = SIGNERS_FILE) -> tuple[list[str], str | None]:
    """(problems, signer) of a run folder as a reproduction: a run that says it reproduces another
    must match it in SAME; a signed one must carry a statement that says what both folders say,
    signed by a key in `signers`. signer is the principal whose signature verified, else None."""
    from nanopoor.result import load_result
    from nanopoor.ssh_signature import SignatureError, verify

    run_dir = Path(run_dir)
    present = [f for f in SIGNED_FILES if (run_dir / f).is_file()]
    original_id = result.get("reproduces")
    if not original_id:
        return [f"{f} is in a run that reproduces nothing" for f in present], None
    found = find_original(run_dir, str(original_id), runs_dir)
    original = load_result(found) if found is not None else None
    problems = identity_problems(dict(result), dict(original)) if original is not None else []
    if not present:
        return problems, None
    if original is None:
        problems.append(f"reproduces {original_id}, which is in neither {run_dir.parent.as_posix()}/ nor "
                        f"{Path(runs_dir or run_dir.parent).as_posix()}/: its signed statement cannot be checked")
    if len(present) < 2:
        missing = next(f for f in SIGNED_FILES if f not in present)
        return problems + [f"{present[0]} is here without {missing}: sign with `nanopoor sign {run_dir.as_posix()} --key KEY`"], None
    data = (run_dir / STATEMENT_FILE).read_bytes()
    problems += statement_problems(data, dict(result), dict(original) if original is not None else None)
    try:
        signer = verify(data, (run_dir / SIGNATURE_FILE).read_text(errors="replace"), signers)
    except SignatureError as e:
        return problems + [f"{SIGNATURE_FILE} does not verify: {e}"], None
    return problems, signer


@dataclass
class Standing:
    """whether one re-run counts as a reproduction of its original on the board, and why not."""
    run_id: str                       # the re-run
    original: str                     # the run it re-ran
    signer: str | None                # the principal whose signature verified
    counts: bool = False
    official: bool = False            # counts, and both runs were made on the track's official hardware
    reasons: list[str] = field(default_factory=list)   # why it does not count


def standing(repro: dict, original: dict | None, problems: list[str], signer: str | None, track,
             harness_version: str | None = None) -> Standing:
    """a re-run counts when it verifies (which covers its signature and SAME), is signed by a listed
    key, completed, lands within the track's reproduce_within_nats of the original's val loss, was
    made by the current harness (supervisor.__version__), and ran isolated (harness 0.4 on)."""
    if harness_version is None:
        from supervisor import __version__ as harness_version
    s = Standing(str(repro.get("run_id")), str(repro.get("reproduces")), signer)
    if problems:
        s.reasons.append("does not verify")
    if signer is None and not problems:
        s.reasons.append("unsigned")
    if original is None:
        s.reasons.append("its original is not among the runs")
    if repro.get("status") != "completed":
        s.reasons.append(f"ended {repro.get('status')}")
    a, b = (original or {}).get("val_loss"), repro.get("val_loss")
    within = getattr(track, "reproduce_within_nats", None)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and within is not None:
        if abs(b - a) > within:
            s.reasons.append(f"val loss {b:.4f} against {a:.4f}: {abs(b - a):.4f} nats apart, more than the track's {within}")
    elif original is not None:
        s.reasons.append("no val loss to compare")
    if repro.get("harness_version") != harness_version:
        s.reasons.append(f"made by harness {repro.get('harness_version')}, not the current {harness_version}")
    if repro.get("isolated") is not True:
        s.reasons.append("not isolated")
    s.counts = not s.reasons
    s.official = s.counts and repro.get("class") == "official" and (original or {}).get("class") == "official"
    return s
