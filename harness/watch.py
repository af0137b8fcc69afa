"""what the session watches in the whole process: every live parameter and optimizer.

the warm-up and the evaluation pause must leave the record's models alone, and not only the ones
handed to the harness: a shadow copy trained untimed and copied in later is the obvious cheat.
gc finds every nn.Parameter and optimizer alive; sums of each (and of its gradient) are enough to
see an in-place update."""
from __future__ import annotations

from harness import integrity

# torch's count of autograd nodes made on this thread (every op that records for backward adds
# one). captured by capture_autograd_counter() before any record code runs: a record that rebinds
# torch's function afterwards does not reach this reference, and rebinding this global shows in
# integrity.code_snapshot. python hooks (saved-tensor hooks, modes) can be stacked over or popped
# by a record; this c++ counter cannot be reset from python.
_AUTOGRAD_NODES = None


def capture_autograd_counter() -> None:
    global _AUTOGRAD_NODES
    import torch

    _AUTOGRAD_NODES = torch._C._autograd._get_sequence_nr


def autograd_nodes() -> int:
    return _AUTOGRAD_NODES() if _AUTOGRAD_NODES is not None else 0


def to_cpu(obj):
    import copy

    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def live_parameters() -> list:
    """every nn.Parameter alive in the process (the record's models, shadows included)."""
    import gc
    import warnings

    import torch

    # membership of the exact type in Parameter and all its subclasses: isinstance() would call
    # Parameter's __instancecheck__ on every object (it raises on a dead weakref proxy, which
    # torch.compile leaves behind), and a set lookup is half the cost of issubclass() on the
    # ~600k objects a compiled run holds (this scan is most of an evaluation's fixed cost)
    kinds, todo = set(), [torch.nn.Parameter]
    while todo:
        c = todo.pop()
        if c not in kinds:
            kinds.add(c)
            todo.extend(c.__subclasses__())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [o for o in gc.get_objects() if type(o) in kinds and o.numel()]


def all_parameter_sums(with_grads: bool = False, params: list | None = None) -> dict[int, tuple]:
    """(sum, sum of squares[, the same of its grad]) per live parameter (or per one of `params`, a
    list taken earlier by live_parameters()), read back in one copy."""
    import torch

    params = live_parameters() if params is None else params
    if not params:
        return {}
    by_device: dict = {}
    with torch.no_grad():
        for p in params:
            d = p.detach().double()
            vals = [d.sum(), (d * d).sum()]
            if with_grads:
                g = p.grad.detach().double() if p.grad is not None else torch.zeros((), dtype=torch.float64, device=p.device)
                vals += [g.sum(), (g * g).sum(), torch.tensor(float(p.grad is not None), dtype=torch.float64, device=p.device)]
            by_device.setdefault(p.device, []).append((id(p), torch.stack(vals)))
        out = {}
        for rows in by_device.values():  # one copy to the host per device
            table = torch.stack([v for _, v in rows]).cpu().tolist()
            out.update({k: tuple(row) for (k, _), row in zip(rows, table)})
    return out


def changed_since(before: dict[int, tuple], after: dict[int, tuple], skip: set[int] = frozenset()) -> int:
    """parameters alive both times (and not in skip) whose sums moved."""
    return sum(1 for k, v in after.items() if k in before and k not in skip and before[k] != v)


def optimizer_digests() -> dict[int, str]:
    """a state digest per live torch optimizer, to catch one stepping a shadow model in warm-up."""
    import gc
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on every object trips deprecated aliases
        optims = [o for o in gc.get_objects() if issubclass(type(o), torch.optim.Optimizer)]
    return {id(o): integrity.param_digest([o]) for o in optims}


def stepped_optimizers(before: dict[int, str], handed) -> int:
    """optimizers not handed to h.warmup() whose state changed (or appeared) during it."""
    after = optimizer_digests()
    handed_ids = {id(o) for o in handed}
    empty = integrity.param_digest([])
    return sum(1 for k, d in after.items() if k not in handed_ids and d != before.get(k, empty))


def changed_parameters(before: dict[int, tuple], restored) -> int:
    """parameters not handed to h.warmup() that changed during it."""
    import torch

    handed = {id(t) for o in restored for t in (o.state_dict(keep_vars=True).values() if isinstance(o, torch.nn.Module) else [])}
    return changed_since(before, all_parameter_sums(), handed)
