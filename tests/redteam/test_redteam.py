"""the red team: records that cheat, each run under the harness, and what the harness says."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from harness.shards import write_shard

HERE = Path(__file__).parent
RT_VOCAB = 512        # a small vocabulary keeps every evaluation cheap on a cpu
RT_EOT = RT_VOCAB - 1


def make_redteam_dataset(root: Path, val_tokens: int = 16384 + 1, train_tokens: int = 60_000, seed: int = 0) -> Path:
    """a 'demo' dataset of documents drawn from a zipf-like unigram over a 512-id vocabulary.

    nothing in it can be learned beyond the unigram, so a model's val loss can only fall below
    its loss on unseen train tokens by memorising the val tokens themselves: the held-out check
    has a clean signal, and an honest model shows no gap."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, RT_VOCAB) ** 1.1
    p /= p.sum()

    def stream(n):
        out, total = [], 0
        while total < n:
            doc = rng.choice(RT_VOCAB - 1, size=int(rng.integers(5, 40)), p=p)
            out += [doc, np.array([RT_EOT])]
            total += len(doc) + 1
        return np.concatenate(out)[:n]

    root.mkdir(parents=True, exist_ok=True)
    entries = {}
    for split, n in (("val", val_tokens), ("train", train_tokens)):
        f = f"{split}_000000.bin"
        write_shard(root / f, stream(n), RT_VOCAB)
        entries[split] = [{"file": f, "tokens": int(n), "sha256": hashlib.sha256((root / f).read_bytes()).hexdigest(), "documents": None}]
    fp = hashlib.sha256(("cl100k_base" + str(RT_VOCAB) + "".join(e[0]["sha256"] for e in entries.values())).encode()).hexdigest()
    manifest = {"schema_version": 1, "dataset": "demo", "tokenizer": "cl100k_base", "vocab_size": RT_VOCAB, "eot_id": RT_EOT,
                "source": {"kind": "synthetic-redteam"}, "val": entries["val"], "train": entries["train"],
                "val_tokens": val_tokens, "train_tokens": train_tokens, "fingerprint": fp, "complete": True}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


# -- the runs ---------------------------------------------------------------------------------
# name -> (fixture folder, extra smoke args, timeout_s). every run is its own child process;
# the module fixture starts them all from a thread pool and each test reads one result.
CASES: dict[str, tuple[str, dict, float | None]] = {
    "clean": ("rt_clean", {"warmup": True}, None),
    "clean_no_warmup": ("rt_clean", {}, None),
    "sparse_attention": ("rt_sparse_attention", {}, None),
    "peek_next": ("rt_peek_next", {}, None),
    "val_lookup": ("rt_val_lookup", {}, None),
    "val_lookup_heldout": ("rt_val_lookup", {"mode": "also_heldout"}, None),
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
}

import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pytest  # noqa: E402

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
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run([sys.executable, "-c", EDIT_SCRIPT, str(copy / "harness"), str(rec), str(data), str(root / "runs")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.strip().splitlines()[-1])


def launch_all(root: Path, names) -> dict[str, Path]:
    """run every named case under the harness, in parallel child processes; name -> run folder."""
    data = make_redteam_dataset(root / "demo")

    def one(name):
        if name == "harness_edit":
            return name, _run_harness_edit(root / "edit", data)
        folder, args, timeout = CASES[name]
        rec = copy_record(HERE / folder, root / "records", name=f"{folder}_{name}", args=args)
        return name, run_record(rec, scale="smoke", seed=11, data_dir=data, out_root=root / "runs", timeout_s=timeout, quiet=True)

    names = sorted(names, key=lambda n: (not n.startswith("hang"), n != "harness_edit"))  # the slow ones first
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
    assert causality["probed_batches"] == 2 and len(causality["positions"]) >= 4  # val and held-out, random cuts


# -- attention and logits that see the future ------------------------------------------------------
def test_sparse_attention_over_the_whole_sequence_is_not_causal(runs):
    r = assert_invalid(runs, "sparse_attention", "causality")
    assert r["causal"] is False and r["max_leak"] > 0.05


def test_a_forward_that_peeks_at_the_next_token_only_in_eval_shaped_batches_is_caught(runs):
    r = assert_invalid(runs, "peek_next", "causality")
    assert r["max_leak"] >= 29.0                           # the boost it adds to the next token's logit
    assert r["val_loss"] < 2.0                             # what it would have claimed


def test_a_model_that_looks_up_val_tokens_in_memory_fails_the_heldout_check(runs):
    # prefix lookup is causal, so the probe passes; val collapses while unseen train tokens do not
    r = assert_invalid(runs, "val_lookup", "heldout")
    assert r["causal"] is True and r["heldout_gap"] > 3.0 and r["val_loss"] < 2.0
    assert {"object_walk", "harness_internals"} <= flags(runs, "val_lookup")


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
    ("eval_backward", "autograd graph"),
    ("eval_next_batch", "train data inside the evaluation pause"),
])
def test_training_work_inside_the_eval_pause_is_invalid(runs, name, words):
    assert_invalid(runs, name, "eval_training", words)


# -- the clock --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, words", [
    ("clock_now_ns", ["harness.clock._now_ns"]),
    # one run rebinds four things; the snapshot names each of them
    ("clock_rebind", ["harness.clock.Clock.elapsed_ms", "time.perf_counter_ns", "harness.causality.ABS_TOLERANCE",
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


def test_training_on_the_val_tokens_fails_the_heldout_check(runs):
    r = assert_invalid(runs, "val_training", "heldout")
    assert r["tokens"] <= r["budget_tokens"] and r["heldout_gap"] > 0.25
    assert "harness_internals" in flags(runs, "val_training")   # h.val_tokens_np is not in the contract


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
