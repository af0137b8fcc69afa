"""a completed run's timeline against its claimed train time: the clock's numbers must be ones the
event stamps could have produced.

every event carries `time`, the wall-clock second at which it was written. training runs from
train_start to the clock's last stop, less the untimed pauses, plus what the harness charged to
the clock:
- harness < 0.4 (contract 1 and 2): the clock stops for good just before the claim's evaluation,
  so training ends where that evaluation starts (its stamp less its eval_time_ms). progress evals
  with `untimed` true (every eval before harness 0.3, which wrote no such key) paused the clock
  for their eval_time_ms. a warm-up past its cap and an `eval_charge` were charged to the clock.
- contract 3 (harness 0.4): the supervisor writes every stamp; training ends at the `handover`
  of the weights, whose train_time_ms is the final train time. nothing pauses the clock, so an
  untimed eval is itself a finding; setup past its cap is on the clock from the first batch
  (`setup_charged_ms` on train_start, 0 when absent). the claim's forward time past its allowance
  is charged after the handover: run_end's train_time_ms is the handover's plus its eval_charged_ms.
at every step event, every progress eval and at the end, the train time the event log claims
must match that span within tolerance_ms. the step events' token counts must grow by exactly
batch_size × seq_len × grad_accum (config.json) per step. a forger who halves the train time in
result.json, run_end, the claim's eval event and log.txt alike now has to rewrite every stamp of
the log consistently too; one who does passes (docs/trust.md: only a signed reproduction helps).

the tolerance rests on measured runs (scripts/timeline_drift.py prints each run's drift, span −
claim). over the 45 committed runs of harness 0.1 to 0.3.2 in runs/ and 11 more under docs/gpu/
it lies between +2.3 and +24 ms at the end, always positive, and it grows only where the harness
writes an event with an fsync while the clock is stopped: train_start's, just before the clock
starts (at most 1.6 ms), and each untimed pause's (at most 4.4 ms). between two step events with
no pause between, the stamps and the clock agree within 0.08 ms (8,295 such stretches). cpu smoke
runs on the project's loaded 2-core machine (the tests' tiny record and the red-team records, 20
completed runs) drift more: up to 114 ms at the end (6 pauses), 12 ms at the start, 33 ms across
one pause, and 14 ms between two stamps (the process descheduled between reading the clock and
writing the stamp), at most 28% of the tolerance. the allowances are several times those."""
from __future__ import annotations

import math

from supervisor.events import EVAL, EVAL_CHARGE, RUN_END, STEP, TRAIN_START, WARMUP_END

EVENTS = "events.jsonl"
HANDOVER = "handover"           # contract 3: the weights handed over, the clock's last stop
SLACK_MS = 100.0                # fixed: train_start's write before the clock starts, a stamp taken late (measured <= 12 + 14 ms)
PER_PAUSE_MS = 50.0             # each untimed pause: its event's write and line inside the pause (measured <= 33 ms)
CLOCK_RATE = 1e-3               # the wall clock may be slewed (ntp: at most 500 ppm) against the train clock
WARMUP_CAP_S = 900.0            # the harness's default cap on the warm-up, when config.json names none


def tolerance_ms(pauses: int, span_ms: float) -> float:
    """how far the claimed train time may be from the stamps' span after `pauses` untimed pauses."""
    return SLACK_MS + PER_PAUSE_MS * pauses + CLOCK_RATE * abs(span_ms)


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _harness_at_least_04(version) -> bool:
    try:
        return tuple(int(x) for x in str(version).split(".")[:2]) >= (0, 4)
    except ValueError:
        return False


def is_contract3(events: list[dict], result: dict) -> bool:
    """a run held to contract 3's timeline: it says so anywhere (its contract, its harness version,
    a handover event), so a log in the older form cannot borrow the older form's pauses."""
    return (any(e.get("type") == HANDOVER for e in events) or (_num(result.get("contract_version")) or 0) >= 3
            or _harness_at_least_04(result.get("harness_version")))


def claim_eval(events: list[dict]) -> dict | None:
    """the claim's evaluation: the last eval on the val split; before harness 0.3 evals had no
    split, and the claim was the last eval of the run."""
    evals = [e for e in events if e.get("type") == EVAL]
    if any("split" in e for e in evals):
        evals = [e for e in evals if e.get("split") == "val"]
    return evals[-1] if evals else None


def _stamp_findings(events: list[dict]) -> list[str]:
    for i, e in enumerate(events, 1):
        if _num(e.get("time")) is None:
            return [f"{EVENTS}: time: event {i} ({e.get('type')}) has no wall-clock stamp"]
        if i > 1 and e["time"] < events[i - 2]["time"]:
            return [f"{EVENTS}: time: event {i} ({e.get('type')}) is stamped before the event above it"]
    return []


