"""the red team: records that cheat, each run under the harness, and what the harness says.

harness 0.4 runs a record in a bubblewrap sandbox and keeps every number outside it (the clock,
the tokens, the event log, the claim): most attacks written against the harness that lived in the
record's own process find nothing there to reach. each attack still runs here, and each test
says what it gets now: nothing it reaches, a verdict, or work that counts on the clock. the
attacks written against 0.4 itself (class 1 to 3 of the second red team, and their variants) are
the cases under `-- harness 0.4's own red team`."""
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
# name -> (fixture folder, extra smoke args, timeout_s[, scale[, as_t4]]). every run is its own
# child process; the module fixture starts them all from a thread pool and each test reads one
# result. every case gets a dataset of its own (the same tokens). "{data}" in an argument is the
# case's dataset folder, "{root}" the fixture's folder and "{repo}" this checkout.
CASES: dict[str, tuple] = {
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
    # the dataset's bytes around the stream
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
    # names added to or shadowing the session (rt_shadow)
    "class_warmup_t4": ("rt_shadow", {"mode": "class_warmup", "warmup_steps": 20}, None, "smoke", True),
    "instance_finish": ("rt_shadow", {"mode": "instance_finish"}, None),
    "instance_eval": ("rt_shadow", {"mode": "instance_eval"}, None),
    "instance_batch_t4": ("rt_shadow", {"mode": "instance_batch"}, None, "smoke", True),
    "class_swap": ("rt_shadow", {"mode": "class_swap"}, None),
    "builtin_min": ("rt_shadow", {"mode": "builtin_min"}, None),
    "summary_only": ("rt_shadow", {"mode": "summary_only"}, None),
    "drain_fake": ("rt_shadow", {"mode": "drain_fake"}, None),
    "honest_t4": ("rt_shadow", {"mode": ""}, None, "smoke", True),
    # -- harness 0.4's own red team: the second red team's classes, and variants written against 0.4
    "reach": ("rt_reach", {"paths": '["{data}/manifest.json", "{data}", "{repo}/corpus", "{repo}/records", "{repo}/data", '
                                    '"{root}", "/usr/share/doc", "/etc/passwd"]'}, None),
    "outside_generate": ("rt_outside", {"mode": "generate"}, None),
    "outside_regenerate": ("rt_outside", {"mode": "regenerate"}, None),
    "claim_copy": ("rt_claim_work", {"mode": "claim_copy", "epochs": 12}, None),
    "claim_after_handover": ("rt_claim_work", {"mode": "after_handover"}, None),
    "claim_fake_handover": ("rt_claim_work", {"mode": "fake_handover"}, None),
    "pause_work": ("rt_pause_work", {"hidden_steps": 60}, None),
    "tamper_lower": ("rt_client_tamper", {"mode": "lower_everything"}, None),
    "tamper_blind": ("rt_client_tamper", {"mode": "blind_probe"}, None),
}

# make test runs one attack of each kind: the honest twins; a leak in the forward (sparse_attention,
# peek_next, the probe's blind spots: probe_cross_row, probe_last_batch, lookup_memo, val_lookup);
# the budget; a warm-up that keeps its training; a record that crashes, ignores SIGTERM or gives
# nan; the record's reach (reach, harness_edit); knowledge from outside before the clock
# (outside_*, untimed_pretrain); work in the claim or in progress evals (claim_*, pause_work); the
# client tampered with from inside (tamper_*: the clock, the log, the claim, the probe); a T4 run.
# the variants below try the same thing another way: since harness 0.4 what they reach for is not
# in the record's process, so each ends like its kind's representative. `make test-all` runs them
# (marked archive, with the tests that read them); the fixture below starts only what is selected.
ARCHIVED = {"warmup_shadow_opt", "warmup_shadow_manual", "eval_step", "eval_backward", "pause_shadow_hooks",
            "pause_grad_modes", "pause_thread", "clock_now_ns", "clock_rewind", "clock_temporary", "shard_memmap",
            "shard_memory", "around_audit", "around_link_child", "around_child_b64", "around_proc_mem",
            "around_proc_mem_claim", "forged_atexit", "class_warmup_t4", "instance_eval", "builtin_min", "class_swap",
            "summary_only", "drain_fake", "settings_plan_progress", "val_lookup_heldout", "lookup_progress",
            "lookup_check_late", "over_budget_erase", "nan_logits", "probe_noise_column", "probe_second_half",
            "settings_args_write", "heldout_off_eval", "instance_batch_t4", "val_training", "settings_plan_all",
            "around_proc_mem_direct", "heldout_off_train", "instance_finish", "claim_after_handover",
            "untimed_eval_first", "probe_dropout", "hang", "eval_next_batch", "clock_rebind", "shard_bypass",
            "pause_burn", "forged_inline"}


