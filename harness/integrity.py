"""what the harness watches while record code runs: data access (the audit hook and its checks are
harness.data_guard's, re-exported here), parameter digests, its own code.

none of this makes cheating impossible inside one python process; it makes the usual ways of
cheating leave a trace (docs/trust.md lists what a reviewer still has to read for)."""
from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

from harness.data_guard import (
    _state, add_violation, guard_intact, guard_torch_files, harness_io, install_data_guard, mapped_data_files,
    set_emitter, violations,
)

__all__ = ["add_violation", "changed_functions", "check_code", "code_snapshot", "guard_intact", "guard_torch_files",
           "harness_io", "install_data_guard", "mapped_data_files", "package_files_digest", "param_digest",
           "remember_code", "run_checks", "set_emitter", "violations"]


def _tensors(obj):
    """every tensor in a module's or optimizer's state, in a stable order."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def param_digest(objs, with_grads: bool = False) -> str:
    """a digest of every parameter, buffer and optimizer state tensor (and gradient): exact
    float64 sums on the device, read back in one copy per device and hashed. any in-place update
    changes it with overwhelming probability."""
    import torch

    by_device: dict = {}
    with torch.no_grad():
        for m in objs:
            if isinstance(m, torch.nn.Module):
                state = m.state_dict(keep_vars=True)
            elif hasattr(m, "state_dict"):
                state = m.state_dict()
            else:
                continue
            for t in _tensors(state):
                if t.numel() == 0:
                    continue
                d = t.detach()
                d = d.double() if (d.is_floating_point() or not d.is_complex()) else d.abs().double()
                vals = [d.sum(), (d * d).sum()]
                g = getattr(t, "grad", None)
                if with_grads and g is not None:
                    vals += [g.double().sum(), (g.double() ** 2).sum()]
                by_device.setdefault(str(d.device), []).append(torch.stack(vals))
    h = hashlib.sha256()
    for device in sorted(by_device):
        rows = by_device[device]
        h.update(device.encode() + bytes(len(r) for r in rows))  # which tensors had a gradient
        h.update(torch.cat(rows).cpu().numpy().tobytes())
    return h.hexdigest()


def code_snapshot(package: types.ModuleType) -> dict[str, str]:
    """identities of everything the harness's code calls or reads at run time, taken before the
    record runs: every global of every harness module (functions by bytecode and identity,
    everything else by identity: rebinding `harness.clock._now_ns` or a tolerance shows), every
    method of its classes, and the outside functions the clock and guard rely on (time.*,
    torch.cuda.synchronize, os.path.realpath, ...)."""
    snap = {}
    prefix = package.__name__ + "."
    for name, mod in sorted(sys.modules.items()):
        if mod is None or not (name == package.__name__ or name.startswith(prefix)):
            continue
        snap[f"sys.modules[{name}]"] = f"module@{id(mod)}"
        for attr, obj in sorted(vars(mod).items()):
            if attr.startswith("__") and attr.endswith("__"):
                continue
            snap[f"{name}.{attr}"] = _identity(obj)
            for key, fn in _functions(f"{name}.{attr}", obj, mod):
                snap[key] = _code_id(fn)
    for key, obj in _outside_functions():
        snap[key] = _identity(obj)
    return snap


def _outside_functions():
    """functions outside the harness whose replacement would blind the clock or the guard."""
    import time

    for attr in ("perf_counter_ns", "perf_counter", "monotonic_ns", "monotonic", "time", "time_ns", "sleep"):
        yield f"time.{attr}", getattr(time, attr)
    yield "os.path.realpath", os.path.realpath
    yield "sys.addaudithook", sys.addaudithook
    torch = sys.modules.get("torch")
    if torch is not None:
        yield "torch.cuda.synchronize", torch.cuda.synchronize
        yield "torch.cuda.Event", torch.cuda.Event
        yield "torch._C._cuda_synchronize", getattr(torch._C, "_cuda_synchronize", None)
        yield "torch.from_file", torch.from_file


def _identity(obj) -> str:
    if isinstance(obj, types.FunctionType):
        return _code_id(obj)
    return f"{type(obj).__name__}@{id(obj)}"


def _functions(key, obj, mod):
    if isinstance(obj, type) and obj.__module__ == mod.__name__:
        for a, v in sorted(vars(obj).items()):
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            if isinstance(v, property):
                v = v.fget
            if isinstance(v, types.FunctionType):
                yield f"{key}.{a}", v


def _code_id(fn) -> str:
    c = fn.__code__
    return hashlib.sha256(c.co_code + repr(c.co_consts).encode() + repr(c.co_names).encode()).hexdigest()[:16] + f"@{id(fn)}@{id(c)}"


def changed_functions(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before if after.get(k) != before[k])


def remember_code(package: types.ModuleType) -> None:
    """take the snapshot the later checks compare against (harness.launch, before the record)."""
    _state["code_before"] = code_snapshot(package)


def check_code(package: types.ModuleType) -> list[str]:
    """names of harness internals replaced since remember_code; each is recorded once as a violation."""
    before = _state["code_before"]
    if before is None:
        return []
    changed = changed_functions(before, code_snapshot(package))
    reported = _state.setdefault("code_reported", set())
    fresh = [k for k in changed if k not in reported]
    if fresh:
        reported.update(fresh)
        add_violation("clock_tamper", f"the record replaced harness code or the clock's time source: {', '.join(fresh[:4])}"
                                      + (f" (+{len(fresh) - 4} more)" if len(fresh) > 4 else ""))
    return changed


def run_checks(package: types.ModuleType) -> None:
    """the checks at every evaluation: harness code unchanged, data guard still armed, no dataset
    file mapped behind its back (this process maps none at all). each finding is a violation."""
    check_code(package)
    if not guard_intact():
        add_violation("data_access", "the record switched off the harness's data guard")
    for path in mapped_data_files(set()):
        add_violation("data_access", f"record memory-mapped dataset file {path} itself (not through the harness stream)")


def package_files_digest(root: Path) -> str:
    """sha256 over the harness package's source files on disk (the runner compares before/after)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
