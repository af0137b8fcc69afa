"""signed reproductions: a re-run counts on the board only when a key in reproducers/allowed_signers
signed a statement tying it to the run it re-ran, and it matches that run, lands within the track's
tolerance, under the current harness, isolated. the forged pair a careful cheater makes from an
honest run (and its variants) fails verify and never shows as reproduced. no run is started: every
folder is synthetic (fixtures_runs), every key made here with ssh-keygen."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures_runs import H100, make_record, make_run, make_submission
from nanopoor.result import files_digest, write_result
from supervisor import __version__ as HARNESS

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
CURRENT = {"harness_version": HARNESS, "isolated": True}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """private keys: alice's is listed in the tree's allowed_signers, mallory's is not."""
    folder = tmp_path_factory.mktemp("keys")
    for name in ("alice", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)], check=True)
    return {name: folder / name for name in ("alice", "mallory")}


@pytest.fixture
def tree(tmp_path, monkeypatch, keys) -> dict:
    """a record, its three H100 runs, and an allowed_signers file that lists alice."""
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    originals = make_submission(Path("runs"), rec, [3.20, 3.21, 3.19], [800e3, 810e3, 790e3], gpu=H100)
    Path("reproducers").mkdir()
    public = (keys["alice"].with_suffix(".pub")).read_text().split()[:2]
    Path("reproducers/allowed_signers").write_text(f'alice namespaces="nanopoor-reproduction" {" ".join(public)}\n')
    return {"record": rec, "originals": originals}


