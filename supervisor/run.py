"""`python -m supervisor CONFIG`: one run of a record, from its sandbox's start to run_end.

in order: open the dataset (here, never in the record's sandbox); scan the record's source for
the reviewer; start the record's process tree in its sandbox (supervisor.sandbox), serve it on a
unix socket (supervisor.server); once it has handed over its weights and its forward, end it and
compute the claim in the scorer's own sandbox (supervisor.scorer); then judge (supervisor.judge)
and write run_end. every event and every line of log.txt is written by this process.

SIGTERM (the runner's timeout) and SIGINT (Ctrl-C) end the record's sandbox at once and the run
as `killed` or `aborted`; the sandbox also dies with this process if it is killed outright."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import supervisor
from supervisor import sandbox
from supervisor.events import RUN_END, RUN_START, SOURCE_FLAGS, EventLog, RunLog
from supervisor.feed import DataFeed
from supervisor.judge import end_fields, judge
from supervisor.scoring import Scoring, emit_claim
from supervisor.server import RunServer, handover_digest
from supervisor.source_scan import scan_record

EXIT = {"completed": 0, "failed": 1, "invalid": 3, "aborted": 130, "killed": 137}
EXIT_GRACE_S = 10.0   # after the export, the record's process may take this long to end by itself
PACKAGE_ROOT = Path(supervisor.__file__).resolve().parent.parent   # holds harness/ and supervisor/


class Stop(Exception):
    """a signal from the runner: (status, reason)."""


def _on_signal(signum, frame):
    raise Stop(("killed", f"terminated by signal {signum}") if signum == signal.SIGTERM else ("aborted", "interrupted (Ctrl-C)"))


def record_command(config: dict, isolated: bool, entry: str) -> list[str]:
    """the command that starts the record's ranks (torchrun for several)."""
    nproc = int(config.get("nproc") or 1)
    boot = ["-m", "harness.boot", entry, *config.get("record_argv", [])]
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *boot]
    return [sys.executable, *boot]


