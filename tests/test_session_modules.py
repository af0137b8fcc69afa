"""the session's parts live in several harness modules; what a record can reach and what the code
check watches stay those of one Session class."""
from __future__ import annotations

import pytest

import harness
from harness import claim, eval_pause, integrity, warmup_section
from harness.session import Session

# what a record may call or read on the class (docs/contract.md), plus watch and what launch reads
PUBLIC_SESSION_METHODS = {"warmup", "watch", "next_batch", "tokens", "log_step", "evaluate", "finish",
                          "eval_seq_len", "eval_batch_size", "last_step", "last_eval"}


def test_the_split_offers_a_record_no_new_method():
    public = {n for n in vars(Session) if not n.startswith("_")}
    assert public == PUBLIC_SESSION_METHODS


@pytest.mark.parametrize("owner, name", [
    (Session, "warmup"), (Session, "evaluate"), (Session, "finish"), (Session, "_run_eval"), (Session, "_compile_count"),
    (warmup_section, "warmup_section"), (eval_pause, "progress_eval"), (eval_pause, "run_eval"),
    (eval_pause, "charge_pauses"), (claim, "finish"), (claim, "_heldout_check"), (eval_pause, "PAUSE_COST_FACTOR"),
    (claim, "HELDOUT_MARGIN"),
])
def test_replacing_a_part_of_the_session_shows_in_the_code_check(monkeypatch, owner, name):
    # the session's methods stay on Session (a method shadowed on a subclass or a mixin's class
    # would be a key the snapshot taken before the record never had), and the moved code is a
    # global of a harness module: either one replaced is a changed key
    before = integrity.code_snapshot(harness)
    value = getattr(owner, name)
    monkeypatch.setattr(owner, name, (lambda *a, **k: None) if callable(value) else value * 10)
    changed = integrity.changed_functions(before, integrity.code_snapshot(harness))
    assert any(k.endswith(f".{name}") for k in changed), changed
