"""a run's status, decided by the supervisor from what it saw, and run_end's numbers.

the record's own account (its `ended` message: a traceback, a contract violation it found in
itself) can only make a run worse: it explains a failure, it never completes a run. a run is
completed only when rank 0 handed over its weights, the forward reached the scorer, the scorer
scored it, the probe found it causal and stateless, the held-out check passed, and nobody
reported a violation."""
from __future__ import annotations

import math
import signal

REFUSED_DTYPES = ("bfloat16", "float8")
# the claim's forwards may cost CLAIM_COST_FACTOR times a train token's share of a rank's train time per
# token they read, plus CLAIM_CALL_SLACK_MS a call; beyond that, their time is train time. an honest
# forward costs 0.34-0.44 of a train token on a gpu (docs/trust.md): the excess is work that predicting cannot
# explain (a copy trained inside the evaluation, a model that trains itself at every call)
CLAIM_COST_FACTOR = 1.5
CLAIM_CALL_SLACK_MS = 10.0


def judge(server, returncode: int | None, claim: dict | None, handover_now: str | None = None) -> tuple[str, str]:
    """(status, reason). handover_now: the handover folder's digest after the record ended, which
    must be the one taken when rank 0 said its weights were written."""
    link0 = server.ranks.get(0)
    ended = link0.ended if link0 is not None else None
    # a rank that failed: the first to say so (the others often fail only because it left)
    failed = sorted((link for link in server.ranks.values() if link.ended and link.ended.get("status") in ("failed", "invalid", "aborted")),
                    key=lambda link: (link.ended.get("at_ns") or 0, link.rank))
    if failed and not server.violations:
        first = failed[0]
        status, reason = first.ended["status"], first.ended.get("reason") or ""
        if server.config.get("as_t4"):
            reason = t4_oom_reason(reason)
        return status, (f"rank {first.rank}: {reason}" if first.rank else reason)
    if server.violations:
        v = server.violations[0]
        return "invalid", f"{v['kind']}: {v['detail']}"
    if link0 is None:
        return "failed", f"the record's process ended (exit code {returncode}) before it reached the harness (see log.txt)"
    if server.handover is None:
        if ended is None:
            sig = killed_by(returncode)
            if sig is not None:
                return "killed", f"the record's process was killed by signal {sig} ({signal_name(sig)}) before it handed over its weights"
            return "failed", f"the record's process exited with code {returncode} without handing over its weights (see log.txt)"
        return "failed", ended.get("reason") or "the record returned without calling h.finish()"
    if server.handover.get("sha256") is None or handover_now != server.handover["sha256"]:
        return "invalid", ("claim: the handed-over weights changed after the record said they were written "
                           "(weights.bin and weights.json are bound when the clock stops)")
    if server.export is None or not server.export.get("path"):
        failed = (server.export or {}).get("failed") or "the record ended before it exported its forward"
        return "failed", f"claim: the forward could not be handed over: {failed}"
    if claim is None or not claim.get("ok"):
        error = (claim or {}).get("error") or "no verdict"
        if claim and claim.get("refused"):
            return "invalid", f"claim: {error}"
        return "failed", f"claim: the scorer could not score the handed-over model: {error}"
    if not math.isfinite(claim["val_loss"]):
        return "invalid", f"nan: val loss is {claim['val_loss']}"
    causal = claim["causality"]
    if not causal["passed"]:
        return "invalid", f"causality: {causal_reason(causal)}"
    held = claim["heldout"]
    if not held["passed"]:
        return "invalid", (f"heldout: val loss is {-held['gap']:.3f} nats below never-served train tokens "
                           "(the model may have seen the val tokens)")
    if server.config.get("as_t4"):
        bad = [d for d in claim.get("dtypes", []) if any(r in d for r in REFUSED_DTYPES)]
        if bad:
            return "invalid", f"t4_limits: bf16/fp8: the handed-over forward computes in {', '.join(bad)}; a T4 computes in fp16 or fp32"
    return "completed", ""


