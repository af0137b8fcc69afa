"""h.finish: the clock's last stop and what the run's claim rests on.

in order: the train clock stops for good and its span is checked against an independent clock;
unexplained progress-eval pause time is charged (harness.eval_pause); the claim's evaluation reads
the val set, served now for the first time, with the causality probe inside it; the held-out
check scores the other half of the never-served tail against val; the data process's own counts
must agree with the session's. the summary it returns is run_end's numbers."""
from __future__ import annotations

import math

import harness
from harness import integrity
from supervisor.causality import Probe
from harness.clock import check_ns, now_ns
from harness.contract_violation import ContractViolation
from harness.device_facts import device_ms_since, scan_dtypes
from harness.eval_pause import charge_pauses, emit_eval
from supervisor.evaluate import StreamWindows

HELDOUT_MARGIN = 0.25  # nats: val this far below never-served train tokens means the model saw val
SPAN_TOLERANCE = 0.01  # train time + eval pauses must match the monotonic span within 1% ...
SPAN_SLACK_MS = 50.0   # ... plus this (scheduling between two clock reads)


def finish(sess, forward) -> dict:
    """Session.finish's body: the clock's last stop, the claim's evaluation, the checks, the summary."""
    import torch

    if sess._finished:
        raise ContractViolation("eval_order", "h.finish() was called twice")
    sess._finished = True
    sess.clock.stop()
    if sess._started:
        sess._compiles_timed = sess._compile_count() - sess._compiles_before - sess._compiles_paused
    span_ms = (check_ns() - sess._span_t0) / 1e6 if sess._span_t0 is not None else None
    _check_span(sess, span_ms)
    charged_ms = charge_pauses(sess)
    pause_t0 = now_ns()
    probe = Probe(sess.vocab_size)
    val = StreamWindows(sess.stream, "val", sess.val_tokens, sess.eval_seq_len, sess.eval_batch_size, sess.device,
                        sess.rank, sess.world_size)
    loss, n, forward_ms, nodes = sess._run_eval(forward, val, probe)
    emit_eval(sess, sess._last_step, loss, n, "val", device_ms_since(pause_t0, sess.device), forward_ms, True, nodes)
    sess._last_eval = {"step": sess._last_step, "val_loss": loss, "full": True, "tokens": sess.tokens}
    sess.eval_time_ms += (now_ns() - pause_t0) / 1e6
    if not math.isfinite(loss):
        raise ContractViolation("nan", f"val loss is {loss} at step {sess._last_step}")
    checks_t0 = now_ns()
    heldout = _heldout_check(sess, forward, loss, probe)
    causal = probe.result()
    dtypes = _claim_dtypes(sess, forward, val.first_row.view(1, sess.eval_seq_len))
    del val
    served = _served_counts(sess)
    watch = served.get("watch") or {}
    integrity.run_checks(harness)
    sess.events.emit("causality", **causal)
    sess.events.emit("heldout", **heldout)
    peak = torch.cuda.max_memory_allocated(sess.device) if sess.device.startswith("cuda") else None
    progress_tokens = sum(p["tokens"] for p in sess._pauses)
    sess.summary = {
        "train_time_ms": sess.clock.elapsed_ms(), "eval_time_ms": sess.eval_time_ms,
        "warmup_time_ms": sess.warmup_time_ms, "checks_time_ms": (now_ns() - checks_t0) / 1e6,
        "tokens": served["tokens_served"], "val_loss": loss, "val_loss_full": True, "steps": sess._last_step,
        "causal": causal["passed"], "max_leak": causal["max_leak"], "causal_reason": _causal_reason(causal),
        "heldout_gap": heldout["gap"],
        "heldout_passed": heldout["passed"], "compiles_in_timed": sess._compiles_timed,
        "peak_memory_bytes": peak, "dtypes": sorted(dtypes), "epochs": served["epoch"],
        "dataset_fingerprint": sess.dataset_fingerprint, "train_span_ms": span_ms,
        "progress_evals": sess._progress_evals, "progress_eval_tokens": progress_tokens,
        "eval_charged_ms": charged_ms, "data_watch": bool(watch.get("watched")),
        "claim_autograd_nodes": nodes,
    }
    return sess.summary


def _claim_dtypes(sess, forward, row) -> set:
    """the dtypes one eval-mode forward of a val row computes in (the watched models put back as they were)."""
    modes = [(m, m.training) for m in sess._watched if hasattr(m, "train")]
    for m, _ in modes:
        m.eval()
    try:
        return scan_dtypes(forward, row, sess._watched)
    finally:
        for m, mode in modes:
            m.train(mode)


def _served_counts(sess) -> dict:
    """the data process's own counts, checked against the session's, and its kernel watch's findings."""
    served = sess.stream.stats()  # reads back the batch in flight first (stream.unused_tokens)
    if served["tokens_served"] != sess.tokens + sess.stream.unused_tokens:
        integrity.add_violation("data_access", f"the data process served {served['tokens_served']:,} tokens; the session counted "
                                               f"{sess.tokens:,} taken and {sess.stream.unused_tokens:,} in flight")
    for detail in (served.get("watch") or {}).get("violations", [])[:5]:
        integrity.add_violation("data_access", f"dataset file opened around the harness stream: {detail}")
    return served


def _check_span(sess, span_ms: float | None) -> None:
    """the clock's train time plus the eval pauses must add up to the monotonic span of training."""
    if span_ms is None:
        return
    accounted_ms = (sess.clock.elapsed_ns - sess._warmup_excess_ns + sess._pause_ns_in_span) / 1e6
    if abs(span_ms - accounted_ms) > SPAN_TOLERANCE * span_ms + SPAN_SLACK_MS:
        integrity.add_violation("clock_tamper", f"train time + eval pauses ({accounted_ms:.0f} ms) do not add up to the "
                                                f"training span on an independent clock ({span_ms:.0f} ms)")


def _heldout_check(sess, forward, val: float, probe: Probe) -> dict:
    """the loss on the check's half of the never-served tail (served now, once) against val."""
    tail = StreamWindows(sess.stream, "check", sess.stream.check_tokens, sess.eval_seq_len, sess.eval_batch_size,
                         sess.device, sess.rank, sess.world_size)
    loss, n, _, _ = sess._run_eval(forward, tail, probe)
    gap = loss - val
    return {"heldout_loss": loss, "val_loss": val, "gap": gap, "tokens": n, "margin": HELDOUT_MARGIN,
            "passed": bool(math.isfinite(gap) and gap <= HELDOUT_MARGIN)}


def _causal_reason(c: dict) -> str:
    """why the probe failed, in one clause (empty when it passed)."""
    if c["passed"]:
        return ""
    if not c["probed_batches"]:
        return "no evaluation batch could be probed"
    if not c["deterministic"]:
        return (f"the forward is not deterministic: two identical calls differ by {c['noise']:.3g} "
                f"(at most {c['noise_ceiling']:.3g} allowed; dropout left on?)")
    if c["cross_batch_leak"] > c["tolerance"]:
        return f"logits of one row moved by {c['cross_batch_leak']:.4g} when other rows of the batch changed"
    return f"logits at earlier positions moved by {c['max_leak']:.4g} when later tokens changed"
