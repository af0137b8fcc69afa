"""the tool's layout: one module per name, the leaderboard as a package, one loss-plot module."""
from pathlib import Path

from supervisor.events import EVAL, STEP

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_modules_share_a_name():
    """one name, one job. the one exception is a verb: nanopoor/cli/<verb>.py parses the options
    and prints, and may share its name with the module that does the verb's work, which it imports."""
    paths = [p for top in ("nanopoor", "harness") for p in (ROOT / top).rglob("*.py") if p.name != "__init__.py"]
    clashes = {}
    for p in paths:
        clashes.setdefault(p.name, []).append(p)
    for name, ps in clashes.items():
        verbs = [p for p in ps if p.parent == ROOT / "nanopoor" / "cli"]
        others = [p for p in ps if p not in verbs]
        assert len(others) <= 1, f"{name}: {[str(p.relative_to(ROOT)) for p in others]}"
        if verbs and others:
            owner = ".".join(others[0].relative_to(ROOT).with_suffix("").parts)
            assert f"from {owner} import" in verbs[0].read_text() or f"import {owner}" in verbs[0].read_text(), \
                f"nanopoor/cli/{name} shares its name with {owner} but does not use it"


def test_the_leaderboard_package_keeps_its_public_names():
    import nanopoor.leaderboard as lb
    from nanopoor.leaderboard import board, claims, render

    assert lb.build is board.build and lb.generate is board.generate and lb.rows_of is render.rows_of
    assert callable(claims.claim_rows) and lb.COLUMNS[0] == "kind"


def test_a_runs_loss_curve_is_the_same_bytes_twice(tmp_path):
    from nanopoor.loss_plot import loss_curve

    events = [{"type": STEP, "tokens": 1000 * i, "train_loss": 5.0 - 0.1 * i} for i in range(1, 9)]
    events += [{"type": EVAL, "tokens": 4000, "val_loss": 4.8, "full": False},
               {"type": EVAL, "tokens": 8000, "val_loss": 4.4, "full": True}]
    a = loss_curve(events, tmp_path / "a" / "loss.png", "run", target=4.5)
    b = loss_curve(events, tmp_path / "b.png", "run", target=4.5)
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and a.read_bytes() == b.read_bytes()


def _imports(path: Path) -> set[str]:
    """the top-level packages a python file imports (absolute imports, at any depth of the file)."""
    import ast

    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module.split(".")[0])
    return out


def test_the_wall_shows_in_the_tree():
    """inside the record's process: harness/, which imports neither side outside it. outside:
    supervisor/, which imports the client's wire format only and never the tool. nanopoor/ is the
    tool and may import the supervisor."""
    for p in (ROOT / "harness").rglob("*.py"):
        assert not _imports(p) & {"supervisor", "nanopoor"}, p
    for p in (ROOT / "supervisor").rglob("*.py"):
        imported = _imports(p)
        assert "nanopoor" not in imported, p
        if "harness" in imported:   # the one format both sides speak
            assert "from harness import wire" in p.read_text() or "import harness.wire" in p.read_text(), p


def test_records_import_only_the_client_the_standard_library_and_packages():
    for p in (ROOT / "records").rglob("*.py"):
        assert not _imports(p) & {"supervisor", "nanopoor"}, p
