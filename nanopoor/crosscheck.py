"""every copy of a run's numbers must agree: config.json, the event log, log.txt and result.json.

the runner applies the event checks when a run ends (a record that changed its evaluation's
settings at run time is invalid even though its own events say so); `nanopoor verify` applies
all of them to committed run folders, so a folder edited by hand has to be edited consistently in
four places, in formats that each carry the number differently. none of this proves a folder was
made by an honest harness: a forger who rewrites every copy consistently passes (docs/trust.md)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from supervisor.evaluate import num_windows
from supervisor.events import CAUSALITY, EVAL, RUN_END, RUN_START, STEP

# the harness prints the claim's evaluation as `step: N/M train_loss: … val_loss: X.XXXX train_time: T.TTTs …`
# (harness < 0.3.2 printed `T.Ts`: the tolerance follows the digits printed)
_CLAIM_LINE = re.compile(r"^step: (\d+)/\d+ train_loss: \S+ val_loss: ([-\d.naif]+) train_time: ([\d.]+)s tokens: \S+\s*$")


def declared_eval(config: dict) -> tuple[int, int]:
    """(eval_seq_len, eval_batch_size) as the frozen config declares them."""
    args = config.get("args") or {}
    nproc = max(1, int(config.get("nproc") or 1))
    return (int(args.get("eval_seq_len", config["seq_len"])),
            int(args.get("eval_batch_size", int(config["batch_size"]) // nproc)))


def event_findings(config: dict, events: list[dict]) -> list[str]:
    """what the event log says that the frozen config forbids (empty: nothing)."""
    out = []
    seq_len, batch = declared_eval(config)
    evals = [e for e in events if e.get("type") == EVAL]
    for e in evals:
        used = (e.get("eval_seq_len"), e.get("eval_batch_size"))
        if None not in used and used != (seq_len, batch):
            out.append(f"eval_settings: an evaluation at step {e.get('step')} ran with eval_seq_len {used[0]} and "
                       f"eval_batch_size {used[1]}; the frozen config declares {seq_len} and {batch}")
            break
    claims = [e for e in evals if e.get("split") == "val"]
    if len(claims) > 1:
        out.append(f"eval_settings: {len(claims)} evaluations on the val set; the claim's is the only one allowed")
    track = config.get("track") or {}
    if claims and track.get("val_tokens"):
        want = num_windows(int(track["val_tokens"]), seq_len) * seq_len
        if claims[0].get("val_tokens") != want:
            out.append(f"eval_settings: the claim's evaluation scored {claims[0].get('val_tokens')} tokens; "
                       f"the track's val set at eval_seq_len {seq_len} holds {want}")
    return out


def same(a, b, tol: float) -> bool:
    """a == b within an absolute tolerance (nan equals nan; non-numbers compare as they are)."""
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return abs(fa - fb) <= tol


def folder_findings(run_dir: Path, result: dict) -> list[str]:
    """every disagreement between the copies of the numbers in a run folder."""
    from nanopoor.event_reader import first, read_events

    out: list[str] = []
    events = read_events(run_dir / "events.jsonl")
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return ["config.json is missing or unreadable"]
    start, end = first(events, RUN_START) or {}, first(events, RUN_END) or {}
    if not end:
        return ["events.jsonl has no run_end"] if result.get("status") == "completed" else []
    if run_dir.name != result.get("run_id") or config.get("run_id") != result.get("run_id"):
        out.append(f"run_id: folder {run_dir.name}, config {config.get('run_id')}, result {result.get('run_id')}")
    for key in ("seed", "record_sha256", "budget_tokens", "scale"):
        if key in config and config[key] != result.get(key):
            out.append(f"{key}: config.json says {config[key]!r}, result.json {result.get(key)!r}")
    if start and start.get("seed") != result.get("seed"):
        out.append(f"seed: run_start says {start.get('seed')}, result.json {result.get('seed')}")
    for key, tol in (("val_loss", 1e-9), ("train_time_ms", 1e-6), ("tokens", 0), ("steps", 0)):
        if key in end and not same(end.get(key), result.get(key), tol):
            out.append(f"{key}: run_end says {end.get(key)}, result.json {result.get(key)}")
    steps = [e for e in events if e.get("type") == STEP]
    if steps:
        toks = [e.get("tokens") or 0 for e in steps]
        if toks != sorted(toks) or toks[-1] > (result.get("tokens") or 0):
            out.append("tokens: the step events' token counts go back or pass the run's total")
        if steps[-1].get("step") != result.get("steps"):
            out.append(f"steps: the last step event is step {steps[-1].get('step')}, result.json says {result.get('steps')}")
    claims = [e for e in events if e.get("type") == EVAL and e.get("split") == "val"]
    if claims and not same(claims[-1].get("val_loss"), result.get("val_loss"), 1e-9):
        out.append(f"val_loss: the claim's eval event says {claims[-1].get('val_loss')}, result.json {result.get('val_loss')}")
    out += _log_findings(run_dir / "log.txt", result, end)
    out += event_findings(config, events)
    causal = first(events, CAUSALITY)
    if causal and causal.get("passed") != result.get("causal"):
        out.append(f"causal: the causality event says {causal.get('passed')}, result.json {result.get('causal')}")
    return out


def printed_tolerance_ms(seconds: str) -> float:
    """how far a time printed in seconds as `seconds` may be from the exact milliseconds it rounds:
    half its last digit ('12.3' -> 50 ms, '12.345' -> 0.5 ms), plus float slack."""
    decimals = len(seconds.partition(".")[2])
    return 0.5 * 10 ** (3 - decimals) + 1e-3


def _log_findings(log: Path, result: dict, end: dict) -> list[str]:
    """log.txt is what the record's process printed: its claim line and run_end line must match."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ["log.txt is missing"]
    out = []
    status = result.get("status")
    if end.get("status") and not any(line.startswith(f"run_end: {end['status']}") for line in lines):
        out.append(f"log.txt has no `run_end: {end['status']}` line")
    if status != "completed" or result.get("val_loss") is None:
        return out
    claim = [m for m in map(_CLAIM_LINE.match, lines) if m]
    if not claim:
        return out + ["log.txt prints no evaluation line"]
    m = claim[-1]
    if not same(float(m.group(2)), result["val_loss"], 6e-5):
        out.append(f"val_loss: log.txt prints {m.group(2)}, result.json {result['val_loss']:.6f}")
    if not same(float(m.group(3)) * 1000, result.get("train_time_ms"), printed_tolerance_ms(m.group(3))):
        out.append(f"train_time_ms: log.txt prints {m.group(3)} s, result.json {result.get('train_time_ms')} ms")
    return out