def cases(*names: str) -> list:
    """parametrize values: an archived variant carries the archive mark."""
    return [pytest.param(n, marks=pytest.mark.archive) if n in ARCHIVED else n for n in names]


import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.slow  # every case is a real run: `pytest -m "not slow"` skips the module

from conftest import archive_selected, copy_record  # noqa: E402
from nanopoor.runner import run_record  # noqa: E402

import harness  # noqa: E402
import supervisor  # noqa: E402

REPO = HERE.parents[1]
# the harness-edit case runs against a private copy of the client and the supervisor, in its own
# process: the client is bound read-only into the sandbox, and if it ever were not, the edit must
# land in the copy, never in this tree
EDIT_SCRIPT = """
import sys
from pathlib import Path
import harness
from nanopoor.runner import run_record
assert Path(harness.__file__).parent == Path(sys.argv[1]), harness.__file__
d = run_record(Path(sys.argv[2]), scale="smoke", seed=3, data_dir=Path(sys.argv[3]), out_root=Path(sys.argv[4]), quiet=True)
print(d)
"""


def _run_harness_edit(root: Path, data: Path) -> Path:
    copy = root / "harness_copy"
    for pkg in (harness, supervisor):
        shutil.copytree(Path(pkg.__file__).parent, copy / pkg.__name__, ignore=shutil.ignore_patterns("__pycache__"))
    rec = copy_record(HERE / "rt_harness_edit", root / "records")
    # the copy first (its harness and supervisor win), then this tree (its nanopoor)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(copy), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", EDIT_SCRIPT, str(copy / "harness"), str(rec), str(data), str(root / "runs")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.strip().splitlines()[-1])


class DatasetReader:
    """another process's reads of a run's dataset while it runs (a backup, a copy, an editor's index):
    none of the record's business, so none of its verdict (docs/trust.md)."""

    def __init__(self, data: Path):
        self.data, self.bytes, self.stop = data, 0, threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        while not self.stop.is_set():
            for f in sorted(self.data.glob("*.bin")):
                self.bytes += len(f.read_bytes())
            self.stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


READ_BY_ANOTHER = {}   # bytes another process read of the clean run's dataset while it ran


def launch_all(root: Path, names) -> dict[str, Path]:
    """run every named case under the harness, in parallel child processes; name -> run folder."""

    def one(name):
        data = make_redteam_dataset(root / "data" / name / "demo")
        if name == "harness_edit":
            return name, _run_harness_edit(root / "edit", data)
        folder, args, timeout, *rest = CASES[name]
        scale, as_t4 = (rest + ["smoke", False])[:2] if len(rest) < 2 else rest
        fill = {"data": str(data), "root": str(root), "repo": str(REPO)}
        args = {k: v.format(**fill) if isinstance(v, str) else v for k, v in args.items()}
        rec = copy_record(HERE / folder, root / "records", name=f"{folder}_{name}", args=args)
        if name == "clean":
            with DatasetReader(data) as reader:
                d = run_record(rec, scale=scale, seed=11, data_dir=data, out_root=root / "runs", timeout_s=timeout, quiet=True)
            READ_BY_ANOTHER[name] = reader.bytes
            return name, d
        return name, run_record(rec, scale=scale, seed=11, data_dir=data, out_root=root / "runs", timeout_s=timeout,
                                quiet=True, as_t4=as_t4)

    slow_first = ("hang", "harness_edit", "claim_copy", "outside", "pause", "lookup", "val_lookup")
    names = sorted(names, key=lambda n: next((i for i, p in enumerate(slow_first) if n.startswith(p)), len(slow_first)))
    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, names))


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, Path]:
    names = [n for n in CASES if archive_selected(request) or n not in ARCHIVED]
    return launch_all(tmp_path_factory.mktemp("redteam"), [*names, "harness_edit"])


def result(runs, name) -> dict:
    return json.loads((runs[name] / "result.json").read_text())


