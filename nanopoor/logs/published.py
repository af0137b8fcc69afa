"""batch formulas that were published beside a log rather than printed in it.

NanoPoor's logs print no batch size. its leaderboard states the data of each row as a formula
(seq_len × batch_size × grad_accum × steps), and this project's records carry those rows as
claims (records/<name>/record.toml [[claims]]: time_min, formula, peer_log). a log is tied to a
claim by what both state: the claim's step count and time are an eval line of the log (the
claimed time is the elapsed time at that step), or the log names the run id a row is known by
(`Starting run 2yapG8 from scratch`). for any other log, tokens come from the log itself or from
`--tokens-per-step`."""
from __future__ import annotations

import functools
import math
import re
import tomllib
from pathlib import Path

# (format, run id) -> the published formula of one optimizer step
PUBLISHED_FORMULAS: dict[tuple[str, str], dict] = {
    # leaderboard #1, "3.28 in 14.86 min on ~5.2M tokens": 5.24M tok (1024 × 8 × 4 × 160)
    ("nanopoor-text", "2yapG8"): {
        "tokens_per_step": 1024 * 8 * 4,
        "formula": "1024 × 8 × 4 (NanoPoor leaderboard, run 2yapG8)",
    },
}
CLAIM_TIME_TOLERANCE_MS = 0.02 * 60_000   # claims round the log's minutes to two decimals (37.1768 → 37.17)


def published_formula(fmt: str, run_id: str) -> dict | None:
    return PUBLISHED_FORMULAS.get((fmt, run_id))


def records_dir() -> Path | None:
    """records/ of the working folder (a checkout), else of the repository this package sits in."""
    for d in (Path("records"), Path(__file__).resolve().parents[2] / "records"):
        if d.is_dir():
            return d
    return None


@functools.cache
def _claims(root: Path | None) -> tuple[dict, ...]:
    """every claim with a formula and a time: its steps, tokens per step and time."""
    out = []
    for toml in sorted(root.glob("*/record.toml")) if root else []:
        try:
            data = tomllib.loads(toml.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for claim in data.get("claims") or []:
            factors = [int(x) for x in re.split(r"\s*[×x*]\s*", str(claim.get("formula") or "")) if x.strip().isdigit()]
            minutes = claim.get("time_min")
            if len(factors) < 2 or not isinstance(minutes, (int, float)):
                continue
            per_step = math.prod(factors[:-1])
            out.append({"record": toml.parent.name, "steps": factors[-1], "tokens_per_step": per_step,
                        "time_ms": float(minutes) * 60_000.0,
                        "formula": f"{' × '.join(map(str, factors[:-1]))} (the claim of records/{toml.parent.name}: "
                                   f"{claim['formula']} in {minutes} min)"})
    return tuple(out)


def claimed_formula(run) -> dict | None:
    """the claim whose step count and time are one of the run's eval lines, or None."""
    at = {p.step: p.time_ms for p in run.val_points if p.time_ms is not None}
    for claim in _claims(records_dir()):
        t = at.get(claim["steps"])
        if t is not None and abs(t - claim["time_ms"]) <= CLAIM_TIME_TOLERANCE_MS:
            return claim
    return None
