"""review: each anomaly rule on synthetic curves (firing and not), and the `review` command."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nanopoor.cli import reproduce as cli_reproduce, review as cli_review
from nanopoor.errors import UserError
from nanopoor.logs import parse_log, parse_text
from nanopoor.logs.model import ParsedLog, ParsedRun, StepPoint
from nanopoor.review import review_parsed

LOGS = Path(__file__).parent / "fixtures" / "logs"
PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-logs" / "nanopoor"


def make_log(points, *, tps=None, source="code", hardware="1× Tesla T4", arguments=None, **run_kw) -> ParsedLog:
    """a parsed log from (step, train, val, time_ms) tuples."""
    run = ParsedRun(name="r", steps=[StepPoint(step=s, train_loss=t, val_loss=v, time_ms=ms, line=i + 1)
                                     for i, (s, t, v, ms) in enumerate(points)], **run_kw)
    if tps:
        run.apply_tokens_per_step(tps)
    return ParsedLog(path=Path("x.txt"), format="test", runs=[run], source_code=source, hardware=hardware,
                     arguments={"lr": 1e-3} if arguments is None else arguments)


def power_law(steps, start=10.0, end=3.0):
    """a healthy curve: fast early, slower and slower later (3.21 at step 160)."""
    return [end + (start - end) / (1 + s / 5) for s in steps]


def rules(findings):
    return {f.rule for f in findings}


def review(log, **kw):
    return review_parsed(log, "fineweb-edu", **kw)


# --- tokens to target ----------------------------------------------------------------------------
def test_tokens_to_target_flags_a_few_million_tokens():
    steps = list(range(10, 170, 10))
    log = make_log([(s, v + 0.01, v, s * 5000.0) for s, v in zip(steps, power_law(steps))], tps=32768)
    f = [x for x in review(log) if x.rule == "tokens-to-target"]
    assert len(f) == 1 and f[0].severity == "error" and "4.26M tokens (step 130" in f[0].message


def test_tokens_to_target_silent_when_plausible_and_when_not_reached():
    steps = list(range(10, 170, 10))
    curve = [(s, v + 0.01, v, s * 5000.0) for s, v in zip(steps, power_law(steps))]
    assert "tokens-to-target" not in rules(review(make_log(curve, tps=1_000_000)))       # 160M tokens
    high = [(s, 4.0, 4.0, s * 5000.0) for s in steps]                                      # never at 3.28
    assert "tokens-to-target" not in rules(review(make_log(high, tps=32768)))


def test_tokens_unknown_is_a_note_and_tokens_per_step_overrides():
    steps = list(range(10, 170, 10))
    log = make_log([(s, v, v, s * 5000.0) for s, v in zip(steps, power_law(steps))])
    [f] = [x for x in review(log) if x.rule == "tokens-to-target"]
    assert f.severity == "info" and "--tokens-per-step" in f.message
    [f] = [x for x in review(log, tokens_per_step=32768) if x.rule == "tokens-to-target"]
    assert f.severity == "error"


def test_target_and_track_change_the_verdict():
    steps = list(range(10, 170, 10))
    log = make_log([(s, v, v, s * 5000.0) for s, v in zip(steps, power_law(steps))], tps=32768)
    assert "tokens-to-target" not in rules(review_parsed(log, "demo"))         # no plausibility floor there
    assert "tokens-to-target" not in rules(review(log, target=2.0))            # never reached 2.0


# --- curve shape ------------------------------------------------------------------------------
def nanopoor_like():
    """flat near 3.95 for most of the run, then a late fall to 3.2 (the seed's broken stream)."""
    vals = [5.9, 4.03, 4.0, 3.96, 3.99, 3.92, 3.93, 3.88, 3.77, 3.70, 3.59, 3.55, 3.47, 3.40, 3.32, 3.20]
    return [(10 * (i + 1), v + 0.01, v, 60_000.0 * (i + 1)) for i, v in enumerate(vals)]


def test_plateau_then_cliff_fires_on_a_flat_then_falling_curve():
    [f] = [x for x in review(make_log(nanopoor_like())) if x.rule == "plateau-then-cliff"]
    assert f.severity == "warn" and "faster per step" in f.message


@pytest.mark.parametrize("shape", ["power", "cooldown", "noisy"])
def test_plateau_then_cliff_silent_on_healthy_curves(shape):
    steps = list(range(0, 3001, 125))
    vals = power_law(steps, 10.8, 3.3)
    if shape == "cooldown":   # warmup-stable-decay: an extra 0.15 nats in the last 30%
        vals = [v - 0.15 * max(0.0, (s - 2100) / 900) for s, v in zip(steps, vals)]
    if shape == "noisy":
        vals = [v + 0.02 * (-1) ** i for i, v in enumerate(vals)]
    log = make_log([(s, v + 0.02, v, 100.0 * s) for s, v in zip(steps, vals)])
    assert "plateau-then-cliff" not in rules(review(log))


def test_val_persistently_below_train():
    steps = list(range(10, 210, 10))
    below = make_log([(s, v + 0.12, v, s * 1000.0) for s, v in zip(steps, power_law(steps))])
    [f] = [x for x in review(below) if x.rule == "val-below-train"]
    assert f.severity == "warn" and "100%" in f.message
    noisy = make_log([(s, v + (0.03 if i % 2 else -0.03), v, s * 1000.0)
                      for i, (s, v) in enumerate(zip(steps, power_law(steps)))])
    assert "val-below-train" not in rules(review(noisy))


# --- clock ------------------------------------------------------------------------------------
def test_compile_inside_the_clock():
    times = [138_000.0] + [138_000.0 + 48_800.0 * i for i in range(1, 16)]
    pts = [(10 * (i + 1), 5.0 - 0.1 * i, 5.0 - 0.1 * i, t) for i, t in enumerate(times)]
    [f] = [x for x in review(make_log(pts)) if x.rule == "compile-in-clock"]
    assert "steps 0-10" in f.message and "~89 s" in f.message
    even = [(10 * (i + 1), 5.0, 5.0, 48_800.0 * (i + 1)) for i in range(16)]
    assert "compile-in-clock" not in rules(review(make_log(even)))


def test_time_already_on_the_clock_at_step_zero():
    pts = [(0, 11.0, 11.0, 255_000.0)] + [(10 * i, 5.0, 5.0, 255_000.0 + 60_000.0 * i) for i in range(1, 20)]
    [f] = [x for x in review(make_log(pts)) if x.rule == "compile-in-clock"]
    assert "at step 0" in f.message


def test_untimed_warmup_before_a_clock_reset_is_not_compile_in_clock():
    log = parse_log(LOGS / "modded_nanogpt_2024.txt")        # step 1 took 30 s, then the clock restarts
    found = review(log)
    assert "compile-in-clock" not in rules(found) and "clock-reset" in rules(found)
    assert not {"missing-source", "missing-hardware", "missing-arguments", "tokens-to-target"} & rules(found)


def test_compiles_counted_by_the_harness_are_reported():
    log = make_log([(s, 5.0, 5.0, 1000.0 * s) for s in range(1, 10)], reported={"compiles_in_timed": 3})
    [f] = [x for x in review(log) if x.rule == "compile-in-clock"]
    assert "3 compilations" in f.message


# --- integrity of the log itself --------------------------------------------------------------
def test_nan_restarts_and_repeats():
    pts = [(10, 5.0, 5.0, 1.0), (20, float("nan"), 4.9, 2.0), (30, 4.8, 4.8, 3.0)]
    log = make_log(pts, restarts=[7], repeated_lines=[(9, 8)])
    found = {f.rule: f for f in review(log)}
    assert found["nan"].severity == "error" and "step 20" in found["nan"].message
    assert found["restart"].severity == "warn" and found["repeated-lines"].severity == "warn"


def test_missing_provenance_and_severity_order():
    steps = list(range(10, 170, 10))
    log = make_log([(s, v, v, s * 5000.0) for s, v in zip(steps, power_law(steps))], tps=32768,
                   source=None, hardware=None, arguments={})
    found = review(log)
    assert {"missing-source", "missing-hardware", "missing-arguments"} <= rules(found)
    order = ["error", "warn", "info"]
    assert [order.index(f.severity) for f in found] == sorted(order.index(f.severity) for f in found)
    assert "1× Tesla T4" in next(f.message for f in found if f.rule == "missing-hardware")


def test_harness_verdicts_from_events(tmp_path):
    from test_logs_parsers import harness_events, write_events

    ev = harness_events()
    ev[-1].update(status="invalid", reason="causality failed", causal=False)
    found = review(parse_log(write_events(tmp_path / "r", ev)))
    assert {"causality", "status"} <= {f.rule for f in found if f.severity == "error"}
    assert not {"missing-source", "missing-hardware", "missing-arguments"} & rules(found)


# --- the command --------------------------------------------------------------------------------
@pytest.fixture
def app():
    a = typer.Typer()
    cli_review.register(a)
    cli_reproduce.register(a)
    return a


def nanopoor_log(tmp_path: Path) -> Path:
    lines = ["Starting run 2yapG8 from scratch"]
    for s, t, v, ms in nanopoor_like():
        lines.append(f"step: {s}, train loss: {t:.4f}, val loss: {v:.4f}, elapsed time: {ms / 60000:.2f} min, dt: 1.0 ms")
    p = tmp_path / "logs" / "run.txt"
    p.parent.mkdir(parents=True)
    p.write_text("\n".join(lines) + "\n")
    return p


def test_review_json_and_no_png_unless_asked(app, tmp_path, monkeypatch):
    log = nanopoor_log(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    res = CliRunner().invoke(app, ["review", str(log), "--format", "json"])
    assert res.exit_code == 1, res.output   # an error finding: the claim does not stand
    data = json.loads(res.output)
    assert data["log"]["format"] == "nanopoor-text" and data["track"] == "fineweb-edu" and data["target"] == 3.28
    assert data["log"]["runs"][0]["target_tokens"] == 160 * 32768     # run id 2yapG8: the published formula
    assert "tokens-to-target" in {f["rule"] for f in data["findings"] if f["severity"] == "error"}
    assert data["plot"] is None
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # nothing beside it, nothing in cwd


def test_review_table_prints_claim_and_anomalies(app, tmp_path):
    res = CliRunner().invoke(app, ["review", str(nanopoor_log(tmp_path))], env={"COLUMNS": "200"})
    assert res.exit_code == 1, res.output
    for text in ("what the log claims", "5.24M", "tokens-to-target", "plateau-then-cliff", "anomalies"):
        assert text in res.output
    assert "loss curve" not in res.output
    res = CliRunner().invoke(app, ["review", str(nanopoor_log(tmp_path / "b")), "--no-plot"])   # old scripts still run
    assert res.exit_code == 1, res.output


def test_review_plot_path_file_or_folder(app, tmp_path):
    log = nanopoor_log(tmp_path)
    res = CliRunner().invoke(app, ["review", str(log), "--plot", str(tmp_path / "out.png"), "--format", "json"])
    assert json.loads(res.output)["plot"] == str(tmp_path / "out.png") and (tmp_path / "out.png").is_file()
    res = CliRunner().invoke(app, ["review", str(log), "--plot", str(tmp_path), "--format", "json"])
    assert json.loads(res.output)["plot"] == str(tmp_path / "review-run.png")


def test_review_run_folder_never_writes_into_it(app, tmp_path, monkeypatch):
    from test_logs_parsers import harness_events, write_events

    run_dir = write_events(tmp_path / "run7", harness_events())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["review", str(run_dir), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["plot"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run7"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["events.jsonl"]
    assert data["track"] == "fineweb-edu"                 # the run's own track


def test_review_of_a_committed_run_leaves_git_status_clean(app, tmp_path, monkeypatch):
    from test_logs_parsers import harness_events, write_events

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    run_dir = write_events(tmp_path / "runs" / "run7", harness_events())
    (run_dir / "log.txt").write_text("step: 10/20 train_loss: 5.0000 val_loss: 5.1000 train_time: 1.0s tokens: 1.0k\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a run")
    monkeypatch.chdir(tmp_path)
    for args in (["review", str(run_dir / "log.txt")], ["review", str(run_dir), "--format", "json"],
                 ["review", "runs"], ["review", str(run_dir / "events.jsonl"), str(run_dir / "log.txt")]):
        res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert res.exit_code == 0, (args, res.output)
        assert git("status", "--porcelain", "--untracked-files=all").stdout == "", args


def test_review_tokens_per_step_and_target_options(app, tmp_path):
    log = nanopoor_log(tmp_path)
    res = CliRunner().invoke(app, ["review", str(log), "--format", "json", "--tokens-per-step", "1000000"])
    data = json.loads(res.output)
    assert data["log"]["runs"][0]["target_tokens"] == 160_000_000
    assert "tokens-to-target" not in {f["rule"] for f in data["findings"]}
    res = CliRunner().invoke(app, ["review", str(log), "--format", "json", "--target", "3.5"])
    assert json.loads(res.output)["log"]["runs"][0]["target_step"] == 130


@pytest.mark.parametrize("args,match", [(["--track", "fineweb"], "did you mean 'fineweb-edu'"),
                                        (["--parser", "moded-nanogpt"], "did you mean 'modded-nanogpt'")])
def test_review_bad_names_are_user_errors(app, tmp_path, args, match):
    res = CliRunner().invoke(app, ["review", str(nanopoor_log(tmp_path)), *args])
    assert res.exit_code != 0 and isinstance(res.exception, UserError)
    assert match in str(res.exception)


@pytest.mark.skipif(not PEER.is_dir(), reason="../shared/peer-logs is not present")
def test_review_flags_the_number_one_claim(app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["review", str(PEER / "tweaks_run_nosave.txt"), "--format", "json"])
    assert res.exit_code == 1, res.output   # its error finding
    data = json.loads(res.output)
    [f] = [f for f in data["findings"] if f["rule"] == "tokens-to-target"]
    assert f["severity"] == "error" and "5.24M tokens" in f["message"]
    assert {"missing-source", "missing-hardware", "missing-arguments", "compile-in-clock",
            "plateau-then-cliff"} <= {f["rule"] for f in data["findings"]}
    assert data["plot"] is None and not list(tmp_path.iterdir())
    assert not (PEER / "review-tweaks_run_nosave.png").exists()


@pytest.mark.skipif(not PEER.is_dir(), reason="../shared/peer-logs is not present")
def test_review_the_multi_run_log_reviews_each_run(app, tmp_path):
    res = CliRunner().invoke(app, ["review", str(PEER / "lr_test_runs.txt"), "--format", "json"])
    data = json.loads(res.output)
    assert [r["name"] for r in data["log"]["runs"]] == ["1e-4", "1e-3", "3e-3", "8e-4", "5e-4", "3e-4"]
    assert {f["run"] for f in data["findings"] if f["rule"] == "compile-in-clock"} == {r["name"] for r in data["log"]["runs"]}


def test_text_parse_of_review_fixture_is_consistent():
    # the synthetic nanopoor-like curve reads back through the real parser with the same numbers
    text = "\n".join(f"step: {s}, train loss: {t:.4f}, val loss: {v:.4f}, elapsed time: {ms / 60000:.2f} min"
                     for s, t, v, ms in nanopoor_like())
    run = parse_text(text, "x.txt").run
    assert [p.val_loss for p in run.steps] == [v for _, _, v, _ in nanopoor_like()]


# --- many logs in one call -------------------------------------------------------------------------
def many_logs(tmp_path: Path) -> Path:
    """a folder of logs as a records/ tree holds them: two formats, a multi-seed file, a README."""
    from test_logs_field import mlperf_log, modded_2025

    root = tmp_path / "records"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "one.txt").write_text(modded_2025())
    (root / "a" / "seeds.txt").write_text(modded_2025(seeds=3))
    (root / "b" / "one.txt").write_text(modded_2025(final_val=3.30))
    (root / "b" / "bert.log").write_text(mlperf_log("bert", [(100_000, 0.38, {"epoch_num": 1}), (200_000, 0.73, {"epoch_num": 2})]))
    (root / "b" / "README.txt").write_text("how to run this record\n")
    (root / "b" / "train_gpt.py").write_text("import torch\n")
    return root


def test_review_many_logs_is_one_json_array_one_object_per_log(app, tmp_path):
    root = many_logs(tmp_path)
    res = CliRunner().invoke(app, ["review", str(root), "--format", "json", "--jobs", "1"])
    rows = json.loads(res.stdout)   # one document, which json.loads (and json.tool) reads
    assert isinstance(rows, list)
    by_name = {str(Path(r["log"]["path"]).relative_to(root)): r for r in rows}
    assert sorted(by_name) == ["a/one.txt", "a/seeds.txt", "b/README.txt", "b/bert.log", "b/one.txt"]
    assert by_name["b/README.txt"]["skipped"] is True and "cannot tell the log format" in by_name["b/README.txt"]["error"]
    assert by_name["a/seeds.txt"]["log"]["across_runs"]["val_loss"]["count"] == 3
    assert by_name["b/bert.log"]["log"]["runs"][0]["target"] == 0.72
    assert by_name["b/one.txt"]["log"]["runs"][0]["reached_target"] is False
    assert all(r.get("plot") is None for r in rows)
    assert not list(tmp_path.rglob("*.png"))


def test_review_many_logs_in_processes_gives_the_same_rows(app, tmp_path):
    from test_logs_field import modded_2025

    root = many_logs(tmp_path)
    for k in range(12):      # enough logs that two processes share them
        (root / "a" / f"extra{k}.txt").write_text(modded_2025(final_val=3.27 + k / 1000))
    one = CliRunner().invoke(app, ["review", str(root), "--format", "json", "--jobs", "1"])
    two = CliRunner().invoke(app, ["review", str(root), "--format", "json", "--jobs", "2"])
    assert one.exit_code == two.exit_code == 1   # some logs have error findings
    assert one.output == two.output


def test_review_many_logs_table_and_plot_dir(app, tmp_path):
    root = many_logs(tmp_path)
    plots = tmp_path / "plots"
    res = CliRunner().invoke(app, ["review", str(root / "a"), str(root / "b"), "--plot-dir", str(plots), "--jobs", "1"],
                             env={"COLUMNS": "250"})
    assert res.exit_code == 1, res.output
    assert "4 logs read, 1 file skipped (not a log); 2 with errors: exit code 1" in res.output
    assert "3.2805 ± 0.0010 (n=3)" in res.output            # the seeds file: mean ± sd over its runs
    # two logs named one.txt: the second png carries its folder's name
    assert sorted(p.name for p in plots.iterdir()) == ["review-b-one.png", "review-bert.png", "review-one.png",
                                                       "review-seeds.png"]
    assert not list(root.rglob("*.png"))


def test_review_many_logs_refuses_one_plot_and_missing_paths(app, tmp_path):
    root = many_logs(tmp_path)
    res = CliRunner().invoke(app, ["review", str(root), "--plot", str(tmp_path / "x.png")])
    assert isinstance(res.exception, UserError) and "--plot-dir" in str(res.exception)
    res = CliRunner().invoke(app, ["review", str(root), str(tmp_path / "nope.txt")])
    assert isinstance(res.exception, UserError) and "nope.txt" in str(res.exception)
    res = CliRunner().invoke(app, ["review", str(root), "--track", "fineweb"])
    assert isinstance(res.exception, UserError) and "did you mean 'fineweb-edu'" in str(res.exception)