def _step_findings(config: dict, steps: list[dict]) -> list[str]:
    """step numbers rise, train_time_ms never goes back, and tokens grow by one batch per step."""
    try:
        per_step = int(config["batch_size"]) * int(config["seq_len"]) * int(config["grad_accum"])
    except (KeyError, TypeError, ValueError):
        return ["config.json: batch_size, seq_len or grad_accum is missing: the tokens per step cannot be checked"]
    out: list[str] = []
    prev = {"step": 0, "tokens": 0, "train_time_ms": 0.0}
    for e in steps:
        step, tokens, ms = e.get("step"), e.get("tokens"), _num(e.get("train_time_ms"))
        if not isinstance(step, int) or not isinstance(tokens, int) or ms is None:
            return out + [f"{EVENTS}: step: a step event lacks its step, tokens or train_time_ms ({e})"]
        if step <= prev["step"]:
            return out + [f"{EVENTS}: step: step {step} follows step {prev['step']}"]
        if ms < prev["train_time_ms"]:
            out.append(f"{EVENTS}: train_time_ms: step {step} says {ms:,.1f} ms, less than step {prev['step']}'s "
                       f"{prev['train_time_ms']:,.1f} ms")
        want = prev["tokens"] + (step - prev["step"]) * per_step
        if tokens != want:
            out.append(f"{EVENTS}: tokens: step {step} says {tokens:,}; {step - prev['step']} step(s) of {per_step:,} "
                       f"(batch_size × seq_len × grad_accum in config.json) after {prev['tokens']:,} make {want:,}")
        if out:
            return out
        prev = {"step": step, "tokens": tokens, "train_time_ms": ms}
    return out


def _end(events: list[dict], contract3: bool) -> tuple[dict | None, float | None, str]:
    """(the event that ends the clock, the wall-clock second the clock stopped, its name)."""
    if contract3:
        e = next((e for e in events if e.get("type") == HANDOVER), None)
        return e, (_num(e.get("time")) if e else None), "handover"
    e = claim_eval(events)
    if e is None or _num(e.get("eval_time_ms")) is None:
        return e, None, "the claim's eval"
    return e, e["time"] - e["eval_time_ms"] / 1000.0, "the claim's eval"


def _drift(at_s: float, t0_s: float, paused_ms: float, charged_ms: float, claimed_ms: float) -> float:
    """the span on the stamps (less pauses, plus charges) minus the claimed train time, in ms."""
    return (at_s - t0_s) * 1000.0 - paused_ms + charged_ms - claimed_ms


def anchors(config: dict, events: list[dict], contract3: bool) -> list[dict]:
    """every point at which the event log says both a wall-clock second and a train time: each step,
    each eval (an untimed one at its pause's start), and the clock's last stop (last, `end` true).
    each with its drift (ms), the untimed pauses before it, and whether one came right before it.
    empty when the log has no train_start or no end."""
    start = next((e for e in events if e.get("type") == TRAIN_START), None)
    end, end_s, _ = _end(events, contract3)
    if start is None or end is None or end_s is None or _num(end.get("train_time_ms")) is None:
        return []
    charged = _start_charge_ms(config, events, start, contract3)
    t0, paused, pauses, after_pause, out = start["time"], 0.0, 0, False, []
    for e in events[events.index(start) + 1:]:
        kind = e.get("type")
        if e is end:
            break
        if kind == EVAL_CHARGE:
            charged += _num(e.get("charged_ms")) or 0.0
        elif kind in (STEP, EVAL) and _num(e.get("train_time_ms")) is not None:
            untimed = kind == EVAL and e.get("untimed", True) is not False
            took = (_num(e.get("eval_time_ms")) or 0.0) if untimed else 0.0
            out.append({"event": e, "claimed_ms": e["train_time_ms"], "pauses": pauses, "after_pause": after_pause,
                        "untimed": untimed, "end": False,
                        "drift_ms": _drift(e["time"] - took / 1000.0, t0, paused, charged, e["train_time_ms"])})
            paused, pauses, after_pause = paused + took, pauses + untimed, untimed
    out.append({"event": end, "claimed_ms": end["train_time_ms"], "pauses": pauses, "after_pause": after_pause,
                "untimed": False, "end": True, "paused_ms": paused,
                "drift_ms": _drift(end_s, t0, paused, charged, end["train_time_ms"])})
    return out


