"""the red team: records that cheat, each run under the harness, and what the harness says."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nanopoor.data.writer import BuildSpec, build_token_documents

HERE = Path(__file__).parent
RT_VOCAB = 512        # a small vocabulary keeps every evaluation cheap on a cpu
RT_EOT = RT_VOCAB - 1


def make_redteam_dataset(root: Path, val_tokens: int = 16384 + 1, train_tokens: int = 60_000, seed: int = 0) -> Path:
    """a 'demo' dataset of documents drawn from a zipf-like unigram over a 512-id vocabulary, built
    by the project's writer (the manifest and fingerprint `nanopoor data` would write).

    nothing in it can be learned beyond the unigram, so a model's val loss can only fall below
    its loss on unseen train tokens by memorising the val tokens themselves: the held-out check
    has a clean signal, and an honest model shows no gap."""
    p = 1.0 / np.arange(1, RT_VOCAB) ** 1.1
    p /= p.sum()

    def document(i: int) -> np.ndarray:
        r = np.random.default_rng([seed, i])  # document i depends on i alone, as the writer needs
        # the likeliest draw is id 1, not 0: a stream made mostly of id 0 is what the audit flags
        return (r.choice(RT_VOCAB - 1, size=int(r.integers(5, 40)), p=p) + 1) % (RT_VOCAB - 1)

    spec = BuildSpec("demo", {"kind": "synthetic-redteam", "seed": seed}, val_tokens, train_tokens, 1 << 20,
                     "tests/redteam/test_redteam.py make_redteam_dataset",
                     tokenizer=f"synthetic-zipf-{RT_VOCAB}", vocab_size=RT_VOCAB, eot_id=RT_EOT)
    build_token_documents(root, spec, document)
    return root


# -- the runs ---------------------------------------------------------------------------------
# name -> (fixture folder, extra smoke args, timeout_s[, scale]). every run is its own child
# process; the module fixture starts them all from a thread pool and each test reads one result.
# every case gets a dataset of its own (the same tokens): the harness's kernel watch counts an
# open of a run's dataset by another run's runner or record process against it.
CASES: dict[str, tuple[str, dict, float | None]] = {
    "clean": ("rt_clean", {"warmup": True}, None),
    "clean_no_warmup": ("rt_clean", {}, None),
    "sparse_attention": ("rt_sparse_attention", {}, None),
    "peek_next": ("rt_peek_next", {}, None),
    "val_lookup": ("rt_val_lookup", {}, None),
    "val_lookup_heldout": ("rt_val_lookup", {"mode": "check_early"}, None),
    "over_budget": ("rt_over_budget", {}, None),
    "over_budget_erase": ("rt_over_budget", {"mode": "erase"}, None),
    "warmup_no_reset": ("rt_warmup_cheats", {"mode": "no_reset"}, None),
    "warmup_shadow_opt": ("rt_warmup_cheats", {"mode": "shadow_opt"}, None),
    "warmup_shadow_manual": ("rt_warmup_cheats", {"mode": "shadow_manual"}, None),
    "eval_step": ("rt_eval_training", {"mode": "step"}, None),
    "eval_backward": ("rt_eval_training", {"mode": "backward"}, None),
    "eval_next_batch": ("rt_eval_training", {"mode": "next_batch"}, None),
    "clock_now_ns": ("rt_clock_tamper", {"mode": "now_ns"}, None),
    "clock_rebind": ("rt_clock_tamper", {"mode": "elapsed_ms,perf_counter,tolerance,sync"}, None),
    "clock_rewind": ("rt_clock_tamper", {"mode": "rewind"}, None),
    "clock_temporary": ("rt_clock_tamper", {"mode": "temporary"}, None),
    "shard_memmap": ("rt_shard_read", {"mode": "memmap"}, None),
    "shard_bypass": ("rt_shard_read", {"mode": "from_file,ctypes,subprocess"}, None),
    "shard_memory": ("rt_shard_read", {"mode": "memory"}, None),
    "val_training": ("rt_val_training", {}, None),
    "crash": ("rt_misbehave", {"mode": "crash"}, None),
    "hang": ("rt_misbehave", {"mode": "hang"}, 30),
    "hang_no_term": ("rt_misbehave", {"mode": "hang_no_term"}, 30),
    "nan_loss": ("rt_misbehave", {"mode": "nan_loss"}, None),
    "nan_logits": ("rt_misbehave", {"mode": "nan_logits"}, None),
    "forged_atexit": ("rt_forged_end", {"mode": "atexit"}, None),
    "forged_inline": ("rt_forged_end", {"mode": "inline"}, None),
    # an honest run on the dataset every other case's runner also opens (all others get their own copy)
    "clean_shared": ("rt_clean", {"wait_for": "{root}/shared_late_done"}, None),
    "clean_shared_late": ("rt_clean", {}, None),
    # the probe, blinded or dodged
    "probe_noise_column": ("rt_probe_evasion", {"mode": "noise_column"}, None),
    "probe_last_batch": ("rt_probe_evasion", {"mode": "last_batch"}, None),
    "probe_cross_row": ("rt_probe_evasion", {"mode": "cross_row"}, None),
    "probe_dropout": ("rt_probe_evasion", {"mode": "dropout"}, None),
    "probe_second_half": ("rt_probe_evasion", {"mode": "second_half"}, None),
    # the evaluation's settings changed at run time
    "settings_args_write": ("rt_eval_settings", {"mode": "args_write"}, None),
    "settings_plan_progress": ("rt_eval_settings", {"mode": "plan_progress"}, None),
    "settings_plan_all": ("rt_eval_settings", {"mode": "plan_all"}, None),
    # each step's work moved into a one-window progress eval
    "pause_shadow_hooks": ("rt_pause_training", {"mode": "shadow_hooks"}, None),
    "pause_grad_modes": ("rt_pause_training", {"mode": "grad_modes"}, None),
    "pause_thread": ("rt_pause_training", {"mode": "thread"}, None),
    "pause_burn": ("rt_pause_training", {"mode": "burn"}, None),
    # compute before the clock
    "untimed_pretrain": ("rt_untimed_compute", {"mode": "pretrain"}, None),
    "untimed_eval_first": ("rt_untimed_compute", {"mode": "eval_first"}, None),
    # the dataset's bytes around the audit hook
    "around_audit": ("rt_shard_around", {"mode": "dir_fd,chdir,link"}, None),
    "around_link_child": ("rt_shard_around", {"mode": "link_child"}, None),
    "around_child_b64": ("rt_shard_around", {"mode": "child_b64"}, None),
    "around_proc_mem": ("rt_shard_around", {"mode": "proc_mem", "dump": "{root}/proc_mem.npy"}, None),
    "around_proc_mem_claim": ("rt_shard_around", {"mode": "proc_mem_claim"}, None),
    "around_proc_mem_direct": ("rt_shard_around", {"mode": "proc_mem_direct,proc_mem_claim"}, None),
    # the held-out check switched off by long windows (smoke: train seq_len; full: eval_seq_len)
    "heldout_off_train": ("rt_heldout_off", {}, None),
    "heldout_off_eval": ("rt_heldout_off", {}, None, "full"),
    # what the record was shown, remembered
    "lookup_memo": ("rt_val_lookup", {"mode": "memo"}, None),
    "lookup_progress": ("rt_val_lookup", {"mode": "progress"}, None),
    "lookup_check_late": ("rt_val_lookup", {"mode": "check_late"}, None),
}

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.slow  # every case is a real run: `pytest -m "not slow"` skips the module

from conftest import copy_record  # noqa: E402
from nanopoor.runner import run_record  # noqa: E402

import harness  # noqa: E402

# the harness-edit case runs against a private copy of the harness, in its own process (the
# runner's harness folder is a module global, and the edit must not touch the real tree)
EDIT_SCRIPT = """
import json, sys
from pathlib import Path
import harness
from nanopoor.runner import run_record
assert Path(harness.__file__).parent == Path(sys.argv[1]), harness.__file__
d = run_record(Path(sys.argv[2]), scale="smoke", seed=3, data_dir=Path(sys.argv[3]), out_root=Path(sys.argv[4]), quiet=True)
print(d)
"""


def _run_harness_edit(root: Path, data: Path) -> Path:
    copy = root / "harness_copy"
    shutil.copytree(Path(harness.__file__).parent, copy / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    rec = copy_record(HERE / "rt_harness_edit", root / "records")
    # the copy first (its harness wins), then this tree (its nanopoor, not whatever the venv installed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(HERE.parents[1])])}
    out = subprocess.run([sys.executable, "-c", EDIT_SCRIPT, str(copy / "harness"), str(rec), str(data), str(root / "runs")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.strip().splitlines()[-1])


def _wait_for_run_start(runs_dir: Path, marker: str, limit_s: float = 300.0) -> None:
    """until the run whose folder name holds marker has written its run_start (its watch is on)."""
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        for ev in runs_dir.glob(f"*-{marker}-*/events.jsonl"):
            if '"run_start"' in ev.read_text():
                return
        time.sleep(0.5)


def launch_all(root: Path, names) -> dict[str, Path]:
    """run every named case under the harness, in parallel child processes; name -> run folder."""
    shared = make_redteam_dataset(root / "demo")

    def one(name):
        data = shared if name.startswith("clean_shared") else make_redteam_dataset(root / "data" / name / "demo")
        if name == "harness_edit":
            return name, _run_harness_edit(root / "edit", data)
        folder, args, timeout, *scale = CASES[name]
        args = {k: v.format(root=root) if isinstance(v, str) else v for k, v in args.items()}
        rec = copy_record(HERE / folder, root / "records", name=f"{folder}_{name}", args=args)
        if name == "clean_shared_late":   # start once clean_shared's data process watches the dataset
            _wait_for_run_start(root / "runs", "rt_clean_clean_shared-smoke")
        try:
            return name, run_record(rec, scale=scale[0] if scale else "smoke", seed=11, data_dir=data,
                                    out_root=root / "runs", timeout_s=timeout, quiet=True)
        finally:
            if name == "clean_shared_late":   # clean_shared waits for this before it finishes
                (root / "shared_late_done").touch()

    slow_first = ("hang", "harness_edit", "clean_shared", "lookup", "val_lookup", "around_proc_mem")
    names = sorted(names, key=lambda n: next((i for i, p in enumerate(slow_first) if n.startswith(p)), len(slow_first)))
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, names))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return launch_all(tmp_path_factory.mktemp("redteam"), [*CASES, "harness_edit"])


def result(runs, name) -> dict:
    return json.loads((runs[name] / "result.json").read_text())


def events(runs, name) -> list[dict]:
    return [json.loads(line) for line in (runs[name] / "events.jsonl").read_text().splitlines() if line.strip()]


def flags(runs, name) -> set[str]:
    return {f["pattern"] for e in events(runs, name) if e["type"] == "source_flags" for f in e["flags"]}


def assert_invalid(runs, name, kind, *words):
    r = result(runs, name)
    assert r["status"] == "invalid", (name, r["status"], r["reason"])
    assert r["reason"].startswith(kind), (name, r["reason"])
    for w in words:
        assert w in r["reason"], (name, w, r["reason"])
    return r


def types_of(runs, name) -> list[str]:
    return [e["type"] for e in events(runs, name)]


# -- no false positives ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["clean", "clean_no_warmup"])
def test_an_honest_record_completes(runs, name):
    r = result(runs, name)
    assert r["status"] == "completed", r["reason"]
    assert r["causal"] is True and r["max_leak"] == 0.0 and abs(r["heldout_gap"]) < 0.25
    assert r["tokens"] == 32 * 4 * 6 and r["violations"] == []
    assert flags(runs, name) == set()                     # nothing for a reviewer to chase
    kinds = types_of(runs, name)
    assert kinds[-1] == "run_end" and kinds.count("run_end") == 1 and "violation" not in kinds
    assert ("warmup_end" in kinds) == (name == "clean")
    causality = next(e for e in events(runs, name) if e["type"] == "causality")
    # val (255 windows) and the held-out half (87) both end in a batch of 3: each evaluation probes a
    # random batch and its short last one, cut at random positions of every row. the random one is
    # the last one too in 1 of 64 val and 1 of 22 held-out evaluations (in both: 2 batches, as a CI
    # run once drew); the shapes below show the short batches were probed either way
    assert 2 <= causality["probed_batches"] <= 4 and len(causality["positions"]) >= 8
    assert causality["deterministic"] is True and [3, 32] in causality["shapes"] and [4, 32] in causality["shapes"]
    assert result(runs, name)["data_watch"] is True     # the kernel watch ran (root in this sandbox)


# -- attention and logits that see the future ------------------------------------------------------
def test_sparse_attention_over_the_whole_sequence_is_not_causal(runs):
    r = assert_invalid(runs, "sparse_attention", "causality")
    assert r["causal"] is False and r["max_leak"] > 0.05


def test_a_forward_that_peeks_at_the_next_token_only_in_eval_shaped_batches_is_caught(runs):
    r = assert_invalid(runs, "peek_next", "causality")
    assert r["max_leak"] >= 29.0                           # the boost it adds to the next token's logit
    assert r["val_loss"] < 2.0                             # what it would have claimed


def test_the_heldout_tail_cannot_be_read_ahead_of_the_check(runs):
    assert_invalid(runs, "val_lookup_heldout", "heldout", "read before training ended")


# -- budget -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["over_budget", "over_budget_erase"])
def test_asking_past_the_budget_is_invalid_even_when_the_refusal_is_swallowed(runs, name):
    r = assert_invalid(runs, name, "budget", "768 tokens")
    assert r["tokens"] == 768                              # nothing past the budget was served
    assert "refused: the record asked for batch 7" in (runs[name] / "log.txt").read_text()
    # "erase" empties the in-memory list; the violation was on disk the moment it happened
    assert any(e["type"] == "violation" and e["kind"] == "budget" for e in events(runs, name))


# -- the untimed warm-up ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, words", [
    ("warmup_no_reset", "did not reset it"),
    ("warmup_shadow_opt", "optimizer(s) not handed to h.warmup() stepped"),
    ("warmup_shadow_manual", "between the end of the warm-up and the first train batch"),
])
def test_training_in_the_warmup_is_invalid(runs, name, words):
    assert_invalid(runs, name, "warmup_reset", words)


# -- the evaluation pause ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, words", [
    ("eval_step", "parameters or gradients changed"),
    ("eval_backward", "parameters or gradients changed"),   # the shadow's .grad: the live-parameter scan sees it first
    ("eval_next_batch", "train data inside the evaluation pause"),
])
def test_training_work_inside_the_eval_pause_is_invalid(runs, name, words):
    assert_invalid(runs, name, "eval_training", words)


# -- the clock --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, words", [
    ("clock_now_ns", ["harness.clock._now_ns"]),
    # one run rebinds four things; the snapshot names each of them
    ("clock_rebind", ["harness.clock.Clock.elapsed_ms", "time.perf_counter_ns", "supervisor.causality.ABS_TOLERANCE",
                      "torch.cuda.synchronize"]),
    ("clock_rewind", ["independent clock"]),
    ("clock_temporary", ["independent clock"]),
])
def test_tampering_with_the_clock_is_invalid(runs, name, words):
    r = assert_invalid(runs, name, "clock_tamper", *words)
    assert r["val_loss"] is not None                       # the run went to the end; the verdict is the clock's


def test_the_slowed_clock_is_also_caught_by_the_span_check(runs):
    # rebinding _now_ns shows in the code snapshot and, independently, in the span check
    details = [v["detail"] for v in result(runs, "clock_now_ns")["violations"]]
    assert any("independent clock" in d for d in details), details


def test_editing_the_installed_harness_on_disk_is_invalid(runs):
    r = assert_invalid(runs, "harness_edit", "harness_files")
    assert "harness_copy" in r["reason"]                   # the private copy, never the real tree


# -- reading the shards behind the stream's back ------------------------------------------------------
def test_the_seeds_uint16_memmap_of_a_shard_is_refused(runs):
    r = assert_invalid(runs, "shard_memmap", "data_access", "opened dataset file", "train_000000.bin")
    assert "PermissionError" in (runs["shard_memmap"] / "log.txt").read_text()   # it never got the tokens


def test_reading_shards_around_pythons_open_is_invalid(runs):
    # torch.from_file, libc through ctypes, and a child process: each refused, each recorded
    r = assert_invalid(runs, "shard_bypass", "data_access", "from_file")
    details = " | ".join(v["detail"] for v in r["violations"])
    for words in ("with torch's from_file", "libc's open() through ctypes", "started a program"):
        assert words in details, details
    assert (runs["shard_bypass"] / "log.txt").read_text().count("refused: ") == 3


def test_the_train_split_is_not_in_the_records_memory(runs):
    # the data process holds the train shards: walking gc from the session finds only val
    r = result(runs, "shard_memory")
    assert r["status"] == "completed", r["reason"]
    assert "no train shard in memory" in (runs["shard_memory"] / "log.txt").read_text()
    assert "object_walk" in flags(runs, "shard_memory")


def test_training_on_the_val_tokens_leaves_the_claim_nothing_to_score(runs):
    # val is no longer in the record's process: the record read the claim's stream itself, once,
    # so the claim's evaluation finds it served already
    r = assert_invalid(runs, "val_training", "val", "already served once", "the record read the evaluation's tokens itself")
    assert r["tokens"] <= r["budget_tokens"]
    assert "val tokens ahead of the claim" in (runs["val_training"] / "log.txt").read_text()
    assert "harness_internals" in flags(runs, "val_training")   # h.stream is not in the contract


# -- records that go wrong ----------------------------------------------------------------------------
def test_a_crash_is_failed_with_its_traceback(runs):
    r = result(runs, "crash")
    assert r["status"] == "failed" and "deliberate crash" in r["reason"]
    assert "Traceback" in (runs["crash"] / "log.txt").read_text()


@pytest.mark.parametrize("name", ["hang", "hang_no_term"])
def test_a_hang_is_killed_at_the_timeout(runs, name):
    r = result(runs, name)
    assert r["status"] == "killed" and "timeout" in r["reason"]
    assert "step" in types_of(runs, name)                  # it got as far as training before hanging


@pytest.mark.parametrize("name, words", [("nan_loss", "train loss is nan"), ("nan_logits", "val loss is nan")])
def test_nan_is_invalid(runs, name, words):
    assert_invalid(runs, name, "nan", words)


# -- the last word ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["forged_atexit", "forged_inline"])
def test_the_harness_writes_the_last_run_end(runs, name):
    r = result(runs, name)
    ends = [e for e in events(runs, name) if e["type"] == "run_end"]
    assert ends[-1].get("forged") is None and ends[-1]["train_time_ms"] > 1.0
    assert len(ends) == (1 if name == "forged_atexit" else 2)   # the exit handler never ran
    if name == "forged_atexit":
        assert r["status"] == "completed" and r["train_time_ms"] == ends[-1]["train_time_ms"]
    else:
        # a run_end the record wrote itself comes first: the runner reads the first one and finds
        # the harness's lines after it, which only a forgery produces
        assert r["status"] == "invalid" and r["reason"].startswith("events:"), r["reason"]
    assert "exit_hooks" in flags(runs, name)


def test_the_record_runs_from_a_staged_copy(runs):
    # the runner executes a fresh copy of the digested files: nothing added to the record folder
    # after freeze (a .pyc, a file behind a link) is what runs
    log = (runs["clean"] / "log.txt").read_text()
    ran = Path(next(line for line in log.splitlines() if line.startswith("record file: ")).split(": ", 1)[1])
    record = Path(result(runs, "clean")["record"])
    assert ran.name == "train.py" and record.resolve() not in ran.resolve().parents
    assert "nanopoor-record-" in str(ran) and not ran.exists()   # the staged copy is gone after the run


def test_an_honest_run_sharing_its_dataset_with_other_runs_completes(runs):
    # clean_shared waits, before h.finish, until a second run on the same dataset has come and gone
    assert "waited for" in (runs["clean_shared"] / "log.txt").read_text()
    assert result(runs, "clean_shared_late")["status"] in ("completed", "invalid")
    r = result(runs, "clean_shared")
    assert r["status"] == "completed", r["reason"]


# -- 1. the probe, blinded or dodged --------------------------------------------------------------
def causality_event(runs, name) -> dict:
    return next(e for e in events(runs, name) if e["type"] == "causality")


def test_noise_in_one_column_no_longer_buys_a_leak_room(runs):
    # random values in a rare id's column made the old probe widen its tolerance past the +30 peek
    r = assert_invalid(runs, "probe_noise_column", "causality")
    c = causality_event(runs, "probe_noise_column")
    assert c["deterministic"] is False and c["noise"] > c["noise_ceiling"]
    assert c["tolerance"] <= 0.02 and r["max_leak"] >= 29.0   # the noise widened nothing


def test_a_leak_only_in_the_last_partial_batch_is_probed(runs):
    r = assert_invalid(runs, "probe_last_batch", "causality")
    assert r["max_leak"] >= 29.0 and [3, 32] in causality_event(runs, "probe_last_batch")["shapes"]


def test_a_row_reading_the_next_rows_first_token_is_caught(runs):
    # the leak sits only at each row's last position, where suffix cuts cannot see it
    r = assert_invalid(runs, "probe_cross_row", "causality")
    c = causality_event(runs, "probe_cross_row")
    assert c["cross_batch_leak"] >= 29.0 and c["deterministic"] is True and r["max_leak"] <= c["tolerance"]


def test_an_honest_model_left_with_dropout_fails_as_nondeterministic(runs):
    r = assert_invalid(runs, "probe_dropout", "causality")
    assert causality_event(runs, "probe_dropout")["deterministic"] is False and r["causal"] is False


def test_a_peek_only_in_the_second_half_of_each_row_is_caught(runs):
    r = assert_invalid(runs, "probe_second_half", "causality")
    c = causality_event(runs, "probe_second_half")
    assert r["max_leak"] >= 29.0 and c["worst_position"] >= 16


# -- 2. the evaluation's settings changed at run time ----------------------------------------------
def test_writing_to_h_args_fails_the_run(runs):
    r = result(runs, "settings_args_write")
    assert r["status"] == "failed" and "TypeError" in r["reason"], r["reason"]
    assert "does not support item assignment" in (runs["settings_args_write"] / "log.txt").read_text()


def test_rebinding_the_eval_plan_for_progress_evals_is_invalid(runs):
    assert_invalid(runs, "settings_plan_progress", "eval_settings", "eval_batch_size 1", "declares 32 and 4")


def test_rebinding_the_eval_plan_for_the_claim_is_not_completed(runs):
    r = result(runs, "settings_plan_all")
    assert r["status"] in ("invalid", "failed"), (r["status"], r["reason"])
    assert r["reason"].startswith(("eval_settings", "val")), r["reason"]


# -- 3. training in the evaluation pause -----------------------------------------------------------
@pytest.mark.parametrize("name", ["pause_shadow_hooks", "pause_grad_modes"])
def test_a_train_step_inside_a_one_window_progress_eval_is_charged(runs, name):
    # the red team's attack: a step's forward and backward inside a one-window progress eval, the
    # gradients banked for after the pause. the pause takes far longer than its one window can
    # explain, so the excess is train time; the autograd nodes it made are on record
    r = result(runs, name)
    if r["status"] == "invalid":
        assert r["reason"].startswith("eval_training"), r["reason"]
        return
    assert r["status"] == "completed", r["reason"]
    pauses = progress_pauses(runs, name)
    assert sum(e["autograd_nodes"] for e in pauses) > 0
    assert r["eval_charged_ms"] >= 0.5 * sum(e["forward_ms"] for e in pauses) > 0


def progress_pauses(runs, name) -> list[dict]:
    return [e for e in events(runs, name) if e["type"] == "eval" and e["split"] == "progress" and e["untimed"]]


def test_a_train_step_on_another_thread_inside_the_pause_is_charged(runs):
    # torch counts autograd nodes per thread: work on a worker thread makes none on the harness's.
    # the pause's forwards then take far longer than a forward over one window can: the excess is
    # charged to the train clock
    r = result(runs, "pause_thread")
    if r["status"] == "invalid":
        assert r["reason"].startswith("eval_training"), r["reason"]
        return
    assert r["status"] == "completed", r["reason"]
    forward_ms = sum(e["forward_ms"] for e in progress_pauses(runs, "pause_thread"))
    assert r["eval_charged_ms"] >= 0.5 * forward_ms > 0


def test_hidden_work_in_the_pause_is_charged_to_the_train_clock(runs):
    r = result(runs, "pause_burn")
    assert r["status"] == "completed", r["reason"]
    assert r["eval_charged_ms"] >= 300
    charge = next(e for e in events(runs, "pause_burn") if e["type"] == "eval_charge")
    assert charge["charged_ms"] == pytest.approx(r["eval_charged_ms"])
    last_step = [e for e in events(runs, "pause_burn") if e["type"] == "step"][-1]
    # the clock at the last step, plus the charge, is what the result claims (at least)
    assert r["train_time_ms"] >= last_step["train_time_ms"] + r["eval_charged_ms"] - 1.0


# -- 4. untimed compute before the clock -----------------------------------------------------------
def test_training_before_the_first_batch_finds_no_tokens_to_train_on(runs):
    r = result(runs, "untimed_pretrain")
    assert "found 0 token arrays" in (runs["untimed_pretrain"] / "log.txt").read_text()
    if r["status"] == "completed":
        assert r["val_loss"] >= result(runs, "clean_no_warmup")["val_loss"] - 0.05


def test_a_progress_eval_before_the_first_batch_starts_the_clock(runs):
    kinds = types_of(runs, "untimed_eval_first")
    assert "train_start" in kinds and kinds.index("train_start") < kinds.index("eval")
    first_eval = next(e for e in events(runs, "untimed_eval_first") if e["type"] == "eval")
    step1 = next(e for e in events(runs, "untimed_eval_first") if e["type"] == "step")
    # the 120 steps on the shown tokens ran on the clock: step 1's train time includes them
    assert first_eval["split"] == "progress" and step1["train_time_ms"] > first_eval["train_time_ms"]


def test_training_on_the_tokens_a_progress_eval_showed_gains_nothing(runs):
    r = result(runs, "untimed_eval_first")
    assert r["status"] != "completed" or r["val_loss"] >= result(runs, "clean_no_warmup")["val_loss"] - 0.05, r


# -- 5. the dataset's bytes around the audit hook ---------------------------------------------------
def test_opening_shards_through_a_dir_fd_a_chdir_or_a_hard_link_is_refused(runs):
    r = assert_invalid(runs, "around_audit", "data_access")
    details = " | ".join(v["detail"] for v in r["violations"])
    assert "another name or copy (os.link)" in details and "directly instead of using the harness stream" in details
    assert (runs["around_audit"] / "log.txt").read_text().count("refused: ") == 3


@pytest.mark.parametrize("name", ["around_link_child", "around_child_b64"])
def test_a_shard_opened_where_the_audit_hook_cannot_see_is_caught_by_the_kernel_watch(runs, name):
    r = result(runs, name)
    if not r["data_watch"]:
        pytest.skip("fanotify is unavailable here (the run's data_watch is false): no kernel watch to test")
    assert "read " in (runs[name] / "log.txt").read_text()   # the audit hook let it through
    r = assert_invalid(runs, name, "data_access", "opened by pid", "a process of this run")


def test_the_data_process_memory_holds_no_train_tokens_beyond_those_served(runs):
    from supervisor.shards import ShardFile
    from supervisor.stream import TrainStream, heldout_tokens_for

    r = result(runs, "around_proc_mem")
    assert r["status"] == "completed", r["reason"]
    dump = np.load(runs["around_proc_mem"].parent.parent / "proc_mem.npy")
    assert "proc_mem: " in (runs["around_proc_mem"] / "log.txt").read_text() and dump.size > 0
    data = runs["around_proc_mem"].parent.parent / "data" / "around_proc_mem" / "demo"
    train = np.asarray(ShardFile(data / "train_000000.bin", RT_VOCAB)[0:60_000], dtype=np.int64)
    tail = heldout_tokens_for(len(train), 8192)
    stream = TrainStream([train], 32, 4, 768 + 128, 11, heldout_tokens=tail)
    served = np.zeros(len(train), bool)
    for _ in range(7):   # the 6 batches taken and the one in flight
        for w in stream.next_indices():
            s = stream.window_start[w]
            served[s:s + 33] = True
    served[len(train) - tail:] = True   # the never-served tail: the progress half and the check half live there
    n = 16

    def grams(a):
        return {a[i:i + n].tobytes() for i in range(len(a) - n + 1)}

    hidden = set()
    for s in range(0, len(train) - n + 1):
        if not served[s:s + n].any():   # wholly never served (a gram across two served rows is not)
            hidden.add(train[s:s + n].tobytes())
    found = set()
    for run in np.split(dump, np.flatnonzero(dump == -1)):
        found |= grams(run[run >= 0])
    assert not (found & hidden), f"{len(found & hidden)} 16-grams of never-served train tokens in the data process"


def test_opening_another_process_memory_is_refused(runs):
    assert_invalid(runs, "around_proc_mem_direct", "data_access", "another process's memory")
    assert "proc_mem_direct: refused" in (runs["around_proc_mem_direct"] / "log.txt").read_text()


def test_reading_the_data_process_memory_during_the_claim_finds_only_the_batch_being_scored(runs):
    # read through a child process (outside the audit hook): the data process reads each window
    # from disk as it serves it, so it holds the inputs of the batch being scored and nothing
    # ahead of them (before, it held the whole val set: a run of 8,196 tokens). what the record
    # still gains from those inputs is a peek inside each row that a prefix-keyed cache hides from
    # the probe: the adaptive-forward limit (docs/trust.md row 1)
    import re

    log = (runs["around_proc_mem_claim"] / "log.txt").read_text()
    found = [int(n) for n in re.findall(r"found a run of (\d+) tokens in the data process", log)]
    # one eval batch is 4 consecutive windows of 32 inputs; a few neighbouring small ints in memory
    # can extend a run by a handful of values
    assert found and max(found) <= 2 * 4 * 32, found


# -- 6. the held-out check switched off -------------------------------------------------------------
@pytest.mark.parametrize("name", ["heldout_off_train", "heldout_off_eval"])
def test_windows_longer_than_half_the_tail_stop_the_run_at_start(runs, name):
    r = result(runs, name)
    assert r["status"] == "failed", (r["status"], r["reason"])
    assert r["reason"].startswith("harness could not start: the held-out check cannot run"), r["reason"]
    assert "step" not in types_of(runs, name) if (runs[name] / "events.jsonl").exists() else True


# -- 9. what the record was shown, remembered ------------------------------------------------------
@pytest.mark.xfail(strict=False, reason="known limit (docs/trust.md, adaptive forwards): StreamWindows keeps the current batch's inputs (_seen) before "
                                       "the forward runs, so a gc prefix lookup answers the probe's altered calls from "
                                       "the unaltered batch; val and the check collapse together and the run completes")
def test_a_gc_lookup_during_the_claim_finds_only_past_inputs(runs):
    r = result(runs, "val_lookup")
    assert "object_walk" in flags(runs, "val_lookup")
    assert r["status"] != "completed" or r["val_loss"] >= result(runs, "clean_no_warmup")["val_loss"] - 0.05, r


@pytest.mark.xfail(strict=False, reason="known limit (docs/trust.md, adaptive forwards): the probe alters copies of a batch after the record has seen the "
                                        "batch once; a forward that remembers the first call of each batch answers the "
                                        "probe's calls from it (rows keep their first token), so the leak usually never moves; "
                                        "some of the probe's random choices catch it, so the outcome varies from run to run")
def test_a_forward_that_remembers_each_batchs_first_call_gains_nothing(runs):
    r = result(runs, "lookup_memo")
    assert r["status"] != "completed" or r["val_loss"] >= result(runs, "clean_no_warmup")["val_loss"] - 0.05, r


def test_remembering_every_progress_token_gains_nothing_at_the_claim(runs):
    r = result(runs, "lookup_progress")
    # a record is shown at most a tenth of its budget (768 tokens here) of the progress slice
    assert r["progress_evals"] == 6 and 0 < r["progress_eval_tokens"] <= 6 * (768 // 10 + 33)
    assert r["status"] != "completed" or r["val_loss"] >= result(runs, "clean_no_warmup")["val_loss"] - 0.05, r


def test_the_heldout_stream_read_after_training_is_invalid(runs):
    assert_invalid(runs, "lookup_check_late", "heldout")


# -- 8. a forged run folder ------------------------------------------------------------------------
def forge(run_dir: Path, dst: Path) -> Path:
    """a copy of a completed run folder whose events.jsonl and result.json claim a better run, the
    hashes recomputed the way nanopoor.result writes them; log.txt and config.json left alone."""
    from nanopoor.result import canonical_sha256, sha256_file

    dst = dst / run_dir.name
    shutil.copytree(run_dir, dst)
    res = json.loads((dst / "result.json").read_text())
    better = {"val_loss": res["val_loss"] - 0.5, "train_time_ms": res["train_time_ms"] / 2, "tokens": res["tokens"] * 2}
    lines = []
    for e in [json.loads(x) for x in (dst / "events.jsonl").read_text().splitlines() if x.strip()]:
        if e["type"] == "run_end":
            e.update(better)
        elif e["type"] == "eval" and e.get("split") == "val":
            e["val_loss"] = better["val_loss"]
        lines.append(json.dumps(e))
    (dst / "events.jsonl").write_text("\n".join(lines) + "\n")
    res.update(better, budget_tokens=better["tokens"])   # so tokens stay within the budget it claims
    res["files"]["events.jsonl"] = sha256_file(dst / "events.jsonl")
    res.pop("result_sha256")
    res["result_sha256"] = canonical_sha256(res)
    (dst / "result.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return dst


@pytest.fixture
def forged(runs, tmp_path):
    from nanopoor.verify import verify_target

    clean = runs["clean_no_warmup"]
    root = clean.parent.parent
    copy = tmp_path / "honest"
    shutil.copytree(clean, copy / clean.name)
    honest = [p for c in verify_target(str(copy / clean.name), records_dir=root / "records") for p in c.problems]
    assert honest == [], honest                          # the untouched folder verifies
    return forge(clean, tmp_path / "forged"), root / "records"


def test_a_consistently_forged_folder_disagrees_with_its_log_and_config(forged):
    from nanopoor.crosscheck import folder_findings

    folder, _ = forged
    findings = folder_findings(folder, json.loads((folder / "result.json").read_text()))
    text = " | ".join(findings)
    assert "val_loss: log.txt prints" in text and "train_time_ms: log.txt prints" in text
    assert "budget_tokens: config.json says 768" in text


def test_verify_rejects_a_consistently_forged_folder(forged, app):
    from typer.testing import CliRunner

    folder, records = forged
    out = CliRunner().invoke(app, ["verify", str(folder), "--records", str(records), "--format", "json"])
    assert out.exit_code != 0 and "log.txt" in out.output, out.output
