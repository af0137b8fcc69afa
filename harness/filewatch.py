"""who opens the dataset's files during a run: a kernel watch (fanotify) kept by the data process.

the audit hook in the record's process sees python's own opens. it cannot see an open made by a
program the record starts, by C code, or through a name the hook cannot resolve. the kernel sees
them all: fanotify reports every open of a marked file (by any name: a hard link made at run time,
a path relative to a directory descriptor, /proc/<pid>/fd/N) with the pid of the process that
opened it. the data process marks the dataset's files once it has opened them itself, and a
thread reads the events as they come, while the opener is still alive to be looked at.

an open by the record's process or any process it started is a violation. an open by the runner
above it, or by a harness process of another rank or run (several runs may share one dataset and
each reads it as it starts), is expected and only counted: a process outside the run's tree that
takes a harness process's command line is not told apart. an opener
that is gone before it can be looked at, or that is neither, is reported with what is known.

fanotify needs CAP_SYS_ADMIN (root, outside most sandboxes): where the kernel refuses, the watch
says it is unavailable and the run records that its dataset was not watched."""
from __future__ import annotations

import ctypes
import os
import struct
import threading

_FAN_CLASS_NOTIF, _FAN_CLOEXEC = 0x0, 0x1
_FAN_MARK_ADD = 0x1
_FAN_OPEN = 0x20
_AT_FDCWD = -100
_META = struct.Struct("<IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
DATA_PROCESS_MARK = "from harness.dataserver import serve"  # the data process's command line holds this
# command lines of the harness's own processes: a data process, a record's launcher before its
# guard is armed (one per rank), the tool that starts runs (it reads the manifest first)
HARNESS_MARKS = (DATA_PROCESS_MARK, "-m harness.launch", "-m nanopoor", "bin/nanopoor ")


class DataWatch:
    def __init__(self, paths, record_pid: int):
        self.record_pid, self.own_pid = record_pid, os.getpid()
        # the runner (and torchrun's agent) above the record read the dataset as they start runs
        self.ancestors = set(_ancestors(record_pid))
        self.available, self.reason = False, ""
        self.violations: list[str] = []   # opens by the record's process tree
        self.other_runs = 0               # opens by other runs' data processes
        self._lock = threading.Lock()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.fanotify_init(_FAN_CLASS_NOTIF | _FAN_CLOEXEC, os.O_RDONLY)
        except (OSError, AttributeError) as e:
            self.reason = f"fanotify is not available ({e})"
            return
        if fd < 0:
            self.reason = f"the kernel refused fanotify ({os.strerror(ctypes.get_errno())})"
            return
        for p in paths:
            if libc.fanotify_mark(fd, _FAN_MARK_ADD, ctypes.c_uint64(_FAN_OPEN), _AT_FDCWD, os.fsencode(str(p))) != 0:
                self.reason = f"cannot watch {p} ({os.strerror(ctypes.get_errno())})"
                os.close(fd)
                return
        self._fd, self.available = fd, True
        threading.Thread(target=self._read_events, daemon=True).start()

    def _read_events(self) -> None:
        while True:
            try:
                buf = os.read(self._fd, 1 << 16)
            except OSError:
                return
            off = 0
            while off + _META.size <= len(buf):
                length, _, _, _, _, efd, pid = _META.unpack_from(buf, off)
                path = _fd_path(efd)
                if efd >= 0:
                    os.close(efd)
                self._judge(pid, path)
                off += max(length, _META.size)

    def _judge(self, pid: int, path: str) -> None:
        if pid == self.own_pid:
            return
        chain = _ancestors(pid)
        cmd = _cmdline(pid)
        with self._lock:
            if self.record_pid in chain or pid == self.record_pid:
                self.violations.append(f"{path} was opened by pid {pid} ({cmd or 'gone'}), a process of this run")
            elif pid in self.ancestors or (cmd is not None and any(m in cmd for m in HARNESS_MARKS)):
                self.other_runs += 1  # the runner, another rank or another run starting on the same dataset
            else:
                who = f"pid {pid} ({cmd})" if cmd is not None else f"pid {pid}, which ended before it could be looked at"
                self.violations.append(f"{path} was opened by {who} during the run")

    def report(self) -> dict:
        with self._lock:
            return {"watched": self.available, "reason": self.reason, "violations": list(self.violations),
                    "other_runs_opens": self.other_runs}


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "a dataset file"


def _ancestors(pid: int) -> list[int]:
    """the parent chain of pid (empty when pid is gone)."""
    out, seen = [], set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            break
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the field after the state letter
        out.append(pid)
    return out


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return None