def rerun(tree: dict, which: int = 1, *, seed_delta: int = 0, val_delta: float = 0.004, **overrides) -> Path:
    """a re-run of one original as `nanopoor reproduce` makes it (same seed and hardware), from the current harness."""
    original = json.loads((tree["originals"][which] / "result.json").read_text())
    return make_run(Path("runs"), tree["record"], seed=original["seed"] + seed_delta, val_loss=original["val_loss"] + val_delta,
                    gpu=overrides.pop("gpu", H100), run_id=f"20250309-r-rerun-of-{which}", finished_at="2025-03-09T10:00:00+00:00",
                    overrides={"reproduces": original["run_id"], **CURRENT, **overrides})


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def sign(app, run: Path, key: Path):
    res = invoke(app, "sign", run, "--key", key, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def verify(app, target="runs") -> dict[str, dict]:
    res = invoke(app, "verify", target, "--format", "json")
    return {c["subject"]: c for c in json.loads(res.output)["checks"]}


def board(app) -> tuple[str, dict]:
    res = invoke(app, "leaderboard", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = [r for r in json.loads(Path("leaderboard.json").read_text()) if r["kind"] == "submission"]
    return Path("leaderboard.md").read_text(), row


def assert_one_line(res, *needles):
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]


# -- a signed reproduction, honestly made ----------------------------------------------------------
def test_a_signed_reproduction_names_its_signer_on_the_board(tree, keys, app):
    run = rerun(tree)
    report = sign(app, run, keys["alice"])
    assert report["signer"] == "alice" and report["counts"] and not report["official"] and report["reasons"] == []
    statement = json.loads((run / "reproduction.json").read_text())
    assert statement["original"]["run_id"] == tree["originals"][1].name and statement["reproduction"]["run_id"] == run.name
    assert statement["seed"] == json.loads((run / "result.json").read_text())["seed"]
    before = sorted((p, p.stat().st_mtime_ns) for p in Path(".").rglob("*"))
    checks = verify(app)
    assert sorted((p, p.stat().st_mtime_ns) for p in Path(".").rglob("*")) == before   # reading never writes
    assert all(c["ok"] for c in checks.values()) and checks[run.name]["signer"] == "alice"
    assert "ok (signed by alice)" in invoke(app, "verify", run).output
    md, row = board(app)
    assert row["tier"] == "reproduced by alice" and row["reproduced"] == "alice" and row["reproduced_by"] == f"runs/{run.name}"
    assert row["n_runs"] == 3 and row["verdict"] == "verified"   # the re-run is no fourth run of the submission
    assert f"| reproduced by alice ([{run.name}](runs/{run.name})) | verified |" in md
    assert invoke(app, "leaderboard", "--check").exit_code == 0


def test_a_reproduction_on_the_official_hardware_makes_the_row_official(tmp_path, monkeypatch, keys, app):
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    originals = make_submission(Path("runs"), rec, [3.20, 3.21, 3.19], [800e3, 810e3, 790e3])   # one Tesla T4 each
    Path("reproducers").mkdir()
    Path("reproducers/allowed_signers").write_text(
        'alice namespaces="nanopoor-reproduction" ' + " ".join(keys["alice"].with_suffix(".pub").read_text().split()[:2]) + "\n")
    cpu = rerun({"record": rec, "originals": originals}, gpu=None)   # reproduces the loss, not on the official hardware
    assert sign(app, cpu, keys["alice"])["official"] is False
    t4 = make_run(Path("runs"), rec, seed=102, val_loss=3.212, run_id="20250309-r-t4", finished_at="2025-03-09T11:00:00+00:00",
                  overrides={"reproduces": originals[1].name, **CURRENT})
    assert sign(app, t4, keys["alice"])["official"] is True
    md, row = board(app)
    assert row["tier"] == "official" and row["reproduced"] == "alice" and row["reproduced_by"] == f"runs/{cpu.name} runs/{t4.name}"
    assert f"| official, reproduced by alice ([{cpu.name}](runs/{cpu.name}) [{t4.name}](runs/{t4.name})) | verified |" in md


@pytest.mark.parametrize("overrides, reason", [
    ({"val_delta": 0.05}, "3.2600 against 3.2100: 0.0500 nats apart, more than the track's 0.02"),
    ({"harness_version": "0.3.1"}, f"made by harness 0.3.1, not the current {HARNESS}"),
    ({"isolated": False}, "not isolated"),
    ({"isolated": None}, "not isolated"),   # a result written before harness 0.4 has no such key
])
def test_a_signed_reproduction_that_does_not_count_says_why(tree, keys, app, overrides, reason):
    run = rerun(tree, **overrides)
    report = sign(app, run, keys["alice"])
    assert report["signer"] == "alice" and not report["counts"] and any(reason in r for r in report["reasons"]), report
    assert all(c["ok"] for c in verify(app).values())   # an honest failure to reproduce is no forgery
    md, row = board(app)
    assert row["tier"] == "self-reported" and row["reproduced"] == "no" and reason in row["reproduction_notes"]
    assert f"| self-reported (re-runs that do not count: runs/{run.name}: " in md


# -- forgeries ------------------------------------------------------------------------------------------
def rehash(run_dir: Path, **changes) -> None:
    """what a forger who has read nanopoor.result does after editing files: recompute every digest."""
    result = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").unlink()
    result.pop("result_sha256")
    write_result(run_dir, {**result, **changes, "files": files_digest(run_dir)})


def renamed_copy(src: Path, dst: Path, **changes) -> None:
    """a copy of a run folder under another run id, re-hashed."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "run_id": dst.name}, sort_keys=True))
    rehash(dst, run_id=dst.name, **changes)


def halve_everywhere_verify_read(src: Path, dst: Path) -> None:
    """the copy of docs/trust.md's D6: train time halved in result.json, run_end, the claim's eval and log.txt."""
    shutil.copytree(src, dst)
    ms = json.loads((dst / "result.json").read_text())["train_time_ms"]
    events = [json.loads(line) for line in (dst / "events.jsonl").read_text().splitlines()]
    for e in events:
        if e.get("train_time_ms") == ms and e["type"] in ("run_end", "eval"):
            e["train_time_ms"] = ms / 2
    (dst / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (dst / "log.txt").write_text((dst / "log.txt").read_text().replace(f"train_time: {ms / 1000:.1f}s", f"train_time: {ms / 2000:.1f}s"))
    config = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**config, "run_id": dst.name}, sort_keys=True))
    rehash(dst, run_id=dst.name, train_time_ms=ms / 2)


def test_the_forged_pair_fails_verify_and_is_never_reproduced(tmp_path, monkeypatch, keys, app):
    """from an honest run: a copy with the train time halved in every file verify read, and a second
    copy posing as its reproduction (new run id, `reproduces` the first, another machine), both
    re-hashed; then signed with the forger's own key, which no maintainer listed."""
    monkeypatch.chdir(tmp_path)
    rec = make_record(Path("records"), "r")
    honest = make_run(Path("honest"), rec, seed=7, gpu=H100)
    Path("reproducers").mkdir()
    Path("reproducers/allowed_signers").write_text(
        'alice namespaces="nanopoor-reproduction" ' + " ".join(keys["alice"].with_suffix(".pub").read_text().split()[:2]) + "\n")
    forged = Path("runs") / "20250301-r-full-s7-fast"
    halve_everywhere_verify_read(honest, forged)
    twin = Path("runs") / "20250302-r-full-s7-repro"
    renamed_copy(forged, twin, reproduces=forged.name, machine="another-box", **CURRENT)
    checks = verify(app)
    assert any(p.startswith("events.jsonl: eval.train_time_ms: the clock's last reading is 450,000.0 ms")
               for p in checks[forged.name]["problems"]), checks[forged.name]["problems"]
    # the twin says it is from the current harness: its log is held to that harness's timeline too
    assert any(p.startswith("events.jsonl: ") for p in checks[twin.name]["problems"]), checks[twin.name]["problems"]
    # the forger signs the twin with a key of their own: it is not in the list
    from nanopoor.reproduction import statement, statement_bytes
    from nanopoor import ssh_signature

    data = statement_bytes(statement(json.loads((twin / "result.json").read_text()), json.loads((forged / "result.json").read_text())))
    (twin / "reproduction.json").write_bytes(data)
    (twin / "reproduction.json.sig").write_text(ssh_signature.sign(data, keys["mallory"]))
    problems = verify(app)[twin.name]["problems"]
    assert "reproduction.json.sig does not verify: it was made by a key that is not in reproducers/allowed_signers" in problems
    res = invoke(app, "leaderboard", "--format", "json")
    assert res.exit_code == 0
    rows = [r for r in json.loads(Path("leaderboard.json").read_text()) if r["kind"] == "submission"]
    assert [r["tier"] for r in rows] == ["self-reported"] and rows[0]["reproduced"] == "no" and rows[0]["verdict"] == "unverifiable"
    assert invoke(app, "leaderboard", "--check").exit_code == 1


def test_a_signature_over_other_bytes_does_not_verify(tree, keys, app):
    """alice's real signature of one reproduction, moved onto another: the statement is right, the
    signature is not of it."""
    a, b = rerun(tree, 0), rerun(tree, 1)
    sign(app, a, keys["alice"])
    sign(app, b, keys["alice"])
    shutil.copy(a / "reproduction.json.sig", b / "reproduction.json.sig")
    assert verify(app)[b.name]["problems"] == [
        "reproduction.json.sig does not verify: the key of alice signed other bytes, or for another namespace than nanopoor-reproduction"]
    assert board(app)[1]["reproduced_by"] == f"runs/{a.name}"   # a still counts, b does not


def test_a_statement_edited_after_signing_does_not_verify(tree, keys, app):
    run = rerun(tree)
    sign(app, run, keys["alice"])
    text = (run / "reproduction.json").read_text()
    (run / "reproduction.json").write_text(text.replace('"val_loss": 3.214', '"val_loss": 3.2101'))
    problems = verify(app)[run.name]["problems"]
    assert any(p.startswith("reproduction.json: reproduction.val_loss says 3.2101, but the run's result.json says 3.214") for p in problems), problems
    assert any(p.startswith("reproduction.json.sig does not verify: the key of alice signed other bytes") for p in problems), problems
    assert board(app)[1]["tier"] == "self-reported"


def test_a_signature_made_for_another_namespace_does_not_verify(tree, keys, app):
    run = rerun(tree)
    sign(app, run, keys["alice"])
    (run / "reproduction.json.sig").unlink()
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(keys["alice"]), "-n", "git", str(run / "reproduction.json")], check=True)
    assert any("signed other bytes, or for another namespace" in p for p in verify(app)[run.name]["problems"])