def events(runs, name) -> list[dict]:
    return [json.loads(line) for line in (runs[name] / "events.jsonl").read_text().splitlines() if line.strip()]


def log(runs, name) -> str:
    return (runs[name] / "log.txt").read_text()


def flags(runs, name) -> set[str]:
    return {f["pattern"] for e in events(runs, name) if e["type"] == "source_flags" for f in e["flags"]}


def assert_invalid(runs, name, kind, *words):
    r = result(runs, name)
    assert r["status"] == "invalid", (name, r["status"], r["reason"])
    assert r["reason"].startswith(kind), (name, r["reason"])
    for w in words:
        assert w in r["reason"], (name, w, r["reason"])
    return r


def assert_gains_nothing(runs, name, slack: float = 0.05) -> dict:
    """the attack did not end in a claim better than the honest record's (the same model, seed and data)."""
    r = result(runs, name)
    honest = result(runs, "clean_no_warmup")["val_loss"]
    assert r["status"] != "completed" or r["val_loss"] >= honest - slack, (name, r["status"], r["val_loss"], honest)
    return r


def assert_not_completed(runs, name, *words) -> dict:
    r = result(runs, name)
    assert r["status"] in ("failed", "invalid"), (name, r["status"], r["reason"])
    for w in words:
        assert w in r["reason"] or w in log(runs, name), (name, w, r["reason"])
    return r


def progress_evals(runs, name) -> list[dict]:
    return [e for e in events(runs, name) if e["type"] == "eval" and e["split"] == "progress"]


def types_of(runs, name) -> list[str]:
    return [e["type"] for e in events(runs, name)]


# -- no false positives ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", cases("clean", "clean_no_warmup"))
def test_an_honest_record_completes(runs, name):
    r = result(runs, name)
    assert r["status"] == "completed", r["reason"]
    assert r["causal"] is True and r["max_leak"] == 0.0 and abs(r["heldout_gap"]) < 0.25
    assert r["tokens"] == 32 * 4 * 6 and r["violations"] == []
    assert r["isolated"] is True and r["claim"]["claim_path"] == "graph"   # scored from its exported graph
    assert flags(runs, name) == set()                     # nothing for a reviewer to chase
    kinds = types_of(runs, name)
    assert kinds[-1] == "run_end" and kinds.count("run_end") == 1 and "violation" not in kinds
    assert ("warmup_end" in kinds) == (name == "clean")
    causality = next(e for e in events(runs, name) if e["type"] == "causality")
    # val (255 windows) and the held-out half (87) both end in a batch of 3: each evaluation probes a
    # random batch and every short one, cut at random positions of every row. the random one is the
    # short one too in 1 of 64 val and 1 of 22 held-out evaluations; the shapes show both were probed
    assert 2 <= causality["probed_batches"] <= 4 and len(causality["positions"]) >= 8
    assert causality["deterministic"] is True and causality["stateless"] is True
    assert [3, 32] in causality["shapes"] and [4, 32] in causality["shapes"]


def test_an_honest_run_whose_dataset_another_process_reads_completes(runs):
    # the dataset is not in the record's sandbox: what other processes do with it is not the record's
    assert READ_BY_ANOTHER["clean"] > 0 and result(runs, "clean")["status"] == "completed"


def test_the_record_runs_from_a_staged_copy(runs):
    # the sandbox holds a fresh copy of the digested files at /record: nothing added to the record
    # folder after freeze (a .pyc, a file behind a link) is what runs
    ran = next(line for line in log(runs, "clean").splitlines() if line.startswith("record| record file: "))
    assert ran.endswith("/record/train.py"), ran


# -- attention and logits that see the future ------------------------------------------------------
def test_sparse_attention_over_the_whole_sequence_is_not_causal(runs):
    r = assert_invalid(runs, "sparse_attention", "causality")
    assert r["causal"] is False and r["max_leak"] > 0.05


def test_a_forward_that_peeks_at_the_next_token_only_in_eval_shaped_batches_is_caught(runs):
    r = assert_invalid(runs, "peek_next", "causality")
    assert r["max_leak"] >= 29.0                           # the boost it adds to the next token's logit
    assert r["val_loss"] < 2.0                             # what it would have claimed


