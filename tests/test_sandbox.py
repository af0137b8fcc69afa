"""the sandbox's command line (supervisor/sandbox.py): what a record's process is given, and the
one line a run gets where bubblewrap cannot start. a real sandbox's contents are tested by the
red team (tests/redteam, rt_reach)."""
from __future__ import annotations

import shutil
import sys

import pytest
from typer.testing import CliRunner

from nanopoor.cli import app
from supervisor import sandbox


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_the_sandbox_drops_everything_and_binds_no_project_tree(monkeypatch):
    # the project's root on PYTHONPATH (as on a gpu machine: PYTHONPATH=/tmp/site:$PWD) is never bound
    monkeypatch.setenv("PYTHONPATH", str(sandbox.PROJECT_ROOT))
    monkeypatch.setattr(sys, "path", [str(sandbox.PROJECT_ROOT), *sys.path])
    argv = sandbox.bwrap_command(sandbox.Mounts(env={"PYTHONPATH": "/opt/nanopoor"}), ["python", "-c", "0"])
    assert {"--unshare-all", "--unshare-user", "--die-with-parent", "--clearenv"} <= set(argv)
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    bound = [src for src, _ in pairs(argv, "--ro-bind") + pairs(argv, "--bind")]
    assert sandbox.PROJECT_ROOT not in bound
    assert all(not b.startswith(sandbox.PROJECT_ROOT + "/") or b.startswith(sys.prefix) for b in bound), bound
    assert ("/usr", "/usr") in pairs(argv, "--ro-bind") and argv[argv.index("/usr/share") - 1] == "--tmpfs"
    env = dict(pairs(argv, "--setenv"))
    assert env["PYTHONPATH"] == "/opt/nanopoor" and env["HOME"] == "/tmp"
    assert argv[-4:] == ["--", "python", "-c", "0"]


def test_installed_packages_a_record_must_not_read_are_covered(monkeypatch, tmp_path):
    site = tmp_path / "site"
    for name in ("nanopoor", "tiktoken_ext"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    hidden = sandbox.hidden_packages()
    assert str(site / "nanopoor") in hidden and str(site / "tiktoken_ext") in hidden
    argv = sandbox.bwrap_command(sandbox.Mounts(), ["true"])
    assert str(site / "nanopoor") in [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]


def test_where_bubblewrap_is_missing_a_run_says_so_in_one_line(monkeypatch, tmp_path, tiny_data):
    sandbox.probe.cache_clear()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    try:
        why = sandbox.probe()
        assert why.startswith("bubblewrap (bwrap) is not installed") and "--no-isolation" in why
        res = CliRunner().invoke(app, ["run", "records/demo_gpt", "--data", str(tiny_data),
                                        "--runs", str(tmp_path / "runs")])
        assert res.exit_code == 1
        assert res.output.strip().splitlines()[-1].startswith("error: isolation: bubblewrap (bwrap) is not installed")
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())   # nothing started
    finally:
        sandbox.probe.cache_clear()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed here (make setup installs it as root)")
def test_a_sandbox_starts_here():
    sandbox.probe.cache_clear()
    assert sandbox.probe() is None