def start_record(config: dict, work: Path, isolated: bool) -> subprocess.Popen:
    """the record's process tree, in its sandbox when isolated, its output on two pipes."""
    staged = config["staged_dir"]
    entry_name = config["entrypoint"]
    if isolated:
        mounts = sandbox.Mounts(
            ro=[(staged, sandbox.RECORD_DIR), (str(PACKAGE_ROOT / "harness"), f"{sandbox.CLIENT_ROOT}/harness")],
            rw=[(str(work / "handover"), sandbox.HANDOVER_DIR), (str(work / "sock"), sandbox.SOCKET_DIR)],
            env={"PYTHONPATH": sandbox.CLIENT_ROOT, "NANOPOOR_SOCKET": f"{sandbox.SOCKET_DIR}/supervisor.sock"})
        argv = sandbox.bwrap_command(mounts, record_command(config, True, f"{sandbox.RECORD_DIR}/{entry_name}"))
        env = None
    else:
        argv = record_command(config, False, f"{staged}/{entry_name}")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
               "NANOPOOR_SOCKET": str(work / "sock" / "supervisor.sock"), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=str(work / "tmp"), start_new_session=True, preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """in the child: a SIGKILL when the supervisor dies, whatever killed it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def pump(stream, runlog: RunLog, prefix: str) -> threading.Thread:
    def run():
        for raw in iter(stream.readline, b""):
            runlog.record(raw.decode("utf-8", "replace"), prefix)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def kill_tree(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    run_dir = Path(config["run_dir"])
    events, runlog = EventLog(run_dir / "events.jsonl"), RunLog(run_dir / "log.txt")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    isolated = config.get("isolation", "bwrap") == "bwrap"
    work = Path(tempfile.mkdtemp(prefix="nanopoor-run-", dir=config.get("work_root")))
    proc = scoring = server = None
    status = reason = None
    try:
        for sub in ("handover", "sock", "tmp"):
            (work / sub).mkdir()
        try:
            feed = DataFeed(Path(config["data_dir"]), config["track"], int(config["seq_len"]), int(config["batch_size"]),
                            int(config["budget_tokens"]), int(config["seed"]), int(config.get("nproc") or 1),
                            int((config.get("args") or {}).get("eval_seq_len", config["seq_len"])))
        except Exception as e:   # data problems: the record never starts
            return _end(events, runlog, "failed", f"harness could not start: {e}", {})
        paths = {"handover": sandbox.HANDOVER_DIR if isolated else str(work / "handover"),
                 "record": sandbox.RECORD_DIR if isolated else config["staged_dir"]}
        server = RunServer(config, feed, events, runlog, paths, handover_dir=work / "handover")
        flags = scan_record(Path(config["staged_dir"]))
        events.emit(RUN_START, run_id=config["run_id"], record=config["record"], scale=config["scale"], seed=config["seed"],
                    contract_version=supervisor.CONTRACT_VERSION, harness_version=supervisor.__version__,
                    track=config["track"]["name"], budget_tokens=config["budget_tokens"], steps=config["steps"],
                    seq_len=config["seq_len"], batch_size=config["batch_size"], grad_accum=config["grad_accum"],
                    world_size=server.world_size, args=config.get("args") or {},
                    eval_seq_len=server.session_config["eval_seq_len"], eval_batch_size=server.session_config["eval_batch_size"],
                    progress_tokens=feed.progress_shown, heldout_check_tokens=len(feed.check),
                    isolated=isolated, dataset_fingerprint=feed.fingerprint)
        if flags:
            events.emit(SOURCE_FLAGS, flags=flags)
        server.listen(str(work / "sock" / "supervisor.sock"))
        scoring = Scoring(config, work, isolated, runlog)   # waits for the export; its imports overlap the record's
        proc = start_record(config, work, isolated)
        pumps = [pump(proc.stdout, runlog, "record| "), pump(proc.stderr, runlog, "record| ")]
        exported_at = None
        while proc.poll() is None:
            if server.export is not None and scoring.kind is None:
                scoring.prepare(server, feed)
            if server.export is not None:
                exported_at = exported_at or time.monotonic()
                if time.monotonic() - exported_at > EXIT_GRACE_S:
                    runlog.harness(f"harness: the record's process did not end {EXIT_GRACE_S:.0f} s after its export; ended")
                    break
            time.sleep(0.02)
        kill_tree(proc)
        for p in pumps:
            p.join(timeout=5)
        if server.export is not None and scoring.kind is None:
            scoring.prepare(server, feed)
        # the record is gone: nothing can write the handover folder now. its bytes must be the ones bound
        # when the clock stopped, or the claim is not scored at all
        handover_now = handover_digest(work / "handover") if server.handover is not None else None
        bound = server.handover is not None and handover_now is not None and handover_now == server.handover.get("sha256")
        claim = scoring.result() if server.export is not None and server.export.get("path") and bound else None
        emit_claim(events, runlog, server, claim)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # the verdict is in: nothing may interrupt its writing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        status, reason = judge(server, proc.returncode, claim, handover_now)
        if status == "invalid" and not server.violations:   # found in the claim or the handover: listed like the rest
            kind, _, detail = reason.partition(": ")
            server.add_violation(kind, detail, reported_by="scorer" if kind != "claim" else "supervisor")
        return _end(events, runlog, status, reason, end_fields(server, feed, claim, isolated, flags))
    except Stop as e:
        kill_tree(proc)
        if scoring is not None:
            scoring.stop()
        status, reason = e.args[0]
        return _end(events, runlog, status, reason, end_fields(server, None, None, isolated, []) if server else {})
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        kill_tree(proc)
        if scoring is not None:
            scoring.stop()
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)


def _end(events: EventLog, runlog: RunLog, status: str, reason: str, fields: dict) -> int:
    events.emit(RUN_END, status=status, reason=reason, **fields)
    runlog.harness(f"run_end: {status}" + (f" ({reason})" if reason else ""))
    events.close()
    runlog.close()
    return EXIT[status]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
