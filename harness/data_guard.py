"""the data guard: an audit hook in the record's process that refuses, and records as a violation,
opening a file of the dataset (or of the files it was built from) or of the run folder, any
process's memory (/proc/<pid>/mem), giving a dataset file another name, looking up libc's file
functions through ctypes, and starting a program whose arguments name the dataset; and the
checks for what the hook cannot see (torch.from_file, files mapped in this process).

the violations, and the switch the harness's own file access turns the hook off with, live here
too (harness.integrity re-exports them)."""
from __future__ import annotations

import contextlib
import os
import sys

_state = {"data_dir": None, "data_dirs": (), "run_dir": None, "armed": False, "violations": [], "allow": 0, "code_before": None,
          "emit": None}
# captured at import, before any record code: a record that rebinds os.path.realpath cannot blind the
# guard without rebinding these too, and rebinding a harness module global shows in code_snapshot
_realpath, _fsdecode, _sep = os.path.realpath, os.fsdecode, os.sep
_listdir, _readlink, _isdir = os.listdir, os.readlink, os.path.isdir
# libc calls that read a file without python's open(): reaching for them through ctypes is a bypass
_FILE_SYMBOLS = {"open", "open64", "openat", "openat64", "fopen", "fopen64", "mmap", "mmap64", "read", "pread",
                 "pread64", "syscall", "sendfile", "copy_file_range", "splice"}
_FILE_SYMBOLS |= {"process_vm_readv", "pidfd_getfd", "name_to_handle_at", "open_by_handle_at", "linkat", "renameat", "renameat2"}
_SPAWN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}
# events that give a dataset file a second name (then opened by it) or move it: (source index, its dir_fd index)
_NAME_EVENTS = {"os.link": (0, 2), "os.rename": (0, 2), "os.symlink": (0, None), "shutil.copyfile": (0, None),
                "shutil.copytree": (0, None), "os.truncate": (0, None)}


def install_data_guard(data_dir: str, run_dir: str | None = None, also: list[str] | tuple = ()) -> None:
    """after this, opening any file inside the dataset folder is a violation (the harness has
    memory-mapped the val split and its data process serves the train split). so is looking up
    libc's file functions through ctypes, or starting a program whose arguments name the dataset
    folder. opening a file in the run folder (where the harness's own event log already is open)
    is a violation too: a record has nothing to write there. the hook cannot be removed once added."""
    _state["data_dir"] = _realpath(data_dir)
    _state["data_dirs"] = tuple(_realpath(d) for d in (data_dir, *also))  # the dataset and the files it was built from
    _state["run_dir"] = _realpath(run_dir) if run_dir else None
    _state["armed"] = True
    if not _state.get("hooked"):
        sys.addaudithook(_audit)
        _state["hooked"] = True


def _inside(path, root) -> bool:
    if isinstance(path, bytes):
        path = _fsdecode(path)
    if not isinstance(path, str) or not root:
        return False
    try:
        real = _realpath(path)
    except (ValueError, OSError):  # embedded nul, a loop of links: not a file anyone opened
        return False
    return real == root or real.startswith(root + _sep)


def _candidates(path, dir_fd=None) -> list[str]:
    """the paths an open of `path` may mean: itself when absolute; a relative one against its dir_fd
    when known, else against the current folder and every directory this process holds open
    (os.open(..., dir_fd=fd) reports no dir_fd to the hook). an int is an open descriptor."""
    if isinstance(path, int):
        path = f"/proc/self/fd/{path}"
    if isinstance(path, bytes):
        path = _fsdecode(path)
    if not isinstance(path, str):
        return []
    if path.startswith(_sep):
        return [path]
    bases = [f"/proc/self/fd/{dir_fd}"] if isinstance(dir_fd, int) else ["", *_open_dirs()]
    return [path if not base else base + _sep + path for base in bases]


def _in_data(path, dir_fd=None) -> str | None:
    """the real path when `path` names something inside a guarded folder, else None."""
    if not _state["data_dirs"]:
        return None
    for full in _candidates(path, dir_fd):
        for root in _state["data_dirs"]:
            if _inside(full, root):
                try:
                    return _realpath(full)
                except (ValueError, OSError):
                    return full
    return None


