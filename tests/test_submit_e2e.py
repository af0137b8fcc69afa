"""submit end to end: real cpu runs of the tiny record through the runner and the harness.

kept apart from test_submit.py (which fakes the runner) because a real run takes seconds;
this is the test that proves verify and the leaderboard accept what the real runner writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, copy_record


@pytest.mark.slow
def test_submit_end_to_end_with_the_real_runner(tmp_path, monkeypatch, app, tiny_data):
    """a real cpu run of the tiny record through the harness, then verify and the leaderboard."""
    monkeypatch.chdir(tmp_path)
    copy_record(FIXTURES / "records" / "tiny", Path("records"))
    res = CliRunner().invoke(app, ["submit", "records/tiny", "--scale", "smoke", "--seeds", "1",
                                   "--data", str(tiny_data), "--runs", "runs", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{\n"):])
    assert len(out["runs"]) == 1 and all(c["ok"] for c in out["checks"]), out["checks"]
    [sub] = out["submissions"]
    assert sub["class"] == "dev" and sub["rank"] is None and not sub["verified"] and sub["n_runs"] == 1
    assert f"?? {out['runs'][0]}/" in out["to_commit"] and "?? leaderboard.md" in out["to_commit"]
    assert CliRunner().invoke(app, ["verify", "runs"]).exit_code == 0
    assert CliRunner().invoke(app, ["leaderboard", "--check"]).exit_code == 0
    assert "1 smoke-scale run of tiny" in Path("leaderboard.md").read_text()
