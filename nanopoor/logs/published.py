"""batch formulas that were published beside a log rather than printed in it.

NanoPoor's logs print no batch size; its leaderboard states the data of each row as a formula
(seq_len × batch_size × grad_accum × steps). a log names its run id (`Starting run 2yapG8 from
scratch`), which ties it to the row. only formulas the leaderboard states are listed here: for
any other log, tokens come from the log itself or from `--tokens-per-step`."""
from __future__ import annotations

# (format, run id) -> the published formula of one optimizer step
PUBLISHED_FORMULAS: dict[tuple[str, str], dict] = {
    # leaderboard #1, "3.28 in 14.86 min on ~5.2M tokens": 5.24M tok (1024 × 8 × 4 × 160)
    ("nanopoor-text", "2yapG8"): {
        "tokens_per_step": 1024 * 8 * 4,
        "formula": "1024 × 8 × 4 (NanoPoor leaderboard, run 2yapG8)",
    },
}


def published_formula(fmt: str, run_id: str) -> dict | None:
    return PUBLISHED_FORMULAS.get((fmt, run_id))
