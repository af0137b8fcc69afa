"""the evaluation pause: a progress eval (h.evaluate) and the checks every evaluation runs under.

a progress eval scores the progress slice (half of the never-served end of the train split, never
the val set) with the train clock paused, for at most MAX_UNTIMED_PROGRESS_EVALS of them. inside
any pause (progress evals and the claim's evaluation in h.finish alike) the weights, gradients and
every live model's sums must come out unchanged and no train batch may be taken; each pause's
tokens, forward time and autograd nodes are recorded, and at finish a pause whose forwards took
longer than PAUSE_COST_FACTOR train tokens' worth of time per token is charged the excess."""
from __future__ import annotations

import math

import harness
from harness import integrity
from supervisor.causality import Probe
from harness.clock import check_ns, device_sync, now_ns
from harness.contract_violation import ContractViolation
from harness.dataserver import DataServerError
from harness.device_facts import device_ms_since
from supervisor.evaluate import TensorWindows, val_loss
from supervisor.events import eval_line, say
from harness.watch import all_parameter_sums, autograd_nodes, changed_since, live_parameters

MAX_UNTIMED_PROGRESS_EVALS = 100  # progress evals past this many run on the train clock
PAUSE_COST_FACTOR = 3.0  # a progress eval's forwards may cost this many times a train token each ...
COMPILING_PAUSES_EXEMPT = 2  # ... except the first pauses in which torch compiles (recorded either way)
# the autograd nodes a pause makes on the evaluating thread are recorded, not judged: every
# torch.autograd.Function call makes one even under no_grad (a compiled GPT's evaluation on an
# H200: ~97 a batch), so the count cannot tell an honest forward from a hidden backward


def progress_eval(sess, forward, step: int | None, val_tokens: int | None) -> float:
    """Session.evaluate's body: the progress slice's loss, with the clock paused while untimed."""
    if sess._finished:
        raise ContractViolation("eval_order", "h.evaluate() after h.finish()")
    if not sess._started:
        sess._begin_training()  # the record is shown tokens from here on: the clock runs
    untimed = sess._progress_evals < MAX_UNTIMED_PROGRESS_EVALS
    sess._progress_evals += 1
    was_running = sess.clock.running
    if untimed:
        sess.clock.stop()
    pause_t0, span_pause_t0 = now_ns(), check_ns()
    compiles_t0 = sess._compile_count()
    if sess._progress_device is None:
        import torch

        sess._progress_device = torch.from_numpy(sess.stream.progress()).to(sess.device)
    tokens = sess._progress_device
    if val_tokens is not None:
        tokens = tokens[: int(val_tokens)]
    source = TensorWindows(tokens, sess.eval_seq_len, sess.eval_batch_size, sess.rank, sess.world_size)
    loss, n, forward_ms, nodes = sess._run_eval(forward, source, None)
    integrity.run_checks(harness)
    compiled = sess._compile_count() - compiles_t0
    step = sess._last_step if step is None else int(step)
    if untimed:
        sess._pauses.append({"tokens": n, "forward_ms": forward_ms, "compiled": compiled, "autograd_nodes": nodes})
    sess._last_eval = {"step": step, "val_loss": loss, "full": False, "tokens": sess.tokens}
    emit_eval(sess, step, loss, n, "progress", device_ms_since(pause_t0, sess.device), forward_ms, untimed, nodes)
    if not math.isfinite(loss):
        raise ContractViolation("nan", f"progress loss is {loss} at step {step}")
    if untimed:
        # the whole pause counts as eval time: the clock check adds train + pauses up to the span
        sess.eval_time_ms += (now_ns() - pause_t0) / 1e6
        sess._compiles_paused += compiled
        if was_running:
            sess._pause_ns_in_span += check_ns() - span_pause_t0
            sess.clock.start()
    return loss


def emit_eval(sess, step: int, loss: float, n: int, split: str, ms: float, forward_ms: float, untimed: bool,
              nodes: int) -> None:
    """the `eval` event (with the settings the runner checks against config.json) and its stdout line."""
    full = split == "val"
    sess.events.emit("eval", step=step, tokens=sess.tokens, train_time_ms=sess.clock.elapsed_ms(), val_loss=loss,
                     val_tokens=n, full=full, split=split, eval_time_ms=ms, forward_ms=forward_ms, untimed=untimed,
                     autograd_nodes=nodes,
                     eval_seq_len=sess.eval_seq_len, eval_batch_size=sess.eval_batch_size)
    say(eval_line(step, sess.steps, sess._last_train_loss, loss, sess.clock.elapsed_ms(), sess.tokens, full), sess.is_main)


def run_eval(sess, forward, source, probe: Probe | None) -> tuple[float, int, float, int]:
    """Session._run_eval's body: supervisor.evaluate.val_loss in eval mode, watching for training work
    inside the pause: parameters, gradients and optimizer state must come out unchanged, and no
    train batch may be served. returns (loss, predicted tokens, forward ms, autograd nodes made on
    this thread)."""
    before = integrity.param_digest(sess._watched, with_grads=True)
    # every model, watched or not: one scan of the heap finds them; the same tensors are read
    # again afterwards (training work inside the pause has to move a tensor alive before it)
    live = live_parameters()
    live_before = all_parameter_sums(with_grads=True, params=live)
    modes = [(m, m.training) for m in sess._watched if hasattr(m, "train")]
    for m, _ in modes:
        m.eval()
    sess._in_eval = True
    sync = device_sync(sess.device)
    try:
        sync()
        nodes_t0, fwd_t0 = autograd_nodes(), now_ns()
        try:
            loss, n = val_loss(forward, source, sess.vocab_size, sess.world_size, probe=probe, device=sess.device)
        except DataServerError as e:  # someone else read this evaluation's tokens from the data process
            kind = "val" if getattr(source, "kind", "") == "val" else "heldout"
            raise ContractViolation(kind, f"{str(e).partition(': ')[2] or e} (the record read the evaluation's tokens itself)") from None
        sync()
        forward_ms, nodes = (now_ns() - fwd_t0) / 1e6, autograd_nodes() - nodes_t0
    finally:
        sess._in_eval = False
        for m, mode in modes:
            m.train(mode)
    moved = changed_since(live_before, all_parameter_sums(with_grads=True, params=live))
    del live
    if moved or integrity.param_digest(sess._watched, with_grads=True) != before:
        raise ContractViolation("eval_training", f"the model's parameters or gradients changed during evaluation ({moved} tensors; "
                                                 "training work inside the eval pause)")
    return loss, n, forward_ms, nodes


def charge_pauses(sess) -> float:
    """an untimed progress eval whose forwards took longer than PAUSE_COST_FACTOR train tokens'
    worth of time per token evaluated did work its forwards cannot explain: the excess is train
    time. pauses in which torch compiled are let off (the first COMPILING_PAUSES_EXEMPT)."""
    if not sess._pauses or not sess.tokens:
        return 0.0
    ms_per_token = sess.clock.elapsed_ms() / sess.tokens
    excess, compiling = 0.0, 0
    for p in sess._pauses:
        if p["compiled"]:
            compiling += 1
            if compiling <= COMPILING_PAUSES_EXEMPT:
                continue
        excess += max(0.0, p["forward_ms"] - PAUSE_COST_FACTOR * p["tokens"] * ms_per_token)
    if excess > 0:
        sess.clock.charge_ns(int(excess * 1e6))
        sess.eval_time_ms -= excess
        sess.events.emit("eval_charge", charged_ms=excess, ms_per_train_token=ms_per_token, factor=PAUSE_COST_FACTOR)
    return excess
