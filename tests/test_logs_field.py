"""logs read the way the field reads them: the record's clock, seeds apart, MLPerf's own metrics,
and provenance found where logs print it (every log here is synthetic, written by the helpers)."""
from __future__ import annotations

import json

import pytest

from nanopoor.logs import parse_text
from nanopoor.logs.common import hardware_from_text
from nanopoor.review import review_parsed

RULE = "=" * 100
SMI_ROW = "|   {i}  NVIDIA H100 80GB HBM3          On  |   00000000:{i:02d}:00.0 Off |                    0 |"

SOURCE_2025 = '''import os
from dataclasses import dataclass

@dataclass
class Hyperparameters:
    train_seq_len = 48*1024 # FlexAttention sequence length
    num_iterations = {steps} # number of iterations to run
    val_loss_every = {every}
args = Hyperparameters()
print0(f"step:{{step}}/{{args.num_iterations}} val_loss:{{val_loss:.4f}} train_time:{{training_time_ms:.0f}}ms")'''


def modded_2025(*, steps=40, every=20, seeds=1, header=None, final_val=3.2795, step_ms=100.0, val_ms=50.0,
                source=None) -> str:
    """a 2025-era modded-nanogpt log: source, rule, environment, rule, then per seed a val at step 0,
    one time-only line per step, and a val line after the training line of every val step. the val
    line's clock is `val_ms` later than the training line's (the eval is printed after the step)."""
    source = source if source is not None else SOURCE_2025.format(steps=steps, every=every)
    header = header if header is not None else "\n".join(SMI_ROW.format(i=i) for i in range(8))
    out = [source, RULE, "Running PyTorch 2.7.0 compiled for CUDA 12.6", header, RULE]
    for seed in range(seeds):
        out.append(f"step:0/{steps} val_loss:10.8258 train_time:0ms step_avg:0.03ms")
        for s in range(1, steps + 1):
            t = s * step_ms
            out.append(f"step:{s}/{steps} train_time:{t:.0f}ms step_avg:{t / s:.2f}ms")
            if s % every == 0:
                v = final_val + 0.001 * seed if s == steps else 4.0 - s / steps / 2
                out.append(f"step:{s}/{steps} val_loss:{v:.4f} train_time:{t + val_ms + seed:.0f}ms step_avg:{t / s:.2f}ms")
        out.append("peak memory allocated: 30724 MiB reserved: 45952 MiB")
    return "\n".join(out) + "\n"


# --- 1. the clock of the final val line -----------------------------------------------------------
def test_time_is_read_from_the_final_val_line_not_the_last_training_line():
    log = parse_text(modded_2025(), "rec.txt")
    run = log.run
    assert run.final_time() == (4050.0, f"final val line (line {run.val_points[-1].line})")
    s = log.summary(3.28)["runs"][0]
    assert s["final_time_ms"] == 4050.0 and s["final_step"] == 40
    assert s["target_time_ms"] == 4050.0 and s["target_step"] == 40      # target time: the same line


def test_without_a_time_on_the_val_line_it_says_which_line_it_used():
    text = "\n".join(["step:0/20 val_loss:10.9 train_time:0ms step_avg:nanms",
                      "step:10/20 train_loss:4.0 train_time:1000ms step_avg:100ms",
                      "step:20/20 train_loss:3.3 train_time:2000ms step_avg:100ms",
                      "step:20/20 val_loss:3.25"]) + "\n"
    run = parse_text(text, "x.txt", parser="modded-nanogpt").run
    ms, source = run.final_time()
    assert ms == 2000.0 and "last line with a time (line 3" in source and "prints no time" in source


# --- 2. several seeds in one file ------------------------------------------------------------------
def test_seeds_pasted_into_one_file_are_separate_runs_with_mean_and_sd():
    log = parse_text(modded_2025(seeds=3), "seeds.txt")
    assert [r.name for r in log.runs] == ["seeds #1", "seeds #2", "seeds #3"]
    for k, run in enumerate(log.runs):
        assert run.restarts == [] and run.repeated_lines == []
        assert run.val_points[0].step == 0                      # each seed keeps its first eval
        assert run.final_val_loss == pytest.approx(3.2795 + 0.001 * k)
        assert run.final_time_ms == 4050.0 + k
    across = log.summary(3.28)["across_runs"]["val_loss"]
    assert across["count"] == 3
    assert across["final_val_loss"]["mean"] == pytest.approx(3.2805)
    assert across["final_val_loss"]["sd"] == pytest.approx(0.001)
    assert across["final_time_ms"]["mean"] == pytest.approx(4051.0)
    assert across["final_step"] == {"mean": 40.0, "sd": 0.0, "n": 3}
    assert "restart" not in {f.rule for f in review_parsed(log, "fineweb-edu")}


