"""what happens at a run's end: the claim's log line carries the train time finely enough for
`verify` to compare it with result.json."""
from __future__ import annotations

import pytest

from supervisor.events import eval_line
from nanopoor.crosscheck import _log_findings, printed_tolerance_ms


def _findings(tmp_path, line: str, train_time_ms: float) -> list[str]:
    log = tmp_path / "log.txt"
    log.write_text(line + "\nrun_end: completed\n")
    result = {"status": "completed", "val_loss": 5.2838, "train_time_ms": train_time_ms}
    return _log_findings(log, result, {"status": "completed"})


def test_the_eval_line_prints_the_train_time_to_the_millisecond():
    line = eval_line(4, 4, 5.5, 5.2838, 45.6, 1536, True)
    assert "train_time: 0.046s" in line


@pytest.mark.parametrize("printed, tol_ms", [("891.6", 50.001), ("891.623", 0.501), ("3", 500.001)])
def test_the_tolerance_is_half_the_last_printed_digit(printed, tol_ms):
    assert printed_tolerance_ms(printed) == pytest.approx(tol_ms)


def test_a_halved_train_time_of_a_short_run_disagrees_with_its_log(tmp_path):
    # a 90 ms run claimed as 45 ms: at 0.1 s resolution both print as 0.1 s or less apart than
    # the old fixed 60 ms tolerance; to the millisecond they cannot agree
    line = eval_line(4, 4, 5.5, 5.2838, 90.4, 1536, True)
    assert _findings(tmp_path, line, 90.4) == []
    assert any(f.startswith("train_time_ms: log.txt prints 0.090 s") for f in _findings(tmp_path, line, 45.2))


def test_an_old_log_at_a_tenth_of_a_second_is_read_with_its_own_rounding(tmp_path):
    line = "step: 4/4 train_loss: 5.5000 val_loss: 5.2838 train_time: 13.1s tokens: 1.54k"
    assert _findings(tmp_path, line, 13_051.3) == []       # 13.1 s is 13,051 ms rounded
    assert _findings(tmp_path, line, 13_000.0) != []       # 100 ms off: more than rounding
