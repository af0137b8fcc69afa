"""the record's one untimed warm-up section (`with h.warmup(model, optimizer): ...`).

a record compiles on dummy data here. the section takes no train batch, is capped (time past the
cap is charged to the train clock), and on exit puts back every handed-in object's state_dict and
checks that nothing else trained: the digest of the handed-in objects, every live parameter and
every live optimizer. the digest is taken again at the first train batch (Session._begin_training)."""
from __future__ import annotations

from contextlib import contextmanager

from harness import integrity
from harness.clock import device_sync, now_ns
from harness.contract_violation import ContractViolation
from harness.watch import all_parameter_sums, changed_parameters, optimizer_digests, stepped_optimizers, to_cpu


@contextmanager
def warmup_section(sess, objs: tuple, reset: bool = True):
    """Session.warmup's body: the section itself, timed on the device and checked on exit."""
    import torch

    if sess._started:
        raise ContractViolation("warmup_order", "the warm-up must come before the first train batch")
    if sess._warmups:
        raise ContractViolation("warmup_twice", "a record may declare one warm-up section")
    sess._warmups += 1
    sess.watch(*[o for o in objs if isinstance(o, torch.nn.Module)])
    stateful = [o for o in objs if hasattr(o, "state_dict") and hasattr(o, "load_state_dict")]
    before = integrity.param_digest(stateful)
    params_before = all_parameter_sums()
    optims_before = optimizer_digests()
    snapshot = [to_cpu(o.state_dict()) for o in stateful] if reset else None
    sess.events.emit("warmup_start")
    sync = device_sync(sess.device)
    sync()
    t0 = now_ns()
    sess._in_warmup = True
    try:
        yield
    finally:
        sess._in_warmup = False
        sync()
        elapsed_ms = (now_ns() - t0) / 1e6
        if snapshot is not None:
            for o, sd in zip(stateful, snapshot):
                o.load_state_dict(sd)
        after = integrity.param_digest(stateful)
        sess._post_warmup_digest = integrity.param_digest(sess._watched) if sess._watched else None
        stray = changed_parameters(params_before, stateful)
        stray_optims = stepped_optimizers(optims_before, stateful)
        capped = elapsed_ms > sess.warmup_cap_ms
        sess.warmup_time_ms = min(elapsed_ms, sess.warmup_cap_ms)
        if capped:  # time past the cap is training time
            sess._warmup_excess_ns = int((elapsed_ms - sess.warmup_cap_ms) * 1e6)
            sess.clock.charge_ns(sess._warmup_excess_ns)
        sess.events.emit("warmup_end", warmup_time_ms=elapsed_ms, capped=capped, restored=reset)
    if after != before:
        raise ContractViolation("warmup_reset", "the warm-up changed the model or optimizer state and did not reset it")
    if stray:
        raise ContractViolation("warmup_reset", f"{stray} parameter tensors not handed to h.warmup() changed during the warm-up")
    if stray_optims:
        raise ContractViolation("warmup_reset", f"{stray_optims} optimizer(s) not handed to h.warmup() stepped during the warm-up "
                                                "(a shadow model trained untimed)")