def timeline_findings(config: dict, events: list[dict], result: dict) -> list[str]:
    """every way the event log's timeline cannot have produced the claimed train time (empty: none).
    only completed runs are checked: the others claim nothing the board shows."""
    if result.get("status") != "completed":
        return []
    out = _stamp_findings(events)
    if out:
        return out
    contract3 = is_contract3(events, result)
    start = next((e for e in events if e.get("type") == TRAIN_START), None)
    end, end_s, end_name = _end(events, contract3)
    if start is None:
        return [f"{EVENTS}: train_start: a completed run has no train_start event: its train time has no start"]
    if end is None or end_s is None:
        what = "handover event" if contract3 else "claim's evaluation (an eval on the val split, with eval_time_ms)"
        return [f"{EVENTS}: {HANDOVER if contract3 else 'eval'}: a completed run has no {what}: its train time has no end"]
    claimed = _num(end.get("train_time_ms"))
    run_end = next((e for e in events if e.get("type") == RUN_END), {})
    # contract 3: the claim's forward time past its allowance is charged after the handover
    after = (_num(run_end.get("eval_charged_ms")) or 0.0) if contract3 else 0.0
    if after < 0:
        out.append(f"{EVENTS}: run_end.eval_charged_ms: {after} is negative; a charge only adds to the train time")
    if claimed is None or _num(run_end.get("train_time_ms")) is None or abs(run_end["train_time_ms"] - claimed - after) > 1e-6:
        plus = f" plus the claim's charge {after}" if after else ""
        out.append(f"{EVENTS}: run_end.train_time_ms: {run_end.get('train_time_ms')} is not the clock's last reading, "
                   f"{end_name}'s train_time_ms {end.get('train_time_ms')}{plus}")
    out += _step_findings(config, [e for e in events if e.get("type") == STEP])
    if any(e.get("type") == STEP for e in events[events.index(end):]):
        out.append(f"{EVENTS}: step: a step event follows {end_name}, after the clock's last stop")
    for a in anchors(config, events, contract3):
        e, drift, allowed = a["event"], a["drift_ms"], tolerance_ms(a["pauses"], a["claimed_ms"])
        if contract3 and a["untimed"]:
            out.append(f"{EVENTS}: untimed: the eval at step {e.get('step')} paused the clock; contract 3 has no untimed pauses")
            break
        if abs(drift) <= allowed:
            continue
        if a["end"]:
            pause_words = f", less {a['pauses']} untimed pause(s) of {a['paused_ms']:,.1f} ms" if a["pauses"] else ""
            out.append(f"{EVENTS}: {'handover' if contract3 else 'eval'}.train_time_ms: the clock's last reading is "
                       f"{claimed:,.1f} ms, but the stamps from train_start to {end_name}{pause_words} hold "
                       f"{claimed + drift:,.1f} ms (off by {drift:+,.1f} ms, more than the {allowed:,.1f} ms allowed)")
        else:
            out.append(f"{EVENTS}: {e.get('type')}.train_time_ms: at step {e.get('step')} it says {a['claimed_ms']:,.1f} ms, "
                       f"but its stamp puts it {a['claimed_ms'] + drift:,.1f} ms of training after train_start (off by "
                       f"{drift:+,.1f} ms, more than the {allowed:,.1f} ms allowed)")
        break
    return out


def _start_charge_ms(config: dict, events: list[dict], start: dict, contract3: bool) -> float:
    """time charged to the clock before the first batch: setup past its cap (contract 3, written on
    train_start), else warm-up time past its cap (harness < 0.4)."""
    if contract3:
        return _num(start.get("setup_charged_ms")) or 0.0
    cap_ms = float(config.get("warmup_cap_s") or WARMUP_CAP_S) * 1000.0
    ends = [e for e in events if e.get("type") == WARMUP_END and e.get("capped")]
    return sum(max(0.0, (_num(e.get("warmup_time_ms")) or 0.0) - cap_ms) for e in ends)


def drift_components(config: dict, events: list[dict], result: dict) -> dict | None:
    """where one completed run's drift arises, for the record of how the tolerance was chosen
    (scripts/timeline_drift.py): at the end, at the first anchor (train_start's write), across each
    untimed pause, and between anchors with no pause between. None without a start or an end."""
    points = anchors(config, events, is_contract3(events, result))
    if not points:
        return None
    last = points[-1]
    steps = [b["drift_ms"] - a["drift_ms"] for a, b in zip(points, points[1:])]
    return {"train_time_ms": last["claimed_ms"], "drift_ms": last["drift_ms"], "pauses": last["pauses"],
            "tolerance_ms": tolerance_ms(last["pauses"], last["claimed_ms"]),
            "start_ms": points[0]["drift_ms"] if not points[0]["untimed"] else None,
            "pause_ms": [d for d, b in zip(steps, points[1:]) if b["after_pause"]],
            "between_ms": [d for d, b in zip(steps, points[1:]) if not b["after_pause"]]}