def causal_reason(c: dict) -> str:
    """why the probe failed, in one clause."""
    if not c.get("probed_batches"):
        return "no evaluation batch could be probed"
    if not c.get("deterministic", True):
        return (f"the forward is not deterministic: two identical calls differ by {c['noise']:.3g} "
                f"(at most {c['noise_ceiling']:.3g} allowed; dropout left on?)")
    if not c.get("stateless", True):
        return (f"the forward answered a batch asked for again differently (by {c['repeat_diff']:.3g}): "
                "it keeps state between calls")
    if c["cross_batch_leak"] > c["tolerance"]:
        return f"logits of one row moved by {c['cross_batch_leak']:.4g} when other rows of the batch changed"
    return f"logits at earlier positions moved by {c['max_leak']:.4g} when later tokens changed"


def claim_charge_ms(server, claim: dict | None, train_ms: float, tokens: int) -> float:
    """the claim's forward time beyond what predicting can take, given what a train token cost."""
    cost = (claim or {}).get("cost") if claim and claim.get("ok") else None
    if not cost or not tokens or train_ms <= 0:
        return 0.0
    per_token = train_ms * server.world_size / tokens   # one rank's cost of a train token; the scorer uses one device
    allowance = CLAIM_COST_FACTOR * per_token * cost["tokens"] + CLAIM_CALL_SLACK_MS * cost["calls"]
    return max(0.0, float(cost["forward_ms"]) - allowance)


def final_train_ms(server, feed, claim: dict | None) -> tuple[float, float]:
    """(the run's train time, the claim's charge in it): the clock at the handover (its span plus
    setup past its cap), plus the claim's forward time beyond what predicting can take."""
    claim_charged = claim_charge_ms(server, claim, server.span_ms(), feed.tokens_served)
    return server.train_time_ms() + claim_charged, claim_charged


def end_fields(server, feed, claim: dict | None, isolated: bool, flags: list) -> dict:
    """run_end's numbers, every one measured by the supervisor (or its scorer)."""
    feed = feed or server.feed
    setup, charged = server.setup_ms(), server.setup_charged_ms()
    train_ms, claim_charged = final_train_ms(server, feed, claim)
    link0 = server.ranks.get(0)
    c = claim if claim and claim.get("ok") else {}
    causal, held = c.get("causality") or {}, c.get("heldout") or {}
    return {
        "train_time_ms": train_ms, "setup_ms": setup, "setup_charged_ms": charged,
        "eval_time_ms": max(0.0, c.get("eval_ms", 0.0) - claim_charged), "warmup_time_ms": server.warmup_ms or 0.0,
        "tokens": feed.tokens_served, "val_loss": c.get("val_loss"), "val_loss_full": bool(c),
        "steps": server.last_step, "causal": causal.get("passed") if c else None, "max_leak": causal.get("max_leak"),
        "heldout_gap": held.get("gap"), "compiles_in_timed": compiles_in_timed(server),
        "peak_memory_bytes": (server.handover or {}).get("peak_memory_bytes"), "dtypes": c.get("dtypes", []),
        "epochs": feed.epoch, "progress_evals": server.progress_evals, "progress_eval_tokens": server.progress_tokens,
        "eval_charged_ms": claim_charged, "data_watch": None, "isolated": isolated, "source_flags": len(flags),
        "dataset_fingerprint": feed.fingerprint, "train_span_ms": server.span_ms(),
        "handover_bytes": (server.handover or {}).get("bytes"), "export": server.export,
        "claim": {k: c.get(k) for k in ("claim_path", "graph", "forward_ms", "device")} if c else (claim or None),
        "violations": server.violations, "traceback": (link0.ended or {}).get("traceback") if link0 else None,
    }


T4_MEMORY_GIB = 15


def t4_oom_reason(reason: str) -> str:
    """an out-of-memory under --as-t4 names the cap."""
    if "OutOfMemoryError" in reason or "out of memory" in reason.lower():
        return (f"t4_limits: memory: out of memory under the {T4_MEMORY_GIB} GiB a T4 has "
                f"(--as-t4 caps the process there): {reason.splitlines()[0][:300]}")
    return reason


def compiles_in_timed(server) -> int | None:
    """graphs compiled between the first batch and the handover, by the record's own count (its
    report: a recompile inside training is on the clock either way)."""
    before, after = server.compiles_before, (server.handover or {}).get("compiles")
    return after - before if isinstance(before, int) and isinstance(after, int) else None


def killed_by(returncode: int | None) -> int | None:
    """the signal that ended the record's process: a negative return code, or bubblewrap's 128 + signal."""
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    if 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