def test_a_restart_inside_one_run_stays_a_restart():
    # the run dies at step 25 of 40, starts over from step 0 with a fresh clock and finishes
    first, again = modded_2025(step_ms=100.0).splitlines(), modded_2025(step_ms=101.0).splitlines()
    body_at = first.index("step:0/40 val_loss:10.8258 train_time:0ms step_avg:0.03ms")
    cut = body_at + 1 + 25 + 1                   # step 0, steps 1..25 and the val at step 20
    text = "\n".join(first[:cut] + again[body_at + 1:]) + "\n"
    log = parse_text(text, "restart.txt")
    assert len(log.runs) == 1
    run = log.run
    assert len(run.restarts) == 1 and run.clock_resets
    assert run.final_val_loss == pytest.approx(3.2795) and run.final_time_ms == 40 * 101.0 + 50
    assert "restart" in {f.rule for f in review_parsed(log, "fineweb-edu")}


# --- 4. provenance where logs print it ---------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("Running on device_name=NVIDIA H100 80GB HBM3 with world_size=8\n", "8× NVIDIA H100 80GB HBM3"),
    ("GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\nGPU 1: NVIDIA H200 (UUID: GPU-bbbb)\n", "2× NVIDIA H200"),
    ("nvidia-smi not found. Using library functions instead.\nGPU Name   Temp  Power\n"
     "0   NVIDIA H100 80GB HBM3     35    117\n1   NVIDIA H100 80GB HBM3     48    120\n", "2× NVIDIA H100 80GB HBM3"),
    ("\n".join(SMI_ROW.format(i=i) for i in range(4)), "4× NVIDIA H100 80GB HBM3"),
])
def test_hardware_in_the_forms_logs_print_it(text, expected):
    assert hardware_from_text(text) == expected


def test_code_that_would_print_a_device_is_not_a_claim():
    assert hardware_from_text('print0(f"Running on device_name={name} with world_size={world_size}")\n') is None
    assert hardware_from_text("training on 8 GPUs\n") is None


def test_hardware_line_instead_of_nvidia_smi_is_no_missing_hardware():
    log = parse_text(modded_2025(header="Running on device_name=NVIDIA H200 with world_size=8"), "h.txt")
    assert log.hardware == "8× NVIDIA H200"
    found = {f.rule for f in review_parsed(log, "fineweb-edu")}
    assert not {"missing-hardware", "missing-arguments"} & found
    assert log.run.tokens_per_step == 48 * 1024 * 8               # train_seq_len × the 8 GPUs named


def test_hyperparameters_found_when_the_rest_of_the_code_does_not_parse():
    # two files pasted into one log: python rejects the whole, the dataclass is still there
    source = ("==> triton_kernels.py <==\nimport triton\ndef kernel(:\n    pass\n\n==> train_gpt.py <==\n"
              "import torch\n@dataclass\nclass Hyperparameters:\n    num_scheduled_iterations: int = 1200\n"
              "    num_extension_iterations: int = 40\n"
              "    num_iterations: int = num_scheduled_iterations + num_extension_iterations\n"
              "    train_batch_size: int = 2048 * 16 * 8  # tokens across all ranks\n")
    log = parse_text(modded_2025(source=source), "paste.txt")
    assert log.arguments["num_scheduled_iterations"] == 1200
    assert log.arguments["num_iterations"] == 1240                 # names declared above resolve
    assert log.run.tokens_per_step == 2048 * 16 * 8
    assert "missing-arguments" not in {f.rule for f in review_parsed(log, "fineweb-edu")}


@pytest.mark.parametrize("fields,tokens_at_40", [
    ("    batch_size = 8*64*1024 # batch size in tokens\n    seq_len = 64*1024 # FlexAttention sequence length\n",
     40 * 8 * 64 * 1024),
    ("    batch_size : int = 8*64 # batch size, in sequences, across all devices\n"
     "    sequence_length : int = 1024 # sequence length, in tokens\n", 40 * 512 * 1024),
    ("    seq_len = 48*1024 # FlexAttention sequence length\n", 40 * 48 * 1024 * 8),
    ("    train_bs_schedule: tuple = (8 * 2048 * 8, 16 * 2048 * 8)\n    train_bs_extension: int = 16 * 2048 * 8\n"
     "    num_scheduled_iterations: int = 30\n", 15 * 8 * 2048 * 8 + 25 * 16 * 2048 * 8),
])
def test_tokens_per_step_in_every_era(fields, tokens_at_40):
    get_bs = ("def get_bs(step: int):\n    if step >= args.num_scheduled_iterations:\n"
              "        return args.train_bs_extension\n    x = step / args.num_scheduled_iterations\n"
              "    bs_idx = int(len(args.train_bs_schedule) * x)\n    return args.train_bs_schedule[bs_idx]\n")
    source = f"import torch\nclass Hyperparameters:\n{fields}args = Hyperparameters()\n{get_bs}"
    run = parse_text(modded_2025(source=source), "era.txt").run
    assert run.val_points[-1].tokens == tokens_at_40
    found = review_parsed(parse_text(modded_2025(source=source), "era.txt"), "fineweb-edu")
    assert not any("gives no tokens" in f.message for f in found)