@pytest.mark.parametrize("change, words", [
    ({"seed_delta": 5}, "its seed is 107 and the original's 102"),
    ({"nproc": 2}, "its nproc is 2 and the original's 1"),
    ({"track_version": 2}, "its track_version is 2 and the original's 1"),
    ({"scale": "smoke"}, "its scale is 'smoke' and the original's 'full'"),
])
def test_a_reproduction_of_something_else_fails_verify_signed_or_not(tree, keys, app, change, words):
    run = rerun(tree, **change)
    problems = verify(app)[run.name]["problems"]
    assert any(words in p for p in problems), problems
    assert_one_line(invoke(app, "sign", run, "--key", keys["alice"]), "it is not a reproduction of that run, and cannot be signed")
    # a statement that says so, signed by a listed key all the same, is still no reproduction
    from nanopoor.reproduction import statement, statement_bytes
    from nanopoor import ssh_signature

    data = statement_bytes(statement(json.loads((run / "result.json").read_text()),
                                     json.loads((tree["originals"][1] / "result.json").read_text())))
    (run / "reproduction.json").write_bytes(data)
    (run / "reproduction.json.sig").write_text(ssh_signature.sign(data, keys["alice"]))
    check = verify(app)[run.name]
    assert check["signer"] == "alice" and any(words in p for p in check["problems"])
    assert board(app)[1]["tier"] == "self-reported"


