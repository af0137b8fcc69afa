"""the run's supervisor process: its command and environment, the live display while it runs, and
its end by itself, by the timeout (SIGTERM) or by Ctrl-C (SIGINT).

the supervisor (`python -m supervisor CONFIG`) owns the run: it writes events.jsonl and log.txt,
isolates the record and computes the claim. this process shows what it writes, measures the
whole run's wall-clock from outside, and stops it when asked: a signal to the supervisor ends
the record's sandbox and the run (`killed`, `aborted`); if the supervisor does not end within
KILL_GRACE_S, its whole process group is killed, and the record's sandbox dies with it."""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import supervisor
from nanopoor.display import Display, RunState
from nanopoor.event_reader import EventTail

PACKAGE_ROOT = Path(supervisor.__file__).resolve().parent.parent   # holds harness/ and supervisor/
HARNESS_DIRS = (PACKAGE_ROOT / "harness", PACKAGE_ROOT / "supervisor")
KILL_GRACE_S = 30.0
CPU_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def _die_with_parent() -> None:
    """in the supervisor: a SIGKILL when this process dies, however it died."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def launch_record(rec, run_dir: Path, config: dict, timeout_s, quiet: bool, extra_env: dict) -> dict:
    """run one record under its supervisor, showing its progress; returns the outcome
    (returncode, wallclock_ms, timed_out, interrupted, the devices it was given)."""
    env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    if not Path("/proc/driver/nvidia").exists():
        # a cpu run allocates and frees the (B, T, 100k) logits every step: glibc hands such blocks
        # back to the kernel (mmap/munmap) and faults them in again, which took more time than the
        # matmuls (the 60-step demo on 2 cores: 71.6 s → 30.6 s of train time). the user's own settings win.
        for key, value in CPU_MALLOC_ENV.items():
            env.setdefault(key, value)
    state = RunState(rec.name, config["steps"], config["budget_tokens"])
    tail = EventTail(run_dir / "events.jsonl")
    lines: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "supervisor", str(run_dir / "config.json")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, text=True, errors="replace", bufsize=1,
                            start_new_session=True, preexec_fn=_die_with_parent)
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    outcome = {"timed_out": False, "interrupted": False, "terminated": False, "timeout_s": timeout_s,
               "devices": env.get("CUDA_VISIBLE_DEVICES")}
    previous = _catch_sigterm()
    with Display(state, quiet=quiet) as disp:
        try:
            while proc.poll() is None:
                _drain(lines, disp)
                for e in tail.poll():
                    state.fold(e)
                disp.update()
                if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                    outcome["timed_out"] = True
                    _stop(proc, signal.SIGTERM)
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            outcome["interrupted"] = True
            _stop(proc, signal.SIGINT)
        except Terminated:   # `timeout`, `kill`: the run ends as killed, its folder complete, nothing left running
            outcome["terminated"] = True
            _stop(proc, signal.SIGTERM)
        finally:
            _restore_sigterm(previous)
        proc.wait()
        reader.join(timeout=5)
        _drain(lines, disp)
        for e in tail.poll():
            state.fold(e)
    outcome["returncode"] = proc.returncode
    outcome["wallclock_ms"] = (time.perf_counter() - t0) * 1000
    return outcome


class Terminated(Exception):
    """SIGTERM reached this process while a run was going."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _catch_sigterm():
    """SIGTERM ends the run the way a timeout does (only the main thread can take a signal)."""
    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, _on_sigterm)
    return None


def _restore_sigterm(previous) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _pump(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _drain(q: queue.Queue, disp: Display) -> None:
    while True:
        try:
            line = q.get_nowait()
        except queue.Empty:
            return
        if line is None:
            return
        disp.line(line.rstrip("\n"))


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """ask the supervisor to end the run; kill its whole group if it does not end in time."""
    try:
        proc.send_signal(sig)
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    except ProcessLookupError:
        pass