def test_a_batch_the_code_states_but_cannot_be_counted_is_said_so():
    source = "import torch\nclass Hyperparameters:\n    train_seq_len = 48*1024 # per rank\n"
    log = parse_text(modded_2025(source=source, header="Running PyTorch"), "nogpu.txt")
    [f] = [f for f in review_parsed(log, "fineweb-edu") if f.rule == "tokens-to-target"]
    assert "train_seq_len 49152 per GPU and the log names no GPU count" in f.message
    assert "gives no tokens" not in f.message


# --- 3. MLPerf by its own rules ---------------------------------------------------------------------
def mllog(key, value=None, t=0, **meta) -> str:
    return ":::MLLOG " + json.dumps({"namespace": "", "time_ms": 1_700_000_000_000 + t, "event_type": "POINT_IN_TIME",
                                     "key": key, "value": value, "metadata": meta})


def mlperf_log(benchmark: str, evals: list[tuple], stop_t: int = 900_000) -> str:
    """evals: (t_ms, value, metadata) after run_start at t=1000."""
    lines = [mllog("submission_benchmark", benchmark), mllog("submission_platform", "8xNVIDIA H100"),
             mllog("global_batch_size", 256), mllog("run_start", t=1000)]
    lines += [mllog("eval_accuracy", v, t=t, **meta) for t, v, meta in evals]
    lines.append(mllog("run_stop", t=stop_t, status="success"))
    return "\n".join(lines) + "\n"


def test_bert_is_judged_by_its_accuracy_target_not_by_3_28():
    evals = [(100_000 * k, acc, {"epoch_num": k}) for k, acc in enumerate([0.38, 0.60, 0.71, 0.7205], 1)]
    log = parse_text(mlperf_log("bert", evals), "bert.log")
    run = log.run
    assert (run.metric, run.target, run.higher_is_better) == ("masked-LM accuracy", 0.72, True)
    hit = run.first_at_or_below(run.target)
    assert hit.step == 4 and hit.val_loss == 0.7205          # not the 0.38 at the first eval
    s = log.summary(3.28)["runs"][0]
    assert s["target"] == 0.72 and s["target_step"] == 4 and s["best_val_loss"] == 0.7205
    assert s["final_time_ms"] == 899_000.0 and s["time_source"].startswith("run_stop − run_start")
    found = review_parsed(log, "fineweb-edu")
    assert not {"tokens-to-target", "plateau-then-cliff", "val-below-train"} & {f.rule for f in found}


def test_bert_short_of_its_target_is_not_reached():
    evals = [(100_000, 0.38, {"epoch_num": 1}), (200_000, 0.70, {"epoch_num": 2})]
    s = parse_text(mlperf_log("bert", evals), "bert.log").summary(3.28)["runs"][0]
    assert s["reached_target"] is False


def test_stable_diffusion_fid_and_clip_are_two_curves_with_their_own_targets():
    evals = []
    for k, (fid, clip) in enumerate([(210.0, 0.08), (120.0, 0.12), (85.0, 0.16)], 1):
        evals += [(100_000 * k, fid, {"samples_count": 512_000 * k, "metric": "FID"}),
                  (100_000 * k + 5, clip, {"samples_count": 512_000 * k, "metric": "CLIP"})]
    log = parse_text(mlperf_log("stable_diffusion", evals), "sd.log")
    by_metric = {r.metric: r for r in log.runs}
    assert set(by_metric) == {"FID", "CLIP"}
    fid, clip = by_metric["FID"], by_metric["CLIP"]
    assert [p.val_loss for p in fid.val_points] == [210.0, 120.0, 85.0] and fid.target == 90.0
    assert [p.val_loss for p in clip.val_points] == [0.08, 0.12, 0.16] and clip.higher_is_better
    assert fid.first_at_or_below(fid.target).step == clip.first_at_or_below(clip.target).step == 1_536_000
    assert log.meta["rounds"] == ["4.0", "4.1", "5.0"]


def test_unknown_benchmark_has_no_borrowed_target():
    log = parse_text(mlperf_log("new_thing", [(100_000, 0.5, {"epoch_num": 1})]), "x.log")
    assert log.run.target is None


def test_plot_has_one_panel_per_metric(tmp_path):
    from nanopoor.loss_plot import write_loss_plot

    evals = [(100_000, 150.0, {"samples_count": 1000, "metric": "FID"}),
             (100_005, 0.1, {"samples_count": 1000, "metric": "CLIP"}),
             (200_000, 80.0, {"samples_count": 2000, "metric": "FID"}),
             (200_005, 0.2, {"samples_count": 2000, "metric": "CLIP"})]
    log = parse_text(mlperf_log("stable_diffusion", evals), "sd.log")
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    png = write_loss_plot([(r.name, r) for r in log.runs], tmp_path / "sd.png", title="sd")
    assert png.read_bytes()[:4] == b"\x89PNG" and plt.get_fignums() == before
    from PIL import Image
    assert Image.open(png).size[1] > 4.5 * 110 * 1.5          # two panels, taller than one
