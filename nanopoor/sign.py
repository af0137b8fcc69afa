"""sign a reproduction: the statement that ties a re-run to the run it re-ran, signed with a key.

the re-run is usually made on a rented GPU machine that never holds the signer's private key, so
signing is its own step, on the signer's machine, after the run folder has come back: `nanopoor
sign runs/<id> --key KEY` (or `nanopoor reproduce runs/<id> --sign KEY` where the key is at
hand). only a folder that verifies and re-ran its original as `nanopoor reproduce` does can be
signed; the report says whether the board will count it and, if not, why."""
from __future__ import annotations

from pathlib import Path

from nanopoor.errors import UserError
from nanopoor.reproduction import (SIGNATURE_FILE, SIGNED_FILES, SIGNERS_FILE, STATEMENT_FILE, find_original,
                                   identity_problems, standing, statement, statement_bytes)


def sign_run(run_dir: Path, key: Path, *, runs_dir: Path | None = None, records_dir: Path = Path("records"),
             signers: Path = SIGNERS_FILE) -> dict:
    """write reproduction.json and its signature by `key` into the reproduction run_dir; return what
    was signed, by whom (the principal in `signers`, None for an unlisted key) and the board's standing."""
    from nanopoor import ssh_signature
    from nanopoor.result import load_result
    from nanopoor.verify import RecordDigests, check_run
    from supervisor.tracks import load_tracks

    run_dir = Path(run_dir)
    if not (run_dir / "result.json").is_file():
        raise UserError(f"no result.json in {run_dir}: give the run folder of a reproduction (runs/<run_id>)")
    repro = load_result(run_dir)
    original_id = repro.get("reproduces")
    if not original_id:
        raise UserError(f"{run_dir} reproduces no run (its result.json has no `reproduces`): only a re-run made by "
                        f"`nanopoor reproduce runs/<run_id>` can be signed")
    taken = [f for f in SIGNED_FILES if (run_dir / f).exists()]
    if taken:
        raise UserError(f"{run_dir} already holds {', '.join(taken)}: a run folder is signed once "
                        f"(remove {' and '.join(taken)} to sign it anew)")
    found = find_original(run_dir, str(original_id), runs_dir)
    if found is None:
        where = runs_dir.as_posix() if runs_dir is not None else run_dir.parent.as_posix()
        raise UserError(f"{run_dir.name} reproduces {original_id}, which is not beside it nor in {where}/: "
                        f"pass --runs DIR with the original's folder")
    original = load_result(found)
    mismatch = identity_problems(dict(repro), dict(original))
    if mismatch:
        raise UserError(f"{run_dir.name} {mismatch[0]}: it is not a reproduction of that run, and cannot be signed as one")
    tracks = load_tracks()
    check = check_run(run_dir, tracks, RecordDigests(records_dir), runs_dir=runs_dir, signers=signers)
    if not check.ok:
        raise UserError(f"{run_dir} does not verify ({check.problems[0]}): only a folder that verifies can be signed; "
                        f"see `nanopoor verify {run_dir.as_posix()}`")
    data = statement_bytes(statement(dict(repro), dict(original)))
    signature = ssh_signature.sign(data, key)   # before anything is written: a failed signing leaves the folder as it was
    (run_dir / STATEMENT_FILE).write_bytes(data)
    (run_dir / SIGNATURE_FILE).write_text(signature)
    try:
        signer, untrusted = ssh_signature.verify(data, signature, signers), None
    except ssh_signature.SignatureError as e:
        signer, untrusted = None, f"{SIGNATURE_FILE} does not verify yet: {e}: a maintainer adds the key's line (docs/reproducers.md)"
    where = standing(dict(repro), dict(original), [untrusted] if untrusted else [], signer, tracks.get(str(repro.get("track"))))
    return {"run": repro.get("run_id"), "original": original.get("run_id"), "signer": signer, "key": str(key),
            "files": [(run_dir / f).as_posix() for f in SIGNED_FILES], "statement": data.decode(),
            "counts": where.counts, "official": where.official,
            "reasons": ([untrusted] if untrusted else []) + [r for r in where.reasons if r != "does not verify"]}
