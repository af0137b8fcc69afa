"""`python -m harness.launch RECORD/train.py`: run a record inside the harness.

the order matters: the clock's time source is captured when harness is imported (before any
record code), the dataset is opened (the train split by the data process), the data guard is
armed, the harness's own code and files are fingerprinted, and only then does the record run.
whatever happens, the last event is `run_end`, and the process then ends at once (os._exit), so
no exit handler of the record can write after it."""
from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness
import harness.dataserver
from harness import integrity, t4_limits
from supervisor.events import RUN_END, SOURCE_FLAGS, VIOLATION, EventLog, say
from harness.session import ContractViolation, session
from supervisor.source_scan import scan_record

EXIT = {"completed": 0, "failed": 1, "invalid": 3, "aborted": 130, "killed": 137}
TEARDOWN_TIMEOUT_S = 20.0  # the longest a rank waits for the process group's teardown after run_end


class Killed(BaseException):
    """SIGTERM from the runner (timeout): end the run as `killed`, still writing run_end."""


def _on_term(signum, frame):
    raise Killed(f"terminated by signal {signum}")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m harness.launch RECORD/train.py [args...]", file=sys.stderr)
        return 2
    script = str(Path(argv[1]).resolve())
    config = json.loads(Path(os.environ["NANOPOOR_CONFIG"]).read_text())
    signal.signal(signal.SIGTERM, _on_term)
    sess = _start_session(config)
    if isinstance(sess, int):
        return sess
    watch = _arm(sess, script, config)
    status, reason, tb = _run_record(script, argv[2:])
    # the record is over: a late timeout must not interrupt writing run_end with a traceback
    # (the runner's SIGKILL after its grace period still ends a stuck process)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    found, logged = _violations_found(sess, watch)
    summary = sess.summary
    status, reason = _judge(status, reason, found, summary)
    if status == "completed":
        status, reason = _claim_served(watch)
    for v in found:
        if v not in logged:
            sess.events.emit(VIOLATION, **v)
    end = _end_fields(sess, summary)
    if sess.rank != 0 and status != "completed":  # only rank 0 writes events: the runner reads this instead
        _write_rank_error(Path(config["run_dir"]), sess.rank, status, reason, tb)
    end["source_flags"] = len(watch.flags)
    sess.events.emit(RUN_END, status=status, reason=reason, traceback=tb, violations=found, **end)
    say(f"run_end: {status}" + (f" ({reason})" if reason else ""), sess.is_main)
    sess.events.close()
    if sess.world_size > 1:
        end_process_group(TEARDOWN_TIMEOUT_S)
    return EXIT[status]


def _start_session(config: dict):
    """the session (data, device, event log), or the exit code when the harness could not start."""
    rank0 = int(os.environ.get("RANK", 0)) == 0
    try:
        sess = session()
        t4_limits.apply(sess, config)  # --as-t4: a T4's memory, dtypes and kernels, checked from here on
        return sess
    except Killed as e:  # the runner's timeout fired while the harness was starting: no traceback, a run_end
        log = EventLog(Path(config["run_dir"]) / "events.jsonl", enabled=rank0)
        log.emit(RUN_END, status="killed", reason=str(e))
        say(f"run_end: killed ({e})", rank0)
        return EXIT["killed"]
    except Exception as e:  # data or device problems: the record never started
        log = EventLog(Path(config["run_dir"]) / "events.jsonl", enabled=rank0)
        log.emit(RUN_END, status="failed", reason=f"harness could not start: {e}", traceback=traceback.format_exc())
        print(f"harness could not start: {e}", file=sys.stderr)
        return 1


@dataclass(frozen=True)
class Watch:
    """what _arm took before the record ran. the functions are local references: a record that
    rebinds module attributes cannot swap these out."""
    snapshot: Callable
    changed: Callable
    violations: Callable
    files_digest: Callable
    harness_dir: Path
    files_before: str
    code_before: dict
    flags: list
    served: Callable   # the data process's own counts (its stats, bound before the record ran)


def _arm(sess, script: str, config: dict) -> Watch:
    """scan the record's source, arm the data guard, fingerprint the harness's code and files."""
    snapshot, files_digest, harness_dir = integrity.code_snapshot, integrity.package_files_digest, Path(harness.__file__).parent
    watch_fns = {"snapshot": snapshot, "changed": integrity.changed_functions, "violations": integrity.violations,
                 "files_digest": files_digest, "harness_dir": harness_dir}
    flags = scan_record(Path(script).parent)
    if flags:
        sess.events.emit(SOURCE_FLAGS, flags=flags)
    integrity.install_data_guard(config["data_dir"], config["run_dir"], config.get("guarded_dirs", []))
    integrity.guard_torch_files()
    files_before = files_digest(harness_dir)
    code_before = snapshot(harness)
    integrity.remember_code(harness)
    return Watch(**watch_fns, files_before=files_before, code_before=code_before, flags=flags, served=sess.stream.stats)


