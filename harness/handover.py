"""h.finish(forward): hand the final weights over, then the forward as a graph.

1. the tensors the forward can reach (the parameters and buffers of the modules it closes over,
   and any tensor it names directly) are written into `weights.bin` of the handover folder, with
   their names, dtypes, shapes and offsets in `weights.json`. the supervisor stops the train
   clock when it is told they are written: the handover is part of training.
2. then, off the clock, the forward is exported with torch.export (a dynamic batch dimension)
   into `forward.pt2`. the supervisor's scorer runs that graph with the weights of step 1 (never
   the copies inside the graph file), so work done after the clock stopped cannot change them.
3. a forward torch.export cannot trace (data-dependent control flow) is pickled instead
   (`forward.pkl`, cloudpickle, every tensor a reference into weights.bin): the supervisor then
   runs it in a fresh isolated process of its own and reads its logits (slower, and a forward
   that keeps state between calls is caught only by repeated batches; docs/trust.md).

only rank 0 hands over (the ranks hold the same weights); the others tell the supervisor they
are done."""
from __future__ import annotations

import functools
import inspect
import io
import json
import logging
import os
import time
import types
from pathlib import Path

ALIGN = 64  # every tensor starts at a multiple of this in weights.bin
INLINE_TENSOR_MAX = 65536  # elements: an integer tensor the forward holds that may travel inside forward.pkl


def _user_code(fn, record_dir: str | None) -> bool:
    """a function of the record's own files (or __main__): walked for what it references."""
    try:
        path = inspect.getsourcefile(fn) or ""
    except TypeError:
        return False
    mod = getattr(fn, "__module__", "") or ""
    return mod == "__main__" or (record_dir is not None and os.path.abspath(path).startswith(record_dir))


def forward_modules(forward, record_dir: str | None = None) -> tuple[list, list]:
    """(modules, loose tensors) the forward reaches: through its closure, the globals its code
    names, default arguments, bound methods and partials, recursively through the record's own
    functions (never into torch's). modules inside another found module are left out."""
    import torch

    modules: list = []
    tensors: list = []
    seen: set[int] = set()

    def names_of(code) -> set[str]:
        names = set(code.co_names)
        for c in code.co_consts:
            if inspect.iscode(c):
                names |= names_of(c)
        return names

    def walk(obj, depth: int) -> None:
        if id(obj) in seen or depth > 12:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            modules.append(obj)
            for cls in type(obj).__mro__:   # the module's own code may name a global tensor
                for attr in vars(cls).values():
                    if inspect.isfunction(attr) and _user_code(attr, record_dir):
                        walk(attr, depth + 1)
        elif isinstance(obj, torch.Tensor):
            tensors.append(obj)
        elif isinstance(obj, types.MethodType):
            walk(obj.__self__, depth + 1)
            walk(obj.__func__, depth + 1)
        elif isinstance(obj, functools.partial):
            for x in (obj.func, *obj.args, *obj.keywords.values()):
                walk(x, depth + 1)
        elif inspect.isfunction(obj):
            if not _user_code(obj, record_dir) and depth > 0:
                return
            for cell in obj.__closure__ or ():
                try:
                    walk(cell.cell_contents, depth + 1)
                except ValueError:   # an empty cell
                    pass
            for x in (obj.__defaults__ or ()) + tuple((obj.__kwdefaults__ or {}).values()):
                walk(x, depth + 1)
            g = obj.__globals__
            for name in names_of(obj.__code__):
                if name in g:
                    walk(g[name], depth + 1)
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                walk(x, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)

    walk(forward, 0)
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    modules = [m for m in modules if id(m) not in inner]
    owned = {id(t) for m in modules for t in (*m.parameters(), *m.buffers())}
    tensors = [t for t in tensors if id(t) not in owned]
    return modules, tensors


def claim_model(forward, modules: list, tensors: list):
    """an nn.Module around the forward, its modules registered (their tensors get stable names:
    m0.embed.weight, ...) and its loose tensors as buffers t0, t1, ..."""
    import torch

    class ClaimModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for i, m in enumerate(modules):
                self.add_module(f"m{i}", m)
            for j, t in enumerate(tensors):
                self.register_buffer(f"t{j}", t, persistent=False)
            object.__setattr__(self, "_fn", forward)   # a plain attribute even when it is a module itself

        def forward(self, x):
            return self._fn(x)

    return ClaimModel()