@pytest.mark.archive
def test_the_heldout_tail_cannot_be_read_ahead_of_the_check(runs):
    assert_gains_nothing(runs, "val_lookup_heldout")       # no stream of the tail is in the record's reach


# -- budget -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", cases("over_budget", "over_budget_erase"))
def test_asking_past_the_budget_is_invalid_even_when_the_refusal_is_swallowed(runs, name):
    r = assert_invalid(runs, name, "budget", "768 tokens")
    assert r["tokens"] == 768                              # nothing past the budget was sent
    assert "violation: budget: the record asked for batch 7" in log(runs, name)
    # "erase" empties whatever list it finds; the violation was sent the moment it happened
    assert any(e["type"] == "violation" and e["kind"] == "budget" for e in events(runs, name))


# -- the warm-up: setup before the first batch --------------------------------------------------------
@pytest.mark.parametrize("name", cases("warmup_no_reset", "warmup_shadow_opt", "warmup_shadow_manual"))
def test_training_in_the_warmup_gains_nothing(runs, name):
    # the warm-up sees no dataset token (none is in the sandbox): a model or a shadow trained there
    # learns from dummy data only
    assert_gains_nothing(runs, name)


# -- work in an evaluation is on the clock --------------------------------------------------------------
@pytest.mark.parametrize("name", cases("eval_step", "eval_backward", "eval_next_batch"))
def test_training_work_inside_an_evaluation_gains_nothing(runs, name):
    r = assert_gains_nothing(runs, name)
    assert all(e["untimed"] is False for e in progress_evals(runs, name)), name   # no untimed pause exists
    assert r["eval_charged_ms"] in (None, 0.0) or r["status"] != "completed" or r["train_time_ms"] > 0


@pytest.mark.parametrize("name", cases("pause_shadow_hooks", "pause_grad_modes", "pause_thread", "pause_burn"))
def test_a_train_step_inside_a_one_window_progress_eval_is_on_the_clock(runs, name):
    # each step's work moved into a progress evaluation: that evaluation runs on the train clock
    r = result(runs, name)
    assert r["status"] == "completed", r["reason"]
    assert progress_evals(runs, name) and all(e["untimed"] is False for e in progress_evals(runs, name))
    steps = [e for e in events(runs, name) if e["type"] == "step"]
    assert r["train_time_ms"] >= steps[-1]["train_time_ms"]   # the clock never stopped for them


@pytest.mark.archive
def test_hidden_work_in_a_progress_eval_is_train_time(runs):
    # ~0.5 s of matmuls in each of the 6 progress evaluations: all of it inside the train time
    assert result(runs, "pause_burn")["train_time_ms"] >= 6 * 500 * 0.8


# -- the clock --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", cases("clock_now_ns", "clock_rebind", "clock_rewind", "clock_temporary"))
def test_tampering_with_the_clock_finds_no_clock_to_tamper_with(runs, name):
    r = result(runs, name)
    assert "clock in this process: False" in log(runs, name)
    assert r["status"] == "completed", r["reason"]
    if name != "clock_rebind":   # each step sleeps 150 ms: the supervisor's clock counts every one
        assert r["train_time_ms"] >= 6 * 150
    assert_gains_nothing(runs, name)


def test_editing_the_installed_harness_on_disk_fails_on_a_read_only_client(runs):
    r = assert_not_completed(runs, "harness_edit", "Read-only file system")
    copy = runs["harness_edit"].parent.parent / "harness_copy" / "harness" / "__init__.py"
    assert "edited by a record" not in copy.read_text()   # the private copy, never the real tree
    assert r["status"] == "failed"


# -- reading the dataset behind the stream's back ------------------------------------------------------
@pytest.mark.parametrize("name", cases("shard_memmap", "shard_bypass", "shard_memory", "around_audit", "around_link_child",
                                  "around_child_b64", "around_proc_mem", "around_proc_mem_claim",
                                  "around_proc_mem_direct", "val_training"))
def test_reading_the_dataset_around_the_stream_finds_none(runs, name):
    # the records ask the harness where the dataset is (a config a sandboxed record is never
    # given); rt_reach below looks for it by its path and in other processes, and finds nothing
    r = assert_not_completed(runs, name)
    assert r["tokens"] <= r["budget_tokens"]
    assert not (runs[name].parent.parent / "proc_mem.npy").exists()