def test_signature_files_are_their_own_kind_of_file(tree, keys, app):
    run = rerun(tree)
    (run / "reproduction.json").write_text("{}\n")
    assert verify(app)[run.name]["problems"] == [
        f"reproduction.json is here without reproduction.json.sig: sign with `nanopoor sign runs/{run.name} --key KEY`"]
    (tree["originals"][0] / "reproduction.json.sig").write_text("x")
    assert verify(app)[tree["originals"][0].name]["problems"] == ["reproduction.json.sig is in a run that reproduces nothing"]


# -- the verbs' errors: one line, exit 1 ---------------------------------------------------------------
def test_sign_errors_are_one_line(tree, keys, app, monkeypatch):
    run = rerun(tree)
    assert_one_line(invoke(app, "sign", run, "--key", "nokey"), "no private key at nokey")
    shutil.copy(keys["alice"], "open-key")
    Path("open-key").chmod(0o644)
    assert_one_line(invoke(app, "sign", run, "--key", "open-key"), "others can read it; run `chmod 600 open-key`")
    assert_one_line(invoke(app, "sign", tree["originals"][0], "--key", keys["alice"]), "reproduces no run")
    assert_one_line(invoke(app, "sign", "runs/nothing", "--key", keys["alice"]), "no result.json in runs/nothing")
    lonely = Path("elsewhere") / run.name
    shutil.copytree(run, lonely)
    assert_one_line(invoke(app, "sign", lonely, "--key", keys["alice"]), "which is not beside it nor in elsewhere/", "--runs DIR")
    res = invoke(app, "sign", lonely, "--key", keys["alice"], "--runs", "runs", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.output)["signer"] == "alice", res.output
    assert_one_line(invoke(app, "sign", lonely, "--key", keys["alice"], "--runs", "runs"), "already holds reproduction.json")
    with open(run / "log.txt", "a") as f:
        f.write("edited\n")
    assert_one_line(invoke(app, "sign", run, "--key", keys["alice"]), "does not verify (log.txt was edited", "nanopoor verify")
    assert list(run.glob("reproduction.json*")) == []   # nothing written on the way out
    monkeypatch.setenv("PATH", "")
    assert_one_line(invoke(app, "sign", rerun(tree, 0), "--key", keys["alice"]), "ssh-keygen not found", "openssh-client")
    assert_one_line(invoke(app, "verify", lonely), "ssh-keygen not found")


def test_an_unlisted_key_signs_but_the_board_waits_for_a_maintainer(tree, keys, app):
    run = rerun(tree)
    res = invoke(app, "sign", run, "--key", keys["mallory"])
    assert res.exit_code == 0 and "as a key that reproducers/allowed_signers does not list" in res.output
    assert "a maintainer adds the key's line (docs/reproducers.md)" in res.output
    assert not verify(app)[run.name]["ok"]
    Path("reproducers/allowed_signers").write_text(Path("reproducers/allowed_signers").read_text() + 'mallory namespaces="nanopoor-reproduction" '
                                                   + " ".join(keys["mallory"].with_suffix(".pub").read_text().split()[:2]) + "\n")
    assert verify(app)[run.name]["signer"] == "mallory" and board(app)[1]["tier"] == "reproduced by mallory"


def test_reproduce_signs_the_rerun_it_makes(tree, keys, app, monkeypatch):
    calls = []

    def run_record(record_dir, *, seed, out_root, reproduces, **kw):
        calls.append((Path(record_dir), seed, reproduces))
        return make_run(Path(out_root), Path(record_dir), seed=seed, val_loss=3.214, gpu=H100, run_id="20250309-r-made",
                        overrides={"reproduces": reproduces, **CURRENT})

    monkeypatch.setattr("nanopoor.runner.run_record", run_record)
    monkeypatch.setattr("nanopoor.runner.preflight", lambda *a, **k: [])   # as on a gpu with the dataset built
    original = tree["originals"][1]
    assert_one_line(invoke(app, "reproduce", original, "--sign", "nokey"), "no private key at nokey", "nanopoor sign RUN --key KEY")
    assert calls == []   # refused before a run of minutes
    assert_one_line(invoke(app, "reproduce", "records/r", "--sign", keys["alice"]), "--sign signs the re-run of a committed run folder")
    res = invoke(app, "reproduce", original, "--runs", "runs", "--sign", keys["alice"], "--format", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert calls == [(Path("records/r"), 102, original.name)]
    assert report["within"] and report["signed"]["signer"] == "alice" and report["signed"]["counts"]
    assert "same_machine" not in report and board(app)[1]["tier"] == "reproduced by alice"
