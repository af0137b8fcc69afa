"""the code check's snapshot comparison (harness.integrity.code_snapshot, changed_functions): a name
added after the snapshot is a change, not only a name rebound; what an honest run adds is not."""
from __future__ import annotations

import sys

import pytest

import harness
import supervisor.causality
from harness import integrity
from supervisor.causality import Probe
from harness.clock import Clock
from harness.session import Session
from harness.t4_limits import T4Session

SESSION_MODULE = sys.modules["harness.session"]   # `harness.session` is the function that returns the session


def changed_since(before) -> list[str]:
    return integrity.changed_functions(before, integrity.code_snapshot(harness))


@pytest.fixture
def bare_session(monkeypatch):
    """a session object (never started) where harness.launch leaves it, with a clock of its own."""
    sess = Session.__new__(T4Session)
    sess.clock = Clock.__new__(Clock)
    monkeypatch.setattr(SESSION_MODULE, "_SESSION", sess)
    return sess


def test_an_untouched_harness_shows_no_change(bare_session):
    assert changed_since(integrity.code_snapshot(harness)) == []


@pytest.mark.parametrize("name", ["warmup", "log_step", "_run_eval", "__getattribute__"])
def test_a_method_added_to_a_subclass_is_a_change(monkeypatch, name):
    before = integrity.code_snapshot(harness)
    assert name not in vars(T4Session)
    monkeypatch.setattr(T4Session, name, lambda self, *a, **k: None, raising=False)
    assert f"harness.t4_limits.T4Session.{name}" in changed_since(before)


def test_a_class_attribute_removed_is_a_change(monkeypatch):
    before = integrity.code_snapshot(harness)
    monkeypatch.delattr(T4Session, "check_t4_limits")
    assert "harness.t4_limits.T4Session.check_t4_limits" in changed_since(before)


def test_a_module_global_over_a_builtin_is_a_change(monkeypatch):
    before = integrity.code_snapshot(harness)
    monkeypatch.setattr(supervisor.causality, "min", lambda *a: 1e9, raising=False)
    assert "supervisor.causality.min" in changed_since(before)


def test_a_builtin_replaced_is_a_change(monkeypatch):
    import builtins

    before = integrity.code_snapshot(harness)
    monkeypatch.setattr(builtins, "min", lambda *a: 1e9)
    assert "builtins.min" in changed_since(before)


@pytest.mark.parametrize("name", ["finish", "evaluate", "next_batch", "warmup", "tokens", "last_eval"])
def test_a_method_or_property_shadowed_on_the_session_object_is_a_change(bare_session, name):
    before = integrity.code_snapshot(harness)
    bare_session.__dict__[name] = lambda *a, **k: None
    assert f"instance:harness.session._SESSION.{name}" in changed_since(before)


def test_a_method_shadowed_on_the_sessions_clock_is_a_change(bare_session):
    before = integrity.code_snapshot(harness)
    bare_session.clock.elapsed_ms = lambda: 1.0
    assert "instance:harness.session._SESSION.clock.elapsed_ms" in changed_since(before)


@pytest.mark.parametrize("swap", ["subclass", "base"])
def test_the_sessions_class_swapped_is_a_change(bare_session, swap):
    before = integrity.code_snapshot(harness)
    # a subclass named like the harness's own, or back to Session (dropping T4Session's checks)
    bare_session.__class__ = type("T4Session", (T4Session,), {}) if swap == "subclass" else Session
    assert "instance:harness.session._SESSION.__class__" in changed_since(before)


def test_the_sessions_clock_replaced_by_a_subclass_is_a_change(bare_session):
    before = integrity.code_snapshot(harness)
    bare_session.clock.__class__ = type("Clock", (Clock,), {"elapsed_ms": lambda self: 1.0})
    assert "instance:harness.session._SESSION.clock.__class__" in changed_since(before)


def test_plain_state_on_the_session_and_new_harness_objects_are_not_changes(bare_session):
    before = integrity.code_snapshot(harness)
    bare_session._last_step, bare_session.summary = 7, {"val_loss": 1.0}
    bare_session._causality = Probe(512)   # a harness object made since the snapshot
    assert changed_since(before) == []


def test_a_class_annotations_read_for_the_first_time_is_not_a_change():
    before = integrity.code_snapshot(harness)
    had = "__annotations__" in vars(T4Session)
    T4Session.__annotations__  # noqa: B018  (python 3.10+ stores an empty dict on first read)
    try:
        assert changed_since(before) == []
    finally:
        if not had:
            del T4Session.__annotations__


def test_a_harness_module_imported_after_the_snapshot_is_not_a_change(monkeypatch):
    import harness.filewatch

    monkeypatch.delitem(sys.modules, "harness.filewatch")
    monkeypatch.delattr(harness, "filewatch")
    before = integrity.code_snapshot(harness)
    monkeypatch.undo()   # imported again: the module, its name on the package, its classes
    after = integrity.code_snapshot(harness)
    assert "sys.modules[harness.filewatch]" in after and "harness.filewatch" in after
    assert integrity.changed_functions(before, after) == []


def test_an_outside_function_first_seen_after_the_snapshot_is_not_a_change():
    after = integrity.code_snapshot(harness)
    before = {k: v for k, v in after.items() if not k.startswith("torch.")}   # torch imported since
    assert integrity.changed_functions(before, after) == []


def test_globals_torch_compile_installs_are_not_a_change(monkeypatch):
    """torch.compile puts globals that only its own generated bytecode names into the module of
    a function it compiles (the harness's eval loss, on a gpu): not a change. measured on an
    H200, where these made every compiled run `invalid` before the rule."""
    import supervisor.evaluate

    before = integrity.code_snapshot(harness)
    for name in ("__compiled_fn_3_fd1929b6", "__import_torch", "__builtins_dict___2", "__resume_at_30_1"):
        monkeypatch.setattr(supervisor.evaluate, name, object(), raising=False)
    assert changed_since(before) == []


def test_a_real_compile_of_a_harness_function_is_not_a_change():
    import torch

    import supervisor.evaluate

    before = integrity.code_snapshot(harness)
    logits, targets = torch.randn(6, 8), torch.randint(0, 8, (6,))  # (N, V), (N,)
    torch.compile(supervisor.evaluate.ce_sum, backend="eager")(logits, targets, 8)
    assert changed_since(before) == []


def test_a_new_global_the_modules_code_reads_is_a_change(monkeypatch):
    """the rule's other side: a new global over a builtin supervisor.evaluate's own code calls."""
    import supervisor.evaluate

    read = integrity._names_read(supervisor.evaluate)
    builtin = next(n for n in ("float", "int", "len", "range", "min", "max", "sum") if n in read)
    before = integrity.code_snapshot(harness)
    monkeypatch.setattr(supervisor.evaluate, builtin, lambda *a, **k: 0, raising=False)
    assert f"supervisor.evaluate.{builtin}" in changed_since(before)