# -- records that go wrong ----------------------------------------------------------------------------
def test_a_crash_is_failed_with_its_traceback(runs):
    r = result(runs, "crash")
    assert r["status"] == "failed" and "deliberate crash" in r["reason"]
    assert "Traceback" in log(runs, "crash")


@pytest.mark.parametrize("name", cases("hang", "hang_no_term"))
def test_a_hang_is_killed_at_the_timeout(runs, name):
    r = result(runs, name)
    assert r["status"] == "killed" and "timeout" in r["reason"]
    assert "step" in types_of(runs, name)                  # it got as far as training before hanging


@pytest.mark.parametrize("name, words", [("nan_loss", "train loss is nan"),
                                         pytest.param("nan_logits", "val loss is nan", marks=pytest.mark.archive)])
def test_nan_is_invalid(runs, name, words):
    assert_invalid(runs, name, "nan", words)


# -- the last word ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", cases("forged_atexit", "forged_inline"))
def test_the_harness_writes_the_last_run_end(runs, name):
    ends = [e for e in events(runs, name) if e["type"] == "run_end"]
    assert len(ends) == 1 and ends[0].get("forged") is None   # only the supervisor writes the event log
    assert_not_completed(runs, name)


# -- 1. the probe, blinded or dodged --------------------------------------------------------------
def causality_event(runs, name) -> dict:
    return next(e for e in events(runs, name) if e["type"] == "causality")


@pytest.mark.archive
def test_noise_in_one_column_no_longer_buys_a_leak_room(runs):
    r = assert_invalid(runs, "probe_noise_column", "causality")
    c = causality_event(runs, "probe_noise_column")
    assert c["deterministic"] is False and c["noise"] > c["noise_ceiling"]
    assert c["tolerance"] <= 0.02 and r["max_leak"] >= 29.0   # the noise widened nothing


def test_a_leak_only_in_the_last_partial_batch_is_probed(runs):
    r = assert_invalid(runs, "probe_last_batch", "causality")
    assert r["max_leak"] >= 29.0 and [3, 32] in causality_event(runs, "probe_last_batch")["shapes"]


def test_a_row_reading_the_next_rows_first_token_is_caught(runs):
    r = assert_invalid(runs, "probe_cross_row", "causality")
    c = causality_event(runs, "probe_cross_row")
    assert c["cross_batch_leak"] >= 29.0 and c["deterministic"] is True and r["max_leak"] <= c["tolerance"]


@pytest.mark.archive
def test_an_honest_model_left_with_dropout_fails_as_nondeterministic(runs):
    r = assert_invalid(runs, "probe_dropout", "causality")
    assert causality_event(runs, "probe_dropout")["deterministic"] is False and r["causal"] is False


@pytest.mark.archive
def test_a_peek_only_in_the_second_half_of_each_row_is_caught(runs):
    r = assert_invalid(runs, "probe_second_half", "causality")
    c = causality_event(runs, "probe_second_half")
    assert r["max_leak"] >= 29.0 and c["worst_position"] >= 16


# -- 2. the evaluation's settings changed at run time ----------------------------------------------
@pytest.mark.archive
def test_writing_to_h_args_fails_the_run(runs):
    r = result(runs, "settings_args_write")
    assert r["status"] == "failed" and "TypeError" in r["reason"], r["reason"]
    assert "does not support item assignment" in log(runs, "settings_args_write")


@pytest.mark.parametrize("name", cases("settings_plan_progress", "settings_plan_all"))
def test_the_claims_evaluation_settings_are_the_frozen_configs(runs, name):
    # the evaluation's plan is the supervisor's, from the frozen config: nothing in the record's
    # process holds it to rebind
    assert_not_completed(runs, name)
    for e in events(runs, name):
        if e["type"] == "eval" and e["split"] == "val":
            assert (e["eval_seq_len"], e["eval_batch_size"]) == (32, 4)


# -- 4. untimed compute before the clock -----------------------------------------------------------
def test_training_before_the_first_batch_finds_no_tokens_to_train_on(runs):
    assert "found 0 token arrays" in log(runs, "untimed_pretrain")
    assert_gains_nothing(runs, "untimed_pretrain")


