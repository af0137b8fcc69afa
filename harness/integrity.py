"""what the harness watches while record code runs: data access, parameter digests, its own code.

none of this makes cheating impossible inside one python process; it makes the usual ways of
cheating leave a trace (docs/trust.md lists what a reviewer still has to read for)."""
from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

_state = {"data_dir": None, "armed": False, "violations": [], "allow": 0}


def install_data_guard(data_dir: str) -> None:
    """after this, opening any file inside the dataset folder is a violation (the harness has
    memory-mapped what it serves already). the hook cannot be removed once added."""
    _state["data_dir"] = os.path.realpath(data_dir)
    _state["armed"] = True
    if not _state.get("hooked"):
        sys.addaudithook(_audit)
        _state["hooked"] = True


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _state["armed"] or _state["allow"]:
        return
    path = args[0] if args else None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return
    real = os.path.realpath(path)
    root = _state["data_dir"]
    if real == root or real.startswith(root + os.sep):
        detail = f"record opened dataset file {real} directly instead of using the harness stream"
        _state["violations"].append({"kind": "data_access", "detail": detail})
        raise PermissionError(detail)


def violations() -> list[dict]:
    return list(_state["violations"])


def add_violation(kind: str, detail: str) -> None:
    _state["violations"].append({"kind": kind, "detail": detail})


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
    float64 sums on the device, hashed. any in-place update changes it with overwhelming probability."""
    import torch

    h = hashlib.sha256()
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
                h.update(torch.stack(vals).cpu().numpy().tobytes())
    return h.hexdigest()


def code_snapshot(package: types.ModuleType) -> dict[str, str]:
    """fingerprints of every function and method defined in the harness's modules, taken before
    the record runs; a record that replaces one (monkeypatching the clock, say) changes it."""
    snap = {}
    prefix = package.__name__ + "."
    for name, mod in sorted(sys.modules.items()):
        if mod is None or not (name == package.__name__ or name.startswith(prefix)):
            continue
        for attr, obj in sorted(vars(mod).items()):
            for key, fn in _functions(f"{name}.{attr}", obj, mod):
                snap[key] = _code_id(fn)
    return snap


def _functions(key, obj, mod):
    if isinstance(obj, types.FunctionType) and obj.__module__ == mod.__name__:
        yield key, obj
    elif isinstance(obj, type) and obj.__module__ == mod.__name__:
        for a, v in sorted(vars(obj).items()):
            if isinstance(v, (staticmethod, classmethod)):
                v = v.__func__
            if isinstance(v, types.FunctionType):
                yield f"{key}.{a}", v


def _code_id(fn) -> str:
    c = fn.__code__
    return hashlib.sha256(c.co_code + repr(c.co_consts).encode() + repr(c.co_names).encode()).hexdigest()[:16] + f"@{id(fn)}"


def changed_functions(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before if after.get(k) != before[k])


def package_files_digest(root: Path) -> str:
    """sha256 over the harness package's source files on disk (the runner compares before/after)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