def _open_dirs() -> list[str]:
    """the directories this process holds open (where a dir_fd-relative open can start)."""
    out = []
    try:
        fds = _listdir("/proc/self/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = _readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(_sep) and _isdir(target):
            out.append(target)
    return out


# another process's memory, by name: the data process holds only what it has served, but root can
# read any process, so the record reading one at all is refused
_PROC_MEMORY = ("mem", "map_files", "pagemap")


def _process_memory(path, dir_fd=None) -> str | None:
    """the path when it names /proc/<pid>/{mem,map_files,pagemap} (through any folder it starts from)."""
    for full in _candidates(path, dir_fd):
        try:
            real = _realpath(full)
        except (ValueError, OSError):
            continue
        parts = real.split(_sep)
        if len(parts) >= 4 and parts[1] == "proc" and parts[3] in _PROC_MEMORY:
            return real
    return None


def _deny(kind: str, detail: str):
    add_violation(kind, detail)
    raise PermissionError(detail)


def _audit(event: str, args: tuple) -> None:
    if not _state["armed"] or _state["allow"]:
        return
    if event == "open":
        path = args[0] if args else None
        hit = _in_data(path)
        if hit:
            _deny("data_access", f"record opened dataset file {hit} directly instead of using the harness stream")
        mem = _process_memory(path)
        if mem:
            _deny("data_access", f"record opened {mem}: another process's memory (the data process holds the dataset's tokens)")
        if _inside(path, _state["run_dir"]):
            _deny("run_files", f"record opened {_realpath(_fsdecode(path) if isinstance(path, bytes) else path)} in the run folder (the harness's files)")
    elif event in _NAME_EVENTS:
        src, fd_at = _NAME_EVENTS[event]
        dir_fd = args[fd_at] if fd_at is not None and len(args) > fd_at else None
        hit = _in_data(args[src], dir_fd) if len(args) > src else None
        if hit:
            _deny("data_access", f"record gave dataset file {hit} another name or copy ({event})")
    elif event == "ctypes.dlsym" and len(args) > 1 and str(args[1]) in _FILE_SYMBOLS:
        _deny("data_access", f"record looked up libc's {args[1]}() through ctypes (file access the data guard cannot see)")
    elif event in _SPAWN_EVENTS and _names_data_dir(args):
        _deny("data_access", f"record started a program whose arguments name the dataset folder ({event})")


def _names_data_dir(args) -> bool:
    """whether any string among a spawn event's arguments is a path inside the dataset folder."""
    stack, words = [args], []
    while stack:
        a = stack.pop()
        if isinstance(a, (list, tuple)):
            stack.extend(a)
        elif isinstance(a, (str, bytes)):
            words.extend((_fsdecode(a) if isinstance(a, bytes) else a).split())
    return any(_in_data(w) for w in words if len(w) < 4096)


def violations() -> list[dict]:
    return list(_state["violations"])


def add_violation(kind: str, detail: str) -> None:
    """record a violation, and write it to the event log at once: a record that later empties
    the list in memory cannot take back what is on disk (harness.launch reads both)."""
    v = {"kind": kind, "detail": detail}
    if v in _state["violations"]:
        return
    _state["violations"].append(v)
    emit = _state["emit"]
    if emit is not None:
        _state["allow"] += 1
        try:
            emit("violation", **v)
        finally:
            _state["allow"] -= 1


@contextlib.contextmanager
def harness_io():
    """the harness's own reads and writes of the run folder (its event log, a rank's error file):
    not audited while inside, since they are not the record's."""
    _state["allow"] += 1
    try:
        yield
    finally:
        _state["allow"] -= 1


def set_emitter(emit) -> None:
    """where add_violation writes (the session's event log)."""
    _state["emit"] = emit


def guard_intact() -> bool:
    """false when the record switched the data guard off (its state is a plain dict)."""
    return not _state.get("hooked") or (_state["armed"] and _state["allow"] == 0)


def guard_torch_files() -> None:
    """torch.from_file maps a file in c++ without python's open(): route it through the guard."""
    torch = sys.modules.get("torch")
    if torch is None or _state.get("torch_guarded"):
        return
    _state["torch_guarded"] = True
    from_file, storage_from_file = torch.from_file, torch.UntypedStorage.from_file

    def check(path):
        if _state["armed"] and not _state["allow"] and _in_data(path):
            detail = f"record mapped dataset file {path} with torch's from_file instead of using the harness stream"
            add_violation("data_access", detail)
            raise PermissionError(detail)

    def guarded_from_file(filename, *args, **kwargs):
        check(filename)
        return from_file(filename, *args, **kwargs)

    def guarded_storage_from_file(cls, filename, *args, **kwargs):
        check(filename)
        return storage_from_file(filename, *args, **kwargs)

    torch.from_file = guarded_from_file
    torch.UntypedStorage.from_file = classmethod(guarded_storage_from_file)


def mapped_data_files(allowed: set[str]) -> list[str]:
    """dataset files memory-mapped in this process other than those the harness mapped itself
    (torch.from_file, or an mmap through a file descriptor, leaves no open() for the guard)."""
    roots = _state["data_dirs"]
    if not roots:
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:  # not linux: nothing to look at
        return []
    found = set()
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) == 6:
            path = parts[5].strip().removesuffix(" (deleted)")
            if any(path == root or path.startswith(root + _sep) for root in roots) and path not in allowed:
                found.add(path)
    return sorted(found)