@pytest.mark.archive
def test_a_progress_eval_before_the_first_batch_starts_the_clock(runs):
    kinds = types_of(runs, "untimed_eval_first")
    assert "train_start" in kinds and kinds.index("train_start") < kinds.index("eval")
    first_eval = next(e for e in events(runs, "untimed_eval_first") if e["type"] == "eval")
    step1 = next(e for e in events(runs, "untimed_eval_first") if e["type"] == "step")
    # the 120 steps on the shown tokens ran on the clock: step 1's train time includes them
    assert first_eval["split"] == "progress" and step1["train_time_ms"] > first_eval["train_time_ms"]


@pytest.mark.archive
def test_training_on_the_tokens_a_progress_eval_showed_gains_nothing(runs):
    assert_gains_nothing(runs, "untimed_eval_first")


# -- 6. the held-out check switched off -------------------------------------------------------------
@pytest.mark.parametrize("name", cases("heldout_off_train", "heldout_off_eval"))
def test_windows_longer_than_half_the_tail_stop_the_run_at_start(runs, name):
    r = result(runs, name)
    assert r["status"] == "failed", (r["status"], r["reason"])
    assert r["reason"].startswith("harness could not start: the held-out check cannot run"), r["reason"]
    assert "step" not in types_of(runs, name)


# -- 9. what the record was shown, remembered ------------------------------------------------------
def test_a_gc_lookup_during_the_claim_finds_only_past_inputs(runs):
    # the claim is computed by the scorer, where the record's code does not run: a gc walk finds
    # nothing of the evaluation
    assert_gains_nothing(runs, "val_lookup")


def test_a_forward_that_remembers_each_batchs_first_call_gains_nothing(runs):
    # the exported graph keeps no state between calls; a memo that reads the other rows is a leak
    # across rows, which the probe sees
    assert_gains_nothing(runs, "lookup_memo")


@pytest.mark.archive
def test_remembering_every_progress_token_gains_nothing_at_the_claim(runs):
    r = result(runs, "lookup_progress")
    # a record is shown at most a tenth of its budget (768 tokens here) of the progress slice
    assert r["progress_evals"] == 6 and 0 < r["progress_eval_tokens"] <= 768 // 10 + 33
    assert_gains_nothing(runs, "lookup_progress")


@pytest.mark.archive
def test_the_heldout_stream_read_after_training_is_out_of_reach(runs):
    assert_not_completed(runs, "lookup_check_late")


# -- 11. names added to or shadowing the session ----------------------------------------------------
def test_an_honest_run_under_the_t4_limits_completes(runs):
    r = result(runs, "honest_t4")
    assert r["status"] == "completed", r["reason"]
    assert r["t4_limits"] is True


@pytest.mark.parametrize("name", cases("class_warmup_t4", "instance_eval", "instance_batch_t4", "builtin_min"))
def test_a_method_shadowed_on_the_client_changes_no_number(runs, name):
    # the client is the record's own code: whatever it makes the client do, the clock, the tokens
    # and the claim are the supervisor's
    assert_gains_nothing(runs, name)


@pytest.mark.parametrize("name", cases("instance_finish", "class_swap", "summary_only", "drain_fake"))
def test_a_finish_faked_in_the_records_process_hands_nothing_over(runs, name):
    r = assert_not_completed(runs, name)
    assert r["val_loss"] is None                           # no claim without a handover


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


def test_every_folder_the_harness_wrote_verifies(runs):
    """whatever an attack did, the folder the supervisor wrote is consistent: every copy of each
    number, the log's lines and the timeline agree (a charge added after the clock stopped is in
    the claim's line too)."""
    from nanopoor.verify import verify_target

    records = next(iter(runs.values())).parent.parent / "records"
    problems = {name: p for name, d in runs.items() if name != "harness_edit"
                for p in [[x for c in verify_target(str(d), records_dir=records) for x in c.problems]] if p}
    assert problems == {}, problems


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


# -- harness 0.4's own red team ------------------------------------------------------------------
# each case below was written by reading harness 0.4's code; the first of each class is the second
# red team's attack as it ran against 0.3.2 (where it ended completed and verified: docs/trust.md
# lists what it claimed there)
def reaches(runs, name) -> dict[str, str]:
    out = {}
    for line in log(runs, name).splitlines():
        if line.startswith("record| REACH "):
            key, _, got = line[len("record| REACH "):].partition(": ")
            out[key] = got
    return out