def _claim_served(watch: Watch) -> tuple[str, str]:
    """a completed run's claim must have been computed from the val set: the data process, which
    the record's code cannot reach into, must have served every val batch's targets (and the
    held-out check's). a finish faked in the record's process, or a summary written by hand, never
    asked for them."""
    try:
        served = watch.served()
    except Exception as e:  # the data process is gone: it cannot vouch for the claim
        return "invalid", f"claim: the data process could not report what it served ({type(e).__name__}: {e})"
    for name in ("val", "check"):
        got, want = served.get(f"{name}_batches_served"), served.get(f"{name}_batches")
        if not want or got != want:
            what = "the val set" if name == "val" else "the held-out check's tokens"
            return "invalid", (f"claim: the data process served {got} of {want} batches of {what}: the claimed val loss "
                               "was not computed by the harness's evaluation")
    return "completed", ""


def _run_record(script: str, args: list[str]) -> tuple[str, str, str | None]:
    """run the record as __main__: (status, reason, traceback) from how it ended."""
    status, reason, tb = "completed", "", None
    try:
        sys.argv = [script, *args]
        sys.path.insert(0, str(Path(script).parent))
        runpy.run_path(script, run_name="__main__")
    except ContractViolation as e:
        status, reason = "invalid", f"{e.kind}: {e.detail}"
    except KeyboardInterrupt:
        status, reason = "aborted", "interrupted (Ctrl-C)"
    except Killed as e:
        status, reason = "killed", str(e)
    except SystemExit as e:
        if e.code not in (0, None):
            status, reason = "failed", f"record exited with code {e.code}"
    except BaseException as e:
        status, reason, tb = "failed", f"{type(e).__name__}: {e}", traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
    return status, reason, tb


def _violations_found(sess, watch: Watch) -> tuple[list[dict], list[dict]]:
    """(every violation: the guard's, replaced harness code or files, the log's; those already logged)."""
    found = watch.violations()
    tampered = watch.changed(watch.code_before, watch.snapshot(harness))
    if tampered and not any(v["kind"] == "clock_tamper" for v in found):
        found.append({"kind": "clock_tamper", "detail": f"the record replaced harness code: {', '.join(tampered[:3])}"})
    if watch.files_digest(watch.harness_dir) != watch.files_before:
        found.append({"kind": "harness_files", "detail": f"the record changed the harness's files on disk ({watch.harness_dir})"})
    logged = _logged_violations(sess.events.path) if sess.is_main else []  # rank 0's log
    found += [v for v in logged if v not in found]  # what an emptied list forgot
    return found, logged


def _judge(status: str, reason: str, found: list[dict], summary: dict | None) -> tuple[str, str]:
    """the run's status: a violation, a missing finish(), a causality leak or a heldout gap overrule a clean end."""
    if found and status in ("completed", "failed"):
        return "invalid", f"{found[0]['kind']}: {found[0]['detail']}"
    if status == "completed" and summary is None:
        return "failed", "the record returned without calling h.finish()"
    if status == "completed" and not summary["causal"]:
        return "invalid", f"causality: {summary.get('causal_reason') or 'the probe failed'}"
    if status == "completed" and not summary["heldout_passed"]:
        return "invalid", (f"heldout: val loss is {summary['heldout_gap']:.3f} nats below never-served train tokens "
                           "(the model may have seen the val tokens)")
    return status, reason


def _end_fields(sess, summary: dict | None) -> dict:
    """run_end's numbers: finish()'s summary, else what the session counted before the record stopped."""
    end = dict(summary or {})
    end.setdefault("train_time_ms", sess.clock.elapsed_ms())
    end.setdefault("eval_time_ms", sess.eval_time_ms)
    end.setdefault("warmup_time_ms", sess.warmup_time_ms)
    end.setdefault("tokens", sess.tokens)
    end.setdefault("steps", sess.last_step)
    last_eval = sess.last_eval
    if summary is None and last_eval is not None:
        end.setdefault("val_loss", last_eval["val_loss"])
        end.setdefault("val_loss_full", last_eval["full"])
    return end


def _write_rank_error(run_dir: Path, rank: int, status: str, reason: str, tb: str | None) -> None:
    """rank<N>_error.json: why a rank other than 0 ended (torchrun then stops the others)."""
    with integrity.harness_io():  # the harness's own write into the run folder
        try:
            (run_dir / f"rank{rank}_error.json").write_text(json.dumps({"rank": rank, "status": status, "reason": reason,
                                                                         "traceback": tb}, indent=2) + "\n")
        except OSError:
            pass


def _logged_violations(path) -> list[dict]:
    """violation events already in the log (add_violation writes them as they happen)."""
    out = []
    if path is None:
        return out
    with integrity.harness_io():  # our own read of the run folder
        try:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("type") == VIOLATION:
                    out.append({"kind": e.get("kind"), "detail": e.get("detail")})
        except OSError:
            pass
    return out


def end_process_group(timeout_s: float) -> bool:
    """tear the process group down, waiting at most timeout_s; True when it finished.

    run_end is written, so nothing after this changes the run: a teardown that blocks (a record
    that keeps a cuda graph with captured collectives alive makes nccl's wait forever) must not
    turn a completed run into a killed one. the process ends with os._exit either way."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return True
    worker = threading.Thread(target=dist.destroy_process_group, name="pg-teardown", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        print(f"harness: the process group's teardown did not finish in {timeout_s:.0f} s; "
              "the run is already recorded, the process ends without it", file=sys.stderr, flush=True)
        return False
    return True


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit handler or lingering thread of the record writes after run_end
