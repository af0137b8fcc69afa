"""the red team, shadowing: a record that adds a name the code check's snapshot did not hold (a
method on T4Session or on the session object, a module global over a builtin, a class swap) to
change what the harness does. each is a real run under the harness (tests/redteam/rt_shadow)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import copy_record
from test_redteam import HERE, assert_invalid, flags, make_redteam_dataset, result

from nanopoor.runner import run_record

pytestmark = pytest.mark.slow

# name -> (mode, as_t4, extra args)
CASES = {
    "class_warmup_t4": ("class_warmup", True, {"warmup_steps": 20}),
    "instance_finish": ("instance_finish", False, {}),
    "instance_eval": ("instance_eval", False, {}),
    "instance_batch_t4": ("instance_batch", True, {}),
    "class_swap": ("class_swap", False, {}),
    "builtin_min": ("builtin_min", False, {}),
    "summary_only": ("summary_only", False, {}),
    "drain_fake": ("drain_fake", False, {}),
    "honest_t4": ("", True, {}),
}


def launch(root: Path, names) -> dict[str, Path]:
    def one(name):
        mode, as_t4, extra = CASES[name]
        data = make_redteam_dataset(root / "data" / name / "demo")
        rec = copy_record(HERE / "rt_shadow", root / "records", name=f"rt_shadow_{name}", args={"mode": mode, **extra})
        return name, run_record(rec, scale="smoke", seed=11, data_dir=data, out_root=root / "runs", quiet=True,
                                as_t4=as_t4)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, names))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return launch(tmp_path_factory.mktemp("shadow"), CASES)


def test_an_honest_run_under_the_t4_limits_completes(runs):
    r = result(runs, "honest_t4")
    assert r["status"] == "completed", r["reason"]
    assert r["t4_limits"] is True


def test_a_method_added_to_t4session_shows_in_the_code_check(runs):
    # T4Session inherits warmup from Session: setting it on T4Session adds a name, rebinding none
    assert_invalid(runs, "class_warmup_t4", "clock_tamper", "harness.t4_limits.T4Session.warmup")


@pytest.mark.parametrize("name, method", [("instance_finish", "finish"), ("instance_eval", "evaluate"),
                                          ("instance_batch_t4", "next_batch")])
def test_a_method_shadowed_on_the_session_object_is_invalid(runs, name, method):
    assert_invalid(runs, name, "clock_tamper", f"instance:harness.session._SESSION.{method}")


def test_swapping_the_sessions_class_for_a_subclass_is_invalid(runs):
    assert_invalid(runs, "class_swap", "clock_tamper", "instance:harness.session._SESSION.__class__")


def test_a_module_global_over_a_builtin_the_probe_calls_is_invalid(runs):
    assert_invalid(runs, "builtin_min", "clock_tamper", "supervisor.causality.min")


def test_a_summary_written_without_the_claims_evaluation_is_invalid(runs):
    # nothing shadowed: the record writes h.summary itself and never calls h.finish; the data
    # process, asked after the record, served none of the val set
    r = assert_invalid(runs, "summary_only", "claim", "0 of", "the val set")
    assert r["val_loss"] == 0.5   # the number it claimed is kept, the run is not counted



def test_a_record_draining_the_val_stream_itself_is_source_flagged(runs):
    assert "harness_internals" in flags(runs, "drain_fake")


@pytest.mark.xfail(strict=True, reason="the data process counts the batches it served, not the loss computed on them")
def test_a_summary_written_after_draining_the_val_stream_is_invalid(runs):
    # the limit of the check above: the record asks the data process for every val and check
    # batch through the session's stream client (harness internals the source scan flags), scores
    # none of them, and claims its own number
    assert_invalid(runs, "drain_fake", "claim")
