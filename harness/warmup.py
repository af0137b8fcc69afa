"""the record's one warm-up section (`with h.warmup(model, *optimizers, scaler): ...`).

a record compiles on dummy data here. the section takes no train batch, and on exit every
handed-in object's state_dict is put back, so the first timed step starts from the state the
model had before it. this is a convenience the records rely on, not a guarantee: the section is
part of the setup, which the supervisor times from outside and caps (docs/trust.md)."""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager

from harness.contract_violation import ContractViolation


def to_cpu(obj):
    """a deep copy of a state_dict with every tensor on the cpu."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


@contextmanager
def warmup_section(sess, objs: tuple, reset: bool = True):
    """Session.warmup's body."""
    if sess._started:
        raise ContractViolation("warmup_order", "the warm-up must come before the first train batch")
    if sess._warmups:
        raise ContractViolation("warmup_twice", "a record may declare one warm-up section")
    sess._warmups += 1
    stateful = [o for o in objs if hasattr(o, "state_dict") and hasattr(o, "load_state_dict")]
    snapshot = [to_cpu(o.state_dict()) for o in stateful] if reset else None
    sess.tell("warmup", phase="start")
    _sync(sess.device)
    t0 = time.perf_counter()
    sess._in_warmup = True
    try:
        yield
    finally:
        sess._in_warmup = False
        _sync(sess.device)
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if snapshot is not None:
            for o, sd in zip(stateful, snapshot):
                o.load_state_dict(sd)
        sess.tell("warmup", phase="end", elapsed_ms=elapsed_ms, restored=snapshot is not None)