def test_the_sandbox_holds_no_dataset_corpus_tool_tokenizer_or_text_of_the_machine(runs):
    r = result(runs, "reach")
    assert r["status"] == "completed", r["reason"]
    got = reaches(runs, "reach")
    paths = {k: v for k, v in got.items() if k.startswith("path")}
    assert len(paths) == 8 and all(v.startswith('"no (') for v in paths.values()), paths
    for name in ("import nanopoor", "import supervisor", "tokenizer vocabulary", "network", "write the client",
                 "write the record", "mount"):
        assert got[name].startswith('"no ('), (name, got[name])
    assert got["machine text /usr/share"] == "[]"
    assert json.loads(got["other processes"]) == [1, 2]   # the sandbox's own: its init and the record
    root = json.loads(got["root folder"])
    assert not {"work", "home", "data", "srv", "mnt", "media"} & set(root), root


@pytest.mark.parametrize("name", cases("outside_generate", "outside_regenerate"))
def test_knowledge_from_the_projects_own_code_is_out_of_reach(runs, name):
    # class 1: the tests' dataset builder imported from the project's tree, to pretrain on fresh
    # documents of the same kind or to rebuild the run's val set and held-out tail for a lookup
    r = result(runs, name)
    assert "OUTSIDE: the project's code is out of reach" in log(runs, name)
    assert r["status"] == "completed" and r["val_loss"] == result(runs, "clean_no_warmup")["val_loss"]


def test_a_copy_trained_inside_the_claims_evaluation_is_charged_to_the_train_clock(runs):
    # class 2a: the claim's first call trains a copy for 12 more epochs over the served batches.
    # the forward cannot be exported (it trains), so it answers from the record's claim servers
    # (each trains its own copy), where every call is timed: work beyond what predicting can take
    # is train time
    r = result(runs, "claim_copy")
    assert "CLAIM_COPY: trained a copy" in log(runs, "claim_copy")
    assert r["claim"]["claim_path"] == "python"
    clock_ms = r["train_time_ms"] - r["eval_charged_ms"]   # what the supervisor's clock measured
    # 12 epochs against the run's one: the charge is a multiple of the clock's time, and is in the train time
    assert r["eval_charged_ms"] > 2 * clock_ms > 0, (r["eval_charged_ms"], clock_ms)


@pytest.mark.archive
def test_training_after_the_handover_changes_no_weight_the_claim_reads(runs):
    r = result(runs, "claim_after_handover")
    assert "AFTER_HANDOVER: trained on" in log(runs, "claim_after_handover")
    assert r["status"] == "completed" and r["val_loss"] == result(runs, "clean_no_warmup")["val_loss"]


def test_a_handover_said_before_the_weights_are_final_is_invalid(runs):
    assert_invalid(runs, "claim_fake_handover", "claim", "changed after the record said they were written")


def test_training_hidden_in_compiling_progress_evals_is_train_time(runs):
    # class 2b: harness 0.3 let the first compiling pauses off its charge; there are no pauses now
    r = result(runs, "pause_work")
    hidden = float(next(line for line in log(runs, "pause_work").splitlines() if "HIDDEN_MS" in line).split()[-1])
    assert r["status"] == "completed" and hidden > 0 and r["train_time_ms"] >= hidden
    assert all(e["untimed"] is False for e in progress_evals(runs, "pause_work"))


def test_lowering_every_copy_from_inside_the_records_process_changes_nothing(runs):
    # class 3: the clock, the summary, the event log's file, stdout, the client's messages and a
    # claim line of the record's own; nothing it reaches holds a number of the run
    from nanopoor.verify import verify_target

    r = result(runs, "tamper_lower")
    assert r["status"] == "completed" and r["val_loss"] == result(runs, "clean_no_warmup")["val_loss"]
    lines = log(runs, "tamper_lower").splitlines()
    harness_claim = [line for line in lines if line.startswith("step: ")]
    assert len(harness_claim) == 1 and f"val_loss: {r['val_loss']:.4f}" in harness_claim[0]
    assert any(line.startswith("record| step: ") for line in lines)   # its own claim line, marked as its own
    root = runs["tamper_lower"].parent.parent
    assert [p for c in verify_target(str(runs["tamper_lower"]), records_dir=root / "records") for p in c.problems] == []


def test_a_probe_blinded_in_the_records_process_is_not_the_one_that_judges(runs):
    r = assert_invalid(runs, "tamper_blind", "causality")
    assert r["max_leak"] >= 29.0
