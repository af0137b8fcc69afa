"""`nanopoor review` on NanoPoor's logs states the tokens the board states, never says both that
tokens cannot be checked and a number computed from them, and exits 1 on an error finding; a
modded-nanogpt log whose batch follows a schedule (the stages its code declares) is counted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nanopoor.logs import parse_text
from nanopoor.review import review_parsed
from test_logs_field import modded_2025

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "peer-logs" / "nanopoor"


def review_json(app, log: Path, code: int):
    res = CliRunner().invoke(app, ["review", str(log), "--format", "json"])
    assert res.exit_code == code, res.output
    return json.loads(res.stdout)


def board_claims() -> dict[str, int]:
    """peer log file name -> the tokens leaderboard.json states for its claim."""
    rows = json.loads((REPO / "leaderboard.json").read_text())
    return {str(r["log"]).rsplit("/", 1)[-1]: r["tokens"] for r in rows if r["kind"] == "claim"}


def no_contradiction(data: dict) -> None:
    """a run whose tokens are known is never also said to have tokens that cannot be checked."""
    if all(r["tokens_formula"] for r in data["log"]["runs"]):
        said = " ".join(f["message"] for f in data["findings"])
        assert "tokens cannot be checked" not in said and "gives no tokens per step" not in said, said


@pytest.mark.skipif(not PEER.is_dir(), reason="../shared/peer-logs is not present")
@pytest.mark.parametrize("name", ["A100_run.txt", "Muon_run.txt", "PSGD_run.txt", "tweaks_run_nosave.txt", "GPT4-tok-run.txt"])
def test_each_nanopoor_log_states_the_boards_tokens(app, name):
    tokens = board_claims()[name]
    data = review_json(app, PEER / name, code=1)   # each reaches 3.28 on a small fraction of the floor: an error
    [run] = data["log"]["runs"]
    assert run["target_tokens"] == tokens, (name, run["target_tokens"], run["tokens_formula"])
    assert sorted(board_claims().values()) == [3_891_200, 5_242_880, 6_144_000, 6_963_200, 14_008_320]
    no_contradiction(data)
    assert data["counts"]["error"] >= 1 and any(f["rule"] == "tokens-to-target" for f in data["findings"])


def nanopoor_text(steps_minutes: list[tuple[int, float]]) -> str:
    return "".join(f"step: {s}, train loss: 4.0000, val loss: {4.0 - 0.73 * s / 190:.4f}, elapsed time: {m:.2f} min, dt: 1.0 ms\n"
                   for s, m in steps_minutes)


def test_a_log_is_tied_to_its_claim_by_steps_and_time_wherever_it_lies(app, tmp_path):
    """no run id, no formula in it: records/muon's claim (190 steps in 15.04 min) gives its tokens."""
    log = tmp_path / "renamed.txt"
    log.write_text(nanopoor_text([(s, 15.04 * s / 190) for s in range(10, 200, 10)]))
    data = review_json(app, log, code=1)
    [run] = data["log"]["runs"]
    assert run["target_tokens"] == 1024 * 5 * 4 * 190 and "records/muon" in run["tokens_formula"]
    no_contradiction(data)
    table = CliRunner().invoke(app, ["review", str(log)], env={"COLUMNS": "200"})
    assert table.exit_code == 1 and "3.89M" in table.stdout
    assert "1 error, " in table.stdout and "exit code 1" in table.stdout and "1 errors" not in table.stdout


def test_a_log_that_matches_no_claim_keeps_tokens_unknown_and_exits_0(app, tmp_path):
    log = tmp_path / "other.txt"
    log.write_text(nanopoor_text([(s, s / 10) for s in range(10, 200, 10)]))   # 190 steps in 19 min: no claim
    data = review_json(app, log, code=0)                 # warnings and notes only
    [run] = data["log"]["runs"]
    assert run["target_tokens"] is None and run["tokens_formula"] is None
    assert any("tokens cannot be checked" in f["message"] for f in data["findings"])


# --- batch sizes that follow a schedule ------------------------------------------------------------
STAGES_SOURCE = """import torch
from itertools import accumulate, pairwise
@dataclass(slots=True)
class Hyperparameters:
    val_batch_size: int = 4 * 64 * 1024 * 8
    num_scheduled_iterations: int = 30  # number of steps to complete lr and ws schedule
    num_extension_iterations: int = 10  # number of steps to continue training at final lr and ws
args = Hyperparameters()
class TrainingSchedule:
    def __init__(self, stages, scheduled_iterations, extension_iterations):
        self.total_steps = scheduled_iterations + extension_iterations
        ends = [0, *[round(c * scheduled_iterations) for c in accumulate(s.duration for s in stages[:-1])], self.total_steps]
        self.boundaries = list(pairwise(ends))
TRAINING_STAGES = [
    TrainingStage(duration=1/3, train_max_seq_len=896, batch_size=8 * 2048 * 8, window_sizes=(1, 3), lr_mul=1.0,
                  mtp_weights_start=[1.0, 0.5, 0.25], mtp_weights_end=[1.0, 0.5, 0.0]),
    TrainingStage(duration=2/3, train_max_seq_len=2048, batch_size=16 * 2048 * 8, window_sizes=(3, 7), lr_mul=1.52,  # (16/8)**0.6
                  mtp_weights_start=[1.0, 0.5], mtp_weights_end=[1.0, 0.0]),
    # extension stage
    TrainingStage(train_max_seq_len=2048, batch_size=24 * 2048 * 8, window_sizes=(6, 13), lr_mul=1.0,
                  mtp_weights_start=[1.0], mtp_weights_end=[1.0]),
]
"""


def test_a_staged_batch_schedule_gives_tokens_per_step():
    """10 steps of 8 rows, 20 of 16, then the 10 extension steps at 24 (rows of 2048 × 8 ranks)."""
    log = parse_text(modded_2025(source=STAGES_SOURCE), "stages.txt")
    by_step = {p.step: p.tokens for p in log.run.val_points}
    row = 2048 * 8
    assert by_step[20] == 10 * 8 * row + 10 * 16 * row
    assert by_step[40] == 10 * 8 * row + 20 * 16 * row + 10 * 24 * row
    assert "TRAINING_STAGES" in log.run.tokens_formula and "ending at steps 10, 30, 40" in log.run.tokens_formula
    said = " ".join(f.message for f in review_parsed(log, "fineweb-edu"))
    assert "gives no tokens per step" not in said and "cannot be counted" not in said


def test_a_schedule_computed_another_way_is_said_so_not_guessed():
    other = STAGES_SOURCE.replace("round(c * scheduled_iterations)", "int(c * scheduled_iterations) + 1")
    log = parse_text(modded_2025(source=other), "other.txt")
    assert log.run.tokens_per_step is None and all(p.tokens is None for p in log.run.steps)
    assert "staged batch schedule (TRAINING_STAGES) computed in a way this reader does not follow" in log.run.tokens_note
