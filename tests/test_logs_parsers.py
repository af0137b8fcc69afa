"""log parsers: every format into one shape, picked by auto-detection (synthetic fixtures)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from nanopoor.errors import UserError
from nanopoor.logs import detect_format, parse_log, parse_text, parser_names

LOGS = Path(__file__).parent / "fixtures" / "logs"
REPO = Path(__file__).resolve().parents[1]


def nanopoor_lines(points, *, header=True) -> str:
    """NanoPoor-style lines from (step, train, val, minutes)."""
    out = ["Starting run abc123 from scratch", "compiling the model...", "compiled"] if header else []
    prev = 0.0
    for step, tl, vl, minutes in points:
        out.append(f"step: {step}, train loss: {tl:.4f}, val loss: {vl:.4f}, elapsed time: {minutes:.2f} min, "
                   f"dt: {(minutes - prev) * 60000:.2f} ms")
        prev = minutes
    return "\n".join(out) + "\n"


# --- modded-nanogpt ----------------------------------------------------------------------------
def test_modded_2024_source_hardware_arguments_and_tokens():
    log = parse_log(LOGS / "modded_nanogpt_2024.txt")
    assert log.format == "modded-nanogpt"
    assert log.has_source and "class Hyperparameters" in log.source_code
    assert log.hardware == "8× NVIDIA H100 80GB HBM3"
    assert log.arguments["batch_size"] == 8 * 64 and log.arguments["sequence_length"] == 1024
    run = log.run
    assert run.total_steps == 200 and run.last.step == 200
    assert [p.step for p in run.val_points] == [0, 50, 100, 150, 200]
    assert run.final_val_loss == pytest.approx(3.27)
    assert run.tokens_per_step == 512 * 1024
    hit = run.first_at_or_below(3.28)
    assert hit.step == 200 and hit.tokens == 200 * 512 * 1024 and hit.time_ms == 47879.0
    # the f-string print calls in the embedded source are not log lines
    assert all(p.line > log.source_code.count("\n") for p in run.steps)
    # the clock restarts at step 10 (untimed warm-up): a clock reset, not a restart
    assert run.restarts == [] and len(run.clock_resets) == 1


def test_modded_2025_no_train_loss_nan_step_avg_per_rank_seq_len():
    log = parse_log(LOGS / "modded_nanogpt_2025.txt")
    assert log.format == "modded-nanogpt"
    run = log.run
    assert run.train_points == []            # later logs print no train loss
    assert run.steps[1].time_ms == 141.0     # step_avg:nanms does not break the line
    assert log.arguments["train_seq_len"] == 48 * 1024
    assert run.tokens_per_step == 48 * 1024 * 8   # per rank × the 8 GPUs of the nvidia-smi table
    assert run.final_val_loss == pytest.approx(3.2795)


def test_modded_source_only_is_not_a_log():
    source = (LOGS / "modded_nanogpt_2025.txt").read_text().split("=" * 100)[0]
    with pytest.raises(UserError, match="no training lines"):
        parse_text(source + "=" * 100 + "\n", "code.txt", parser="modded-nanogpt")


def test_modded_without_separator_and_argparse_defaults():
    text = ("import argparse\nparser.add_argument('--batch_size', type=int, default=4*8)\n"
            "parser.add_argument(\"--sequence_length\", type=int, default=1024)\n"
            "step:0/20 val_loss:10.9000 train_time:0ms step_avg:nanms\n"
            "step:1/20 train_loss:10.5000 train_time:120ms step_avg:nanms\n")
    log = parse_text(text, "old.txt")
    assert log.format == "modded-nanogpt" and log.source_code is None
    assert log.run.steps[1].train_loss == 10.5


def test_old_nvidia_smi_layout_tesla_t4():
    from nanopoor.logs.common import hardware_from_nvidia_smi

    table = ("|===============================+======================+======================|\n"
             "|   0  Tesla T4            Off  | 00000000:00:04.0 Off |                    0 |\n"
             "| N/A   36C    P8     9W /  70W |      0MiB / 15109MiB |      0%      Default |\n")
    assert hardware_from_nvidia_smi(table) == "1× Tesla T4"


# --- llm.c ---------------------------------------------------------------------------------------
def test_llmc_tel_is_val_trl_is_train_eval_ignored():
    log = parse_log(LOGS / "llmc_main.log")
    assert log.format == "llmc"
    run = log.run
    assert run.name == "llmc_main"
    s0 = run.steps[0]
    assert (s0.step, s0.val_loss, s0.train_loss) == (0, 10.9868, 10.9874)   # tel and trl of step 0 merged
    assert [p.step for p in run.val_points] == [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]
    assert all(p.val_loss > 1 for p in run.val_points)          # hellaswag `eval:0.25` never taken as a loss
    assert run.first_at_or_below(3.28).step == 2000
    assert not log.has_hardware and not log.has_source and run.final_time_ms is None


def test_llmc_resumed_run_is_a_restart():
    text = "s:0 tel:10.9\ns:1 trl:10.1\ns:2 trl:9.5\ns:1 trl:10.2\ns:2 trl:9.6\n"
    run = parse_text(text, "main.log").run
    assert run.restarts == [4]


# --- MLPerf --------------------------------------------------------------------------------------
def test_mlperf_eval_accuracy_time_from_run_start_platform():
    log = parse_log(LOGS / "mlperf_gpt3.log")
    assert log.format == "mlperf"
    assert log.hardware == "8xNVIDIA H100 80GB HBM3 (ExampleOrg)"
    assert log.arguments["global_batch_size"] == 2048 and "submission_org" not in log.arguments
    run = log.run
    assert [p.val_loss for p in run.val_points] == [3.95, 3.10, 2.82, 2.68]
    first = run.val_points[0]
    assert first.time_ms == pytest.approx(600_000, abs=1)   # the eval line's clock, from run_start
    assert first.train_loss == 3.97                             # its train point joins it
    assert first.tokens == 24 * 2048 * 2048
    assert run.reported["status"] == "success"
    # judged by gpt3's own rule (log perplexity <= 2.69), timed run_start to run_stop
    assert (run.metric, run.target, run.higher_is_better) == ("log perplexity", 2.69, False)
    assert run.final_time() == (2_400_020.0, "run_stop − run_start (line 34)")
    assert log.unparsed_lines == 1     # the NeMo line between the MLLOG lines


# --- this project's events.jsonl and log.txt ---------------------------------------------------
def write_events(run_dir: Path, events: list[dict], result: dict | None = None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    if result:
        (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def harness_events(steps=4, tokens_per_step=8192, device_name="Tesla T4"):
    ev = [{"type": "run_start", "time": 1.0, "run_id": "r1", "record": "muon_3xlr", "scale": "full", "seed": 7,
           "track": "fineweb-edu", "steps": steps, "seq_len": 1024, "batch_size": 8, "grad_accum": 1,
           "budget_tokens": steps * tokens_per_step, "world_size": 1, "args": {"lr": 0.003},
           "torch": {"version": "2.13.0", "device": "cuda", "device_name": device_name}},
          {"type": "warmup_end", "time": 2.0, "warmup_time_ms": 5000.0, "capped": False, "restored": True}]
    for s in range(1, steps + 1):
        ev.append({"type": "step", "time": 2.0 + s, "step": s, "tokens": s * tokens_per_step,
                   "train_loss": 8.0 - s, "train_time_ms": 1000.0 * s})
        if s % 2 == 0:
            ev.append({"type": "eval", "time": 2.5 + s, "step": s, "tokens": s * tokens_per_step,
                       "train_time_ms": 1000.0 * s, "val_loss": 8.1 - s, "val_tokens": 4096, "full": s == steps,
                       "eval_time_ms": 50.0})
    ev.append({"type": "run_end", "time": 99.0, "status": "completed", "reason": "", "train_time_ms": 1000.0 * steps,
               "tokens": steps * tokens_per_step, "val_loss": 8.1 - steps, "steps": steps, "compiles_in_timed": 0,
               "causal": True})
    return ev


def test_events_run_folder_means_its_events(tmp_path):
    run_dir = write_events(tmp_path / "run1", harness_events(), {"hardware_label": "1× Tesla T4", "record_sha256": "ab" * 32})
    log = parse_log(run_dir)
    assert log.format == "events" and log.name == "run1"
    assert log.hardware == "1× Tesla T4" and log.source_ref.startswith("record muon_3xlr")
    assert log.arguments["lr"] == 0.003 and log.arguments["seq_len"] == 1024
    run = log.run
    assert [p.step for p in run.steps] == [1, 2, 3, 4]
    assert run.steps[1].train_loss == 6.0 and run.steps[1].val_loss == pytest.approx(6.1)   # step+eval merged
    assert run.final_val_loss == pytest.approx(4.1) and run.final_tokens == 4 * 8192
    assert log.meta["prefix_evals"] == 1 and log.meta["causal"] is True


def test_events_nan_strings_and_cut_off_last_line(tmp_path):
    ev = harness_events()[:-1]
    ev[3]["train_loss"] = "nan"           # the harness writes nan as a string
    run_dir = write_events(tmp_path / "r", ev)
    with open(run_dir / "events.jsonl", "a") as f:
        f.write('{"type": "step", "ti')     # a killed run's half-written line
    log = parse_log(run_dir)
    assert math.isnan(log.run.steps[1].train_loss)
    assert log.unparsed_lines == 1 and log.hardware == "1× Tesla T4"


def test_folder_without_events_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="without events.jsonl"):
        parse_log(tmp_path)


def test_runlog_lines_as_the_harness_prints_them(tmp_path):
    from supervisor.events import eval_line

    lines = ["loading model...", eval_line(80, 160, 3.9, 3.95, 445_800.0, 80 * 32768, full=False),
             eval_line(160, 160, 3.2074, 3.1957, 891_600.0, 160 * 32768, full=True), "run_end: completed"]
    (tmp_path / "log.txt").write_text("\n".join(lines) + "\n")
    log = parse_log(tmp_path / "log.txt")
    assert log.format == "runlog" and log.meta["prefix_evals"] == 1
    last = log.run.last
    assert (last.step, last.train_loss, last.val_loss, last.time_ms) == (160, 3.2074, 3.1957, 891_600.0)
    assert last.tokens == 5_240_000          # printed as 5.24M
    assert log.run.total_steps == 160


# --- NanoPoor text -----------------------------------------------------------------------------
def test_nanopoor_text_headings_split_runs_and_checkpoint_lines_ignored():
    text = ("1e-4\n\n" + nanopoor_lines([(10, 8.0, 8.0, 2.0), (20, 7.0, 7.0, 3.0)], header=False)
            + "Saving checkpoint to checkpoints/x_20.pt\n\n3e-4\n\n"
            + nanopoor_lines([(10, 6.0, 6.0, 2.0), (20, 5.0, 5.1, 3.0)], header=False))
    log = parse_text(text, "lr.txt")
    assert log.format == "nanopoor-text"
    assert [r.name for r in log.runs] == ["1e-4", "3e-4"]
    assert log.runs[1].final_val_loss == 5.1 and log.runs[1].last.time_ms == 180_000.0
    assert all(r.restarts == [] for r in log.runs)


def test_nanopoor_text_repeated_lines_and_restart():
    body = nanopoor_lines([(10, 6.0, 6.0, 2.0), (20, 5.0, 5.0, 3.0)])
    repeated = body + body.splitlines()[-1] + "\n"           # the last step line printed twice
    run = parse_text(repeated, "rep.txt").run
    assert len(run.steps) == 2 and run.repeated_lines == [(6, 5)]
    restarted = body + nanopoor_lines([(10, 6.1, 6.1, 2.1)])  # started again: run id line, then step 10
    run = parse_text(restarted, "restart.txt").run
    assert run.restarts and run.restarts[0] == 6


def test_nanopoor_text_formula_comment_gives_tokens_and_arguments():
    text = ("# tokens used is ctx_len*batch_size*grad_accum*steps = 1024*6*4*20 = 491520\n\n"
            + nanopoor_lines([(10, 6.0, 6.0, 2.0), (20, 5.0, 5.0, 3.0)]))
    log = parse_text(text, "f.txt")
    assert log.arguments == {"ctx_len": 1024, "batch_size": 6, "grad_accum": 4, "steps": 20}
    assert log.run.tokens_per_step == 1024 * 6 * 4 and log.run.last.tokens == 20 * 1024 * 6 * 4
    assert log.notes[0].startswith("tokens used")


# --- detection and errors ----------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [("modded_nanogpt_2024.txt", "modded-nanogpt"), ("modded_nanogpt_2025.txt", "modded-nanogpt"),
                                      ("llmc_main.log", "llmc"), ("mlperf_gpt3.log", "mlperf")])
def test_detection_picks_the_format(name, fmt):
    assert detect_format((LOGS / name).read_text()) == fmt


def test_unknown_format_is_one_clear_line(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nthis is not a training log\n")
    with pytest.raises(UserError) as e:
        parse_log(p)
    assert "cannot tell the log format" in str(e.value) and "\n" not in str(e.value)


def test_unknown_parser_name_suggests_the_close_one(tmp_path):
    with pytest.raises(UserError, match="did you mean 'mlperf'"):
        parse_log(LOGS / "mlperf_gpt3.log", parser="mlpref")
    assert set(parser_names()) == {"events", "mlperf", "modded-nanogpt", "llmc", "runlog", "nanopoor-text"}


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no log at"):
        parse_log(tmp_path / "nope.txt")


def test_parsing_never_imports_torch():
    code = ("import sys\nfrom pathlib import Path\nfrom nanopoor.logs import parse_log\n"
            f"for p in sorted(Path({str(LOGS)!r}).iterdir()): parse_log(p)\n"
            "bad = [m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_modded_line_numbers_point_at_the_file():
    lines = (LOGS / "modded_nanogpt_2024.txt").read_text().splitlines()
    run = parse_log(LOGS / "modded_nanogpt_2024.txt").run
    for p in (run.steps[0], run.steps[57], run.steps[-1]):
        assert lines[p.line - 1].startswith(f"step:{p.step}/200")


def test_modded_odd_line_shape_reads_the_same_through_the_general_reader():
    base = "import os\n" + "=" * 100 + "\n"
    usual = base + "step:1/2 train_loss:9.5000 train_time:100ms step_avg:nanms\nstep:2/2 val_loss:9.0000 train_time:200ms step_avg:100.00ms\n"
    odd = usual + "step:2/2 lr:0.1 extra:1\n"        # a key order the one-regex path does not know
    a, b = parse_text(usual, "a.txt").run, parse_text(odd, "b.txt").run
    assert [(p.step, p.train_loss, p.val_loss, p.time_ms) for p in a.steps] == \
           [(p.step, p.train_loss, p.val_loss, p.time_ms) for p in b.steps] == [(1, 9.5, None, 100.0), (2, None, 9.0, 200.0)]


def test_llmc_port_total_batch_size_wins_over_per_device_batch():
    from nanopoor.logs.modded_nanogpt import _tokens

    tps, formula, _ = _tokens({"batch_size": 64, "sequence_length": 1024, "total_batch_size": 524288}, {}, None, None)
    assert tps == 524288 and "total_batch_size" in formula


def test_program_output_between_blank_lines_is_not_a_heading():
    text = (nanopoor_lines([(10, 6.0, 6.0, 2.0)]) + "\nSaving checkpoint to checkpoints/a_10.pt\n\n"
            + nanopoor_lines([(20, 5.0, 5.0, 3.0)], header=False))
    log = parse_text(text, "one.txt")
    assert len(log.runs) == 1 and [p.step for p in log.run.steps] == [10, 20]
