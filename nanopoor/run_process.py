"""the record's child process: its command and environment, the live display while it runs, and
its end by itself, by the timeout (SIGTERM, then SIGKILL) or by Ctrl-C.

the wall-clock is measured here, around the whole child: the clock inside it must account for less."""
from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
from nanopoor.display import Display, RunState
from nanopoor.event_reader import EventTail

HARNESS_DIR = Path(harness.__file__).parent
KILL_GRACE_S = 10.0
CPU_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def _command(entry: str, nproc: int) -> list[str]:
    if nproc > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "harness.launch", entry]
    return [sys.executable, "-m", "harness.launch", entry]


def launch_record(rec, run_dir: Path, config: dict, timeout_s, nproc: int, quiet: bool, entry: Path, extra_env: dict) -> dict:
    """run the staged entry point under the harness, showing its progress; returns the outcome
    (returncode, wallclock_ms, timed_out, interrupted, the devices it was given)."""
    # PYTHONSAFEPATH: no cwd on sys.path (inherited by torchrun's children), so a `harness/` folder
    # in the current directory cannot stand in for the one whose digest the runner checks
    env = {**os.environ, **extra_env, "NANOPOOR_CONFIG": str(run_dir / "config.json"), "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1",
           "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HARNESS_DIR.parent), os.environ.get("PYTHONPATH")]))}
    if shutil.which("nvidia-smi") is None:
        # a cpu run allocates and frees the (B, T, 100k) logits every step: glibc hands such blocks
        # back to the kernel (mmap/munmap) and faults them in again, which took more time than the
        # matmuls (the 60-step demo on 2 cores: 71.6 s → 30.6 s of train time). the user's own settings win.
        for key, value in CPU_MALLOC_ENV.items():
            env.setdefault(key, value)
    state = RunState(rec.name, config["steps"], config["budget_tokens"])
    tail = EventTail(run_dir / "events.jsonl")
    lines: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    with open(run_dir / "log.txt", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(_command(str(entry), nproc), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                text=True, errors="replace", bufsize=1, start_new_session=True)
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        outcome = {"timed_out": False, "interrupted": False, "timeout_s": timeout_s,
                   "devices": env.get("CUDA_VISIBLE_DEVICES")}
        with Display(state, quiet=quiet) as disp:
            try:
                while proc.poll() is None:
                    _drain(lines, log, disp)
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
            proc.wait()
            reader.join(timeout=5)
            _drain(lines, log, disp)
            for e in tail.poll():
                state.fold(e)
    outcome["returncode"] = proc.returncode
    outcome["wallclock_ms"] = (time.perf_counter() - t0) * 1000
    return outcome


def _pump(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _drain(q: queue.Queue, log, disp: Display) -> None:
    while True:
        try:
            line = q.get_nowait()
        except queue.Empty:
            return
        if line is None:
            return
        log.write(line)
        log.flush()
        disp.line(line.rstrip("\n"))


def _stop(proc: subprocess.Popen, sig: int) -> None:
    """signal the child's whole process group, then SIGKILL it if it does not end in time."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
