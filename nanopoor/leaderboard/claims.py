"""published claims (record.toml [[claims]]) and what the harness found about them.

a claim is a result made elsewhere: a time, a token count, a log. it is never mixed with
verified runs. beside it the leaderboard says, from facts it can compute: (a) the claim's
tokens-to-target against the track's plausible minimum, (b) the record's notes on the data
stream and causality, (c) what this harness's full-scale runs of the same record reached at
the claimed token budget.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from supervisor.events import EVAL, fmt_tokens
from nanopoor.event_reader import read_events
from nanopoor.leaderboard.numbers import fmt_duration
from nanopoor.result import RunResult
from nanopoor.stats import judged_target
from nanopoor.verify import track_name


def plausibility(tokens, track) -> str:
    """(a): the claim's tokens-to-target against the track's plausible minimum."""
    if track is None:
        return "unknown track: no plausibility floor to compare with"
    floor = track.plausible_min_tokens
    if not tokens:
        return "the claim states no token count: tokens-to-target unknown"
    if not floor:
        return f"track {track.name} sets no plausible minimum of tokens"
    if tokens < floor:
        return (f"implausible: {fmt_tokens(tokens)} tokens to reach {track.target_val_loss} is "
                f"{floor / tokens:.2g}× fewer than the {fmt_tokens(floor)} the fastest public speedruns need")
    return f"{fmt_tokens(tokens)} tokens to reach {track.target_val_loss} is within the plausible range (≥ {fmt_tokens(floor)})"


def eval_at(run_path: Path, result: RunResult, tokens: int):
    """(val loss, tokens, train_time_ms, full) of the last eval at or before `tokens`, or None."""
    if result.get("tokens") == tokens and isinstance(result.get("val_loss"), (int, float)) \
            and math.isfinite(result["val_loss"]):
        return result["val_loss"], tokens, result.get("train_time_ms"), bool(result.get("val_loss_full", True))
    best = None
    for ev in read_events(run_path / "events.jsonl"):
        if ev.get("type") != EVAL or not isinstance(ev.get("tokens"), int) or ev["tokens"] > tokens:
            continue
        key = (ev["tokens"], bool(ev.get("full")))   # latest eval; a full one over a prefix one
        if best is None or key >= best[0]:
            best = (key, ev)
    if best is None:
        return None
    ev = best[1]
    return ev.get("val_loss"), ev["tokens"], ev.get("train_time_ms"), bool(ev.get("full"))


def rerun_outcomes(claim_tokens, runs: list, tracks: Mapping) -> list[tuple[str, bool | None]]:
    """(c): per (track, hardware) of this record's full-scale runs, what they reached, each with
    whether they reached the track's target (None: unknown)."""
    if not runs:
        return [("no harness runs of this record yet", None)]
    if not claim_tokens:
        return [(f"{len(runs)} harness run(s) of this record; the claim has no token count to compare at", None)]
    groups = defaultdict(list)
    for e in runs:
        groups[(track_name(e.result), str(e.result.get("hardware_label")))].append(e)
    out = []
    for (track, hardware), group in sorted(groups.items()):
        completed = sum(e.result.get("status") == "completed" for e in group)
        points = [p for e in sorted(group, key=lambda e: e.path.name)
                  if (p := eval_at(e.path, e.result, claim_tokens)) and isinstance(p[0], (int, float))]
        head = f"harness runs on {hardware}, track {track} ({completed} of {len(group)} completed)"
        if not points:
            out.append((f"{head}: no eval at or before {fmt_tokens(claim_tokens)} tokens", None))
            continue
        loss = sum(p[0] for p in points) / len(points)
        at = min(p[1] for p in points)
        times = [p[2] for p in points if isinstance(p[2], (int, float))]
        target = judged_target([e.result for e in group])   # what these runs were judged against
        text = f"{head}: val loss {loss:.3f} at {fmt_tokens(at)} tokens"
        if at < claim_tokens:
            text += f" (runs stopped before the claimed {fmt_tokens(claim_tokens)})"
        if not all(p[3] for p in points):
            text += " (some on a val prefix)"
        if times:
            text += f", train time {fmt_duration(sum(times) / len(times))}"
        if target is not None:
            text += f"; target {target} {'reached' if loss <= target else 'not reached'}"
        out.append((text, None if target is None else loss <= target))
    return out


def short_verdict(tokens, track, outcomes: list[tuple[str, bool | None]]) -> str:
    """the claim's verdict in a few words; the notes under the table say why."""
    parts = []
    floor = getattr(track, "plausible_min_tokens", 0)
    if tokens and floor and tokens < floor:
        parts.append(f"implausible: {floor / tokens:.2g}× fewer tokens than the track's floor")
    elif not tokens:
        parts.append("no token count")
    reached = [ok for _, ok in outcomes if ok is not None]
    if not reached:
        parts.append("not re-run here at full scale" if outcomes and outcomes[0][0].startswith("no harness runs")
                     else "re-runs inconclusive")
    elif all(reached):
        parts.append("re-run here: target reached")
    else:
        parts.append("re-run here: target not reached")
    return "; ".join(parts)


def claim_rows(records: Mapping, entries: list, tracks: Mapping) -> list[dict]:
    """one row per claim of every record, with the findings in `found` (one per line)."""
    full_runs = defaultdict(list)
    for e in entries:
        if e.result.get("scale") == "full":
            full_runs[str(e.result.get("record"))].append(e)
    rows = []
    for name in sorted(records):
        rec = records[name]
        for claim in rec.claims:
            tokens = claim.get("tokens")
            notes = claim.get("notes") or []
            notes = [notes] if isinstance(notes, str) else [str(n) for n in notes]
            notes = [n.strip() for n in notes if n.strip()]
            outcomes = rerun_outcomes(tokens, full_runs.get(name, []), tracks)
            found = [plausibility(tokens, tracks.get(rec.track))] + notes + [text for text, _ in outcomes]
            formula = claim.get("formula")
            rows.append({
                "kind": "claim", "track": rec.track, "class": None,
                "hardware": str(claim.get("hardware") or ""), "scale": None, "ranked": False,
                "rank": None, "record": name, "record_sha256": rec.frozen_sha256,
                "description": rec.title, "person": str(claim.get("person") or rec.author),
                "date": str(claim.get("date") or ""), "tokens": tokens,
                "data": f"{fmt_tokens(tokens)} tok" + (f" ({formula})" if formula else "") if tokens else "?",
                "target_val_loss": getattr(tracks.get(rec.track), "target_val_loss", None),
                "verified": False, "verdict": short_verdict(tokens, tracks.get(rec.track), outcomes),
                "claimed_time_min": claim.get("time_min"),
                "log": claim.get("log"), "peer_log": claim.get("peer_log"),
                "notes": "\n".join(notes), "found": "\n".join(found),
            })
    return rows