def write_weights(model, folder: Path) -> dict:
    """every parameter and buffer of the claim model into weights.bin (host memory mapped from
    the file, filled by one copy a tensor), the index into weights.json; returns the index."""
    import torch

    items = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    entries, first, offset = [], {}, 0
    for name, t in items:
        key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), str(t.device))
        if key in first:   # a tied weight: stored once, named twice
            entries.append({**first[key], "name": name})
            continue
        nbytes = t.numel() * t.element_size()
        e = {"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "offset": offset,
             "nbytes": nbytes, "device": str(t.device)}
        first[key] = e
        entries.append(e)
        offset += -(-nbytes // ALIGN) * ALIGN
    path = folder / "weights.bin"
    with open(path, "wb") as f:
        f.truncate(offset)
    if offset:
        buf = torch.from_file(str(path), shared=True, size=offset, dtype=torch.uint8)
        done = set()
        with torch.no_grad():
            for (_, t), e in zip(items, entries):
                if e["offset"] in done or not e["nbytes"]:
                    continue
                done.add(e["offset"])
                dst = buf[e["offset"]:e["offset"] + e["nbytes"]].view(t.dtype).view(t.shape)
                dst.copy_(t.detach())
        del buf
    index = {"tensors": entries, "bytes": offset}
    (folder / "weights.json").write_text(json.dumps(index))
    return index


def export_forward(model, sess, folder: Path) -> None:
    """forward.pt2: the claim model exported with a dynamic batch dimension, on the device."""
    import torch

    B, T = sess.eval_batch_size, sess.eval_seq_len
    example = torch.randint(0, sess.vocab_size, (max(B, 2), T), device=sess.device)
    dims = ({0: torch.export.Dim("batch", min=1, max=max(B, 2))},)
    quiet = [logging.getLogger(name) for name in ("torch", "torch.export", "torch._export", "torch.fx")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:   # a forward that cannot be traced goes by value: torch's graph dump helps nobody
        lg.setLevel(logging.CRITICAL)
    try:
        with torch.no_grad():   # traced as the claim calls it: inference, no autograd
            ep = torch.export.export(model, (example,), dynamic_shapes=dims, strict=False)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    torch.export.save(ep, folder / "forward.pt2")


SESSION_FIELDS = ("seed", "seq_len", "batch_size", "grad_accum", "steps", "budget_tokens", "vocab_size", "local_batch_size",
                  "eval_seq_len", "eval_batch_size", "rank", "world_size", "local_rank", "is_main", "device")


def pickle_forward(forward, model, index: dict, folder: Path, sess=None) -> None:
    """forward.pkl: the forward by value (cloudpickle), every tensor a reference into weights.bin.
    a float tensor the handover did not write has no place in it: the pickle refuses it. the session
    goes as a reference too: the claim server stands in a read-only copy of its settings
    (session.json) for it."""
    import cloudpickle
    import torch

    if sess is not None:
        (folder / "session.json").write_text(json.dumps({**{k: getattr(sess, k) for k in SESSION_FIELDS},
                                                          "args": dict(sess.args)}))
    names = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(t), name)

    class Pickler(cloudpickle.Pickler):
        def persistent_id(self, obj):
            if sess is not None and obj is sess:
                return "__session__"
            if isinstance(obj, torch.Tensor) and id(obj) in names:
                return names[id(obj)]
            if isinstance(obj, torch.Tensor) and (obj.is_floating_point() or obj.numel() > INLINE_TENSOR_MAX):
                raise ValueError(f"the forward holds a tensor of shape {tuple(obj.shape)} that is not a parameter or "
                                 "buffer of its modules: register it as a buffer so it is handed over with the weights")
            return None   # a small integer tensor (a generator's state, an index) travels inside the pickle

    buf = io.BytesIO()
    Pickler(buf, protocol=5).dump(forward)
    (folder / "forward.pkl").write_bytes(buf.getvalue())


def hand_over(sess, forward) -> dict:
    """Session.finish's body."""
    import torch

    if sess.device.startswith("cuda"):
        torch.cuda.synchronize(sess.device)
    if not sess.is_main:
        sess.tell("finished")
        return {}
    folder = Path(sess.config["handover_dir"])
    modules, tensors = forward_modules(forward, sess.config.get("record_dir"))
    for m in modules:
        m.eval()
    model = claim_model(forward, modules, tensors)
    t0 = time.perf_counter()
    index = write_weights(model, folder)
    from harness.session_api import compile_count

    peak = torch.cuda.max_memory_allocated(sess.device) if sess.device.startswith("cuda") else None
    sess.tell("handover", bytes=index["bytes"], tensors=len(index["tensors"]), modules=len(modules),
              write_ms=(time.perf_counter() - t0) * 1000, peak_memory_bytes=peak, compiles=compile_count())
    t1 = time.perf_counter()
    try:
        export_forward(model, sess, folder)
        sess.tell("exported", path="forward.pt2", export_ms=(time.perf_counter() - t1) * 1000)
    except Exception as e:  # not traceable: the forward goes by value instead
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        try:
            pickle_forward(forward, model, index, folder, sess)
        except Exception as e2:
            sess.tell("export_failed", reason=reason, pickle=f"{type(e2).__name__}: {e2}")
            raise RuntimeError(f"the forward could neither be exported ({reason}) nor pickled ({e2})") from None
        sess.tell("exported", path="forward.pkl", export_ms=(time.perf_counter() - t1) * 1000, export_error=reason)
    return {"handover_bytes": index["bytes"]}
