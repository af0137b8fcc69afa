"""scripts/gpu_race.sh and its helpers: the docs race's target, sweep pick and speed record."""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import race  # noqa: E402
import set_target  # noqa: E402
from fixtures_runs import make_record, make_run  # noqa: E402
from supervisor.tracks import TRACKS_FILE, load_tracks  # noqa: E402
from nanopoor.records import load_record  # noqa: E402


def test_the_target_is_the_mean_rounded_up_to_two_decimals():
    assert set_target.rounded_up(5.1234) == 5.13
    assert set_target.rounded_up(5.12) == 5.12          # no float drift past an exact value
    assert set_target.rounded_up(5.1201) == 5.13


def calibrating_tracks(path: Path) -> Path:
    """tracks.toml as it was before the docs target was set: version 2 calibrating."""
    text = re.sub(r"(?m)^# set by scripts/set_target.py.*?\ntarget_source = .*?\n",
                  "# target_val_loss: pending calibration\n", TRACKS_FILE.read_text(), flags=re.S)
    path.write_text(text)
    return path


def test_set_target_writes_the_calibrating_version_and_names_its_runs(tmp_path):
    tracks = calibrating_tracks(tmp_path / "tracks.toml")
    rec = make_record(tmp_path / "records", "baseline_adamw_epoch", track="docs")
    ids = []
    for seed, loss in ((1, 5.401), (2, 5.412), (3, 5.396)):
        d = make_run(tmp_path / "runs", rec, seed=seed, val_loss=loss, track="docs", gpu=None,
                     overrides={"track_version": 2, "target_val_loss": None})
        ids.append(d.name)
    args = ["--runs", str(tmp_path / "runs"), "--tracks-file", str(tracks)]
    assert set_target.main(args) == 0
    docs = load_tracks(tracks)["docs"]
    assert docs.version == 2 and docs.target_val_loss == 5.41 and docs.target_for(1) == (True, 3.28)
    assert all(i in docs.target_source and f"runs/{i}" in tracks.read_text() for i in ids)
    assert set_target.main(args) == 1                    # a calibrated version is never re-set


def test_set_target_refuses_a_failed_calibration_run(tmp_path, capsys):
    tracks = calibrating_tracks(tmp_path / "tracks.toml")
    before = tracks.read_text()
    rec = make_record(tmp_path / "records", "baseline_adamw_epoch", track="docs")
    for seed, status in ((1, "completed"), (2, "completed"), (3, "failed")):
        make_run(tmp_path / "runs", rec, seed=seed, val_loss=5.4, status=status, track="docs", gpu=None,
                 overrides={"track_version": 2, "target_val_loss": None})
    assert set_target.main(["--runs", str(tmp_path / "runs"), "--tracks-file", str(tracks)]) == 1
    assert "not completed" in capsys.readouterr().err and tracks.read_text() == before


def test_candidates_are_v2_on_docs_at_each_step_count(tmp_path, monkeypatch):
    monkeypatch.setattr(race, "freeze", lambda d: None)
    race.candidates(tmp_path, [40, 60], "full")
    for n in (40, 60):
        d = tmp_path / f"dense_muon_t4_v2_s{n}"
        rec = load_record(d)
        full = rec.scale("full")
        assert rec.name == d.name and rec.track == "docs" and full["steps"] == n
        assert full["args"]["eval_every"] == n and rec.scale("smoke")["track"] == "demo"
        for f in ("train.py", "model.py", "optim.py"):
            assert (d / f).read_bytes() == (race.PARENT / f).read_bytes()


def test_pick_takes_the_fewest_steps_below_target_minus_margin(tmp_path):
    rec = make_record(tmp_path / "records", "dense_muon_t4_v2_s40", track="docs")
    runs = tmp_path / "runs"
    for n, loss in ((30, 5.50), (40, 5.46), (50, 5.44), (60, 5.30)):
        make_run(runs, rec, seed=n, val_loss=loss, track="docs", run_id=f"r{n}",
                 overrides={"record": f"dense_muon_t4_v2_s{n}"})
    summary = tmp_path / "sweep.json"
    race.pick(runs, 5.48, 0.03, summary)
    s = json.loads(summary.read_text())
    assert s["chosen_steps"] == 50 and [c["steps"] for c in s["candidates"]] == [30, 40, 50, 60]
    race.pick(runs, 5.30, 0.03, summary)
    assert json.loads(summary.read_text())["chosen_steps"] is None


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NANOPOOR_RACE_DRY_RUN") != "1",
                    reason="several minutes of cpu runs; NANOPOOR_RACE_DRY_RUN=1 runs it")
def test_the_whole_race_dry_runs_on_the_cpu(tmp_path):
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    res = subprocess.run(["bash", "scripts/gpu_race.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "chosen:" in res.stdout and "speed-up:" in res.stdout
    with tarfile.open(tmp_path / "race.tgz") as tar:
        names = tar.getnames()
        tracks = tar.extractfile("supervisor/tracks.toml").read().decode()
    assert "records/dense_muon_t4_v3/record.toml" in names and "race-scratch/sweep.json" in names
    assert sum("baseline_adamw_epoch" in n and n.endswith("result.json") for n in names) == 3
    assert sum("dense_muon_t4_v3" in n and n.endswith("result.json") for n in names) == 3
    assert "target_val_loss = " in tracks.split("[docs]")[1].split("[[docs.previous]]")[0]
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before   # the dry run works in a scratch copy
