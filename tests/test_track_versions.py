"""track versions: a run is judged against the target it stored, never tracks.toml's current one."""
from __future__ import annotations

import json
from pathlib import Path

from fixtures_runs import make_record, make_run, make_submission
from supervisor.tracks import TRACKS_FILE, load_tracks
from nanopoor import leaderboard, stats
from nanopoor.result import load_result, migrate
from nanopoor.verify import RecordDigests, check_run

DOCS_V3 = """
[docs]
version = 3
description = "docs"
dataset = "docs"
tokenizer = "cl100k_base"
vocab_size = 100277
target_val_loss = 3.00
val_tokens = 524288
official_gpu = ""
official_gpu_count = 0
official_capability = ""
plausible_min_tokens = 0

[[docs.previous]]
version = 1
target_val_loss = 3.28

[[docs.previous]]
version = 2
target_val_loss = 3.25
"""


def test_docs_is_version_2_and_keeps_version_1s_target():
    docs = load_tracks()["docs"]
    assert docs.version == 2 and docs.target_for(1) == (True, 3.28)
    assert docs.target_for(7) == (False, None)
    assert load_tracks()["fineweb-edu"].target_for(1) == (True, 3.28)


def test_an_old_result_migrates_to_version_1_and_its_target():
    old = {"schema_version": 1, "run_id": "x", "track": "docs", "target_val_loss": 3.28}
    assert migrate(old) | {} == {**old, "schema_version": 3, "track_version": 1, "migrated_from": 1, "isolated": False,
                                 "setup_ms": None, "claim": None}
    bare = {"schema_version": 1, "run_id": "y", "track": "docs"}     # no stored target at all
    assert migrate(bare)["target_val_loss"] == 3.28 and migrate(bare)["track_version"] == 1
    new = {"schema_version": 3, "run_id": "z", "track": "docs", "track_version": 2, "target_val_loss": None,
           "isolated": True, "setup_ms": 1.0, "claim": None}
    assert migrate(new) is new                                           # a calibration run stays one
    before = {"schema_version": 2, "run_id": "w", "track": "docs", "track_version": 2, "target_val_loss": None}
    assert migrate(before)["isolated"] is False and migrate(before)["target_val_loss"] is None   # ran in the harness's process


def test_the_committed_docs_runs_read_as_version_1():
    for p in (Path(__file__).resolve().parents[1] / "runs").glob("*/result.json"):
        r = load_result(p)
        if r["harness_version"] in ("0.1.0", "0.2.0"):   # made before the docs target was calibrated
            assert r["track_version"] == 1 and r["target_val_loss"] == 3.28, p


def _board(tmp_path, tracks):
    return leaderboard.build(tmp_path / "runs", tmp_path / "records", tmp_path / "leaderboard.md", tracks)


def test_a_new_target_does_not_rejudge_old_runs(tmp_path):
    tracks_file = tmp_path / "tracks.toml"
    tracks_file.write_text(TRACKS_FILE.read_text().split("[docs]")[0] + DOCS_V3
                           + "\n[demo]" + TRACKS_FILE.read_text().split("[demo]")[1])
    tracks = load_tracks(tracks_file)
    rec = make_record(tmp_path / "records", "r", track="docs")
    # version 2 runs at 3.20: below their stored 3.25, above version 3's 3.00
    make_submission(tmp_path / "runs", rec, [3.20, 3.21, 3.19], [60e3, 61e3, 59e3], track="docs", gpu=None,
                    fingerprint="fp-docs", overrides={"track_version": 2, "target_val_loss": 3.25})
    [row] = [r for r in _board(tmp_path, tracks).frame.to_dict("records") if r["kind"] == "submission"]
    assert row["target_val_loss"] == 3.25 and row["verdict"] == "verified"
    assert not any("3.0" in reason for reason in str(row["reasons"]).split(";"))


def test_calibration_runs_are_never_verified():
    runs = [{"run_id": f"r{i}", "seed": i, "status": "completed", "causal": True, "val_loss": 4.0 + i / 100,
             "train_time_ms": 1.0, "target_val_loss": None} for i in range(3)]
    assert stats.judged_target(runs) is None
    v = stats.verdict(runs, stats.judged_target(runs))
    assert not v.verified and "no target (calibration runs)" in v.reasons
    mixed = [dict(runs[0], target_val_loss=3.28), dict(runs[1], target_val_loss=3.5)]
    assert stats.judged_target(mixed) is None


def test_verify_flags_a_target_its_version_never_had(tmp_path):
    rec = make_record(tmp_path / "records", "r", track="docs")
    digests = RecordDigests(tmp_path / "records")
    ok = make_run(tmp_path / "runs", rec, seed=1, track="docs", gpu=None, fingerprint="fp-docs",
                  overrides={"track_version": 1, "target_val_loss": 3.28})
    calib = make_run(tmp_path / "runs", rec, seed=2, track="docs", gpu=None, fingerprint="fp-docs",
                     overrides={"track_version": 2, "target_val_loss": None})
    forged = make_run(tmp_path / "runs", rec, seed=3, track="docs", gpu=None, fingerprint="fp-docs",
                      overrides={"track_version": 1, "target_val_loss": 9.0})
    ghost = make_run(tmp_path / "runs", rec, seed=4, track="docs", gpu=None, fingerprint="fp-docs",
                     overrides={"track_version": 9, "target_val_loss": 3.28})
    tracks = load_tracks()
    assert check_run(ok, tracks, digests).ok and check_run(calib, tracks, digests).ok
    assert any("has target 3.28" in p for p in check_run(forged, tracks, digests).problems)
    assert any("no version 9" in p for p in check_run(ghost, tracks, digests).problems)
    assert json.loads((forged / "result.json").read_text())["target_val_loss"] == 9.0
