"""the claim's model, outside the record's process: the exported forward bound to the handed-over
weights.

the record hands over two things (harness/handover.py): `weights.bin` + `weights.json`, written
while the train clock still ran, and `forward.pt2`, the forward exported afterwards. the graph
file carries its own copies of the tensors; none of them is used. every tensor the graph reads
is bound from weights.bin by name (a lifted constant by equal content), so work done after the
clock stopped cannot change a weight. the graph may only call aten operators (no file access),
the autocast and grad-mode wrappers and python's arithmetic on sizes, and may not write to any
of its tensors: a forward that keeps state between calls cannot be exported this way.

loading runs no pickle of the record's: torch.load is forced to weights_only."""
from __future__ import annotations

import json
import operator
import os
import pickle
from pathlib import Path

SMALL_CONSTANT = 64        # elements: a constant made while tracing (a scalar, a tiny table) may be bound as it is
DENIED_ATEN = {"from_file", "_debug_has_internal_overlap"}   # aten ops that reach outside the graph's tensors
ALLOWED_HOPS = {"wrap_with_autocast", "wrap_with_set_grad_enabled"}
SIZE_OPS = {operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
            operator.mod, operator.neg, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge}


class GraphRefused(ValueError):
    """the handed-over forward is not a graph the scorer will run (one line: what and why)."""


def read_weights(folder: Path, device: str) -> dict:
    """name -> tensor on the device, from weights.json and weights.bin (aliases share storage)."""
    import torch

    index = json.loads((folder / "weights.json").read_text())
    path = folder / "weights.bin"
    size = os.path.getsize(path)
    if size < index["bytes"]:
        raise GraphRefused(f"weights.bin holds {size} bytes; weights.json says {index['bytes']}")
    raw = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8) if size else torch.zeros(0, dtype=torch.uint8)
    by_offset, out = {}, {}
    for e in index["tensors"]:
        dtype = getattr(torch, e["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise GraphRefused(f"weights.json: tensor {e['name']} has an unknown dtype {e['dtype']!r}")
        key = (e["offset"], e["dtype"], tuple(e["shape"]))
        if key not in by_offset:
            n = e["nbytes"]
            t = raw[e["offset"]:e["offset"] + n].view(dtype).view(e["shape"]) if n else torch.zeros(e["shape"], dtype=dtype)
            by_offset[key] = t.to(device)
        out[e["name"]] = by_offset[key]
    return out


def load_program(path: Path):
    """torch.export.load with every torch.load in it held to weights_only (no pickle runs)."""
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    import torch
    import torch._export.serde.serialize as serde

    def weights_only(serialized):
        import io

        if isinstance(serialized, (dict, tuple)):
            return serialized
        if not serialized:
            return {}
        return torch.load(io.BytesIO(serialized), weights_only=True)

    serde.deserialize_torch_artifact = weights_only
    try:
        return torch.export.load(path)
    except pickle.UnpicklingError as e:   # weights_only met something that is not a tensor or a plain value
        raise GraphRefused(f"forward.pt2 holds a pickled object the scorer will not load: {str(e).splitlines()[0][:200]}") from None


def check_ops(ep) -> dict:
    """every node of the graph and its subgraphs, held to the allowed calls; returns a summary
    (node count, the aten operators used)."""
    import torch

    sig = ep.graph_signature
    mutated = [*sig.buffers_to_mutate, *sig.user_inputs_to_mutate] if hasattr(sig, "user_inputs_to_mutate") else list(sig.buffers_to_mutate)
    if mutated:
        raise GraphRefused(f"the forward writes to its own tensors ({', '.join(map(str, mutated[:3]))}): a claim's "
                           "forward must give the same logits for the same input every time")
    ops, nodes = set(), 0
    graphs = [ep.graph_module] + [m for m in ep.graph_module.modules() if m is not ep.graph_module and hasattr(m, "graph")]
    for gm in graphs:
        for n in gm.graph.nodes:
            nodes += 1
            if n.op != "call_function":
                continue
            t = n.target
            if isinstance(t, torch._ops.OpOverload):
                ns, name = t.namespace, t._schema.name.split("::")[-1]
                if ns != "aten" or name in DENIED_ATEN:
                    raise GraphRefused(f"the forward calls {t}, which the scorer does not run (only aten operators)")
                ops.add(str(t))
            elif isinstance(t, torch._ops.HigherOrderOperator):
                if t.name() not in ALLOWED_HOPS:
                    raise GraphRefused(f"the forward uses the higher-order operator {t.name()}, which the scorer does not run")
            elif t not in SIZE_OPS and getattr(t, "__module__", None) not in ("math", "_operator"):
                raise GraphRefused(f"the forward calls {getattr(t, '__qualname__', t)}, which is not an aten operator")
    return {"nodes": nodes, "aten_ops": sorted(ops)}


def _assign(root, dotted: str, tensor, parameter: bool) -> None:
    import torch

    *path, leaf = dotted.split(".")
    mod = root
    for p in path:
        mod = getattr(mod, p)
    if parameter:
        mod._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    elif leaf in getattr(mod, "_buffers", {}):
        mod._buffers[leaf] = tensor
    else:
        setattr(mod, leaf, tensor)


def bind(ep, weights: dict):
    """the runnable module, every tensor it reads taken from the handed-over weights."""
    import torch

    gm = ep.module()
    params = dict(gm.named_parameters())
    bufs = dict(gm.named_buffers())
    bound = 0
    for name, t in [*params.items(), *bufs.items()]:
        w = weights.get(name)
        if w is None:
            raise GraphRefused(f"the graph reads {name}, which the handover did not write (weights.json)")
        if tuple(w.shape) != tuple(t.shape) or w.dtype != t.dtype:
            raise GraphRefused(f"{name}: the graph has {tuple(t.shape)} {t.dtype}, the handover {tuple(w.shape)} {w.dtype}")
        _assign(gm, name, w, name in params)
        bound += 1
    by_content = list(weights.values())
    for n in gm.graph.nodes:   # lifted constants the graph reads by attribute
        if n.op != "get_attr" or n.target in params or n.target in bufs:
            continue
        obj = gm
        for p in n.target.split("."):
            obj = getattr(obj, p)
        if not isinstance(obj, torch.Tensor):
            continue
        match = next((w for w in by_content if w.shape == obj.shape and w.dtype == obj.dtype
                      and torch.equal(w.cpu(), obj.cpu())), None)
        if match is None and obj.numel() > SMALL_CONSTANT:
            raise GraphRefused(f"the graph holds a constant {n.target} of {obj.numel()} elements that is not one of "
                               "the handed-over tensors (register it as a buffer)")
        _assign(gm, n.target, match if match is not None else obj.to(next(iter(weights.values())).device), False)
        bound += 1
    return gm, bound   # traced in eval mode; an exported module refuses .eval()
