"""what the harness watches while record code runs: data access (the audit hook and its checks are
harness.data_guard's, re-exported here), parameter digests, its own code.

none of this makes cheating impossible inside one python process; it makes the usual ways of
cheating leave a trace (docs/trust.md lists what a reviewer still has to read for)."""
from __future__ import annotations

import functools
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
    method of its classes, every other name in a class's own __dict__ (so one added later, a method
    shadowed on T4Session, is a new key), the class of each harness object a module global holds
    (the session) and of the harness objects it holds, with any name in their own __dict__ that hides
    a method of their class, and the outside functions the clock and guard rely on (time.*,
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
            snap.update(_class_members(f"{name}.{attr}", obj, mod))
            for key, fn in _functions(f"{name}.{attr}", obj, mod):
                snap[key] = _code_id(fn)
    snap.update(_instance_entries(package))
    for key, obj in _outside_functions():
        snap[key] = _identity(obj)
    snap.update(_builtin_names())
    return snap


def _builtin_names() -> dict[str, str]:
    """every builtin by identity: harness code finds min, len, isinstance there when its module has
    no global of that name, so `builtins.min = ...` reaches it as a module global would. a builtin
    added later is not compared (harness code names none that is missing); `_` is the
    interpreter's last result."""
    import builtins

    return {f"builtins.{k}": _identity(v) for k, v in vars(builtins).items() if k != "_"}


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
    """keys replaced or removed since `before`, and keys added to what `before` covered (a method
    shadowed on a subclass or on the session object, a module global over a builtin)."""
    changed = [k for k in before if after.get(k) != before[k]]
    return sorted(changed + [k for k in after if k not in before and _counts_as_added(k, after[k], before, after)])


# a class gets these in its own __dict__ when they are first read (python 3.10+), not only when set
_LAZY_CLASS_ATTRS = {"__annotations__"}
_INSTANCE = "instance:"   # keys of what the harness's live objects hold (the session, its clock, ...)


def _class_members(key, obj, mod):
    """every attribute in a harness class's own __dict__, by identity: a name added later (a method
    shadowed on T4Session, a __getattribute__) is a key the snapshot did not hold."""
    if not (isinstance(obj, type) and obj.__module__ == mod.__name__):
        return {}
    return {f"{key}.{a}": _identity(v) for a, v in vars(obj).items() if a not in _LAZY_CLASS_ATTRS}


def _harness_classes(package) -> tuple:
    """every class defined in a harness module (its own module's global)."""
    prefix, out = package.__name__ + ".", []
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == package.__name__ or name.startswith(prefix)):
            continue
        out += [obj for obj in vars(mod).values() if isinstance(obj, type) and obj.__module__ == name]
    return tuple(out)


def _instance_entries(package) -> dict[str, str]:
    """the harness objects held by module globals (the session) and by their attributes (its
    clock, stream, event log): the class of each, and any name in the object's own __dict__ that
    hides a method, property or other descriptor of its class (h.finish = ..., h.evaluate = ...).
    an honest run holds none of those; a class swapped for one the harness does not define shows
    as foreign."""
    known = _harness_classes(package)
    prefix, out = package.__name__ + ".", {}

    def walk(path, obj, depth):
        cls = type(obj)
        mark = "" if cls in known else "foreign:"
        out[f"{_INSTANCE}{path}.__class__"] = f"{mark}{cls.__qualname__}@{id(cls)}"
        own = obj.__dict__ if isinstance(getattr(obj, "__dict__", None), dict) else {}
        for n, v in list(own.items()):
            if _hides_class_member(cls, n):
                out[f"{_INSTANCE}{path}.{n}"] = _identity(v)
            elif depth == 0 and isinstance(v, known) and not isinstance(v, type):
                walk(f"{path}.{n}", v, 1)

    for name, mod in sorted(sys.modules.items()):
        if mod is None or not (name == package.__name__ or name.startswith(prefix)):
            continue
        for attr, obj in sorted(vars(mod).items()):
            if isinstance(obj, known) and not isinstance(obj, type):
                walk(f"{name}.{attr}", obj, 0)
    return out


def _hides_class_member(cls, name: str) -> bool:
    """whether an instance attribute `name` hides a callable or descriptor of cls (or a base)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            v = vars(klass)[name]
            return callable(v) or hasattr(type(v), "__get__")
    return False


def _counts_as_added(key: str, value: str, before: dict[str, str], after: dict[str, str]) -> bool:
    """whether a key absent from `before` is an addition to what the snapshot covered: a harness
    object's class is not (an object made since, of a harness class) unless foreign; a harness
    module imported after the snapshot is not, nor any key of it (its name on the package too);
    a key outside every harness module (torch imported since) is not."""
    if key.startswith(_INSTANCE):
        return not key.endswith(".__class__") or value.startswith("foreign:")
    if key.startswith("sys.modules["):
        return False
    modules = {k[len("sys.modules["):-1] for k in (*before, *after) if k.startswith("sys.modules[")}
    owner = max((m for m in modules if key == m or key.startswith(m + ".")), key=len, default=None)
    if owner is None or f"sys.modules[{owner}]" not in before:
        return False
    name = key[len(owner) + 1:]
    if "." in name:  # a name added to a harness class (or to what one holds): always counts
        return True
    # a new module global matters only if the module's own code reads that name (it would shadow
    # a builtin the harness calls, or fill a name it looks up). torch.compile adds globals that
    # no harness code names (__compiled_fn_*, __import_torch, __builtins_dict_*) to the module of
    # every function it compiles; those change nothing the harness does.
    mod = sys.modules.get(owner)
    return mod is None or name in _names_read(mod)


@functools.cache
def _names_read(mod: types.ModuleType) -> frozenset[str]:
    """every name the bytecode of the module's own functions and methods looks up (globals, and
    attributes too: a superset), nested functions and comprehensions included. read once per
    module: a function of it replaced later is itself a change the check reports."""
    names: set[str] = set()

    def walk(code):
        names.update(code.co_names)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                walk(c)

    for obj in list(vars(mod).values()):
        if isinstance(obj, types.FunctionType) and obj.__module__ == mod.__name__:
            walk(obj.__code__)
        elif isinstance(obj, type) and obj.__module__ == mod.__name__:
            for v in list(vars(obj).values()):
                for f in (getattr(v, "__func__", None), getattr(v, "fget", None), getattr(v, "fset", None), v):
                    if isinstance(f, types.FunctionType):
                        walk(f.__code__)
    return frozenset(names)


def remember_code(package: types.ModuleType) -> None:
    """take the snapshot the later checks compare against (harness.launch, before the record)."""
    _state["code_before"] = code_snapshot(package)


def check_code(package: types.ModuleType) -> list[str]:
    """names of harness internals replaced, removed or added since remember_code (changed_functions);
    each is recorded once as a violation."""
    before = _state["code_before"]
    if before is None:
        return []
    changed = changed_functions(before, code_snapshot(package))
    reported = _state.setdefault("code_reported", set())
    fresh = [k for k in changed if k not in reported]
    if fresh:
        reported.update(fresh)
        add_violation("clock_tamper", f"the record replaced or added harness code or the clock's time source: {', '.join(fresh[:4])}"
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
