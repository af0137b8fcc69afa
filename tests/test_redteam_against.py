"""scripts/redteam_against.py's verdict: what counts as an attack getting through."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "redteam_against.py"


@pytest.fixture(scope="module")
def rta():
    spec = importlib.util.spec_from_file_location("redteam_against", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


HONEST = {"case": "clean_no_warmup", "status": "completed", "val_loss": 5.78, "train_time_ms": 20.0, "verify_problems": []}


def row(case="claim_copy", **kw):
    return {"case": case, "status": "completed", "val_loss": 5.78, "train_time_ms": 20.0, "verify_problems": [], **kw}


@pytest.mark.parametrize("kw, through", [
    ({"val_loss": 5.26}, True),                           # lower loss at the honest record's time
    ({"val_loss": 5.26, "train_time_ms": 105.0}, False),  # lower loss, paid for with charged time
    ({"train_time_ms": 5.0}, True),                       # a quarter of the time at the same loss
    ({"train_time_ms": 5.0, "val_loss": 6.5}, False),     # faster, and worse
    ({"val_loss": 0.9, "status": "invalid"}, False),      # caught
    ({"val_loss": 0.9, "verify_problems": ["val_loss: ..."]}, False),   # caught by verify
])
def test_an_attack_gets_through_only_by_beating_the_honest_record_without_paying(rta, kw, through):
    assert rta.got_through(row(**kw), HONEST) is through


def test_the_honest_records_never_get_through(rta):
    assert not rta.got_through(row("baseline_adamw", val_loss=1.0), HONEST)
    assert not rta.got_through(row("clean_no_warmup", val_loss=1.0), HONEST)
