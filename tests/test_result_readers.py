"""the readers of result.json read it through the schema (nanopoor.result.RunResult), and nanopoor
names event types only through supervisor.events' constants."""
import ast
from pathlib import Path

import pytest

from supervisor.events import EVENT_TYPES
from nanopoor import reproduce, stats, summary
from nanopoor.result import RunResult, migrate, select

NANOPOOR = Path(__file__).resolve().parents[1] / "nanopoor"
SCHEMA = set(RunResult.__annotations__)


def modules():
    return sorted(NANOPOOR.rglob("*.py"))


def test_select_refuses_a_key_the_schema_does_not_have():
    assert select({"run_id": "r"}, ("run_id", "val_loss")) == {"run_id": "r", "val_loss": None}
    with pytest.raises(KeyError, match="val_los"):
        select({"run_id": "r"}, ("run_id", "val_los"))


@pytest.mark.parametrize("keys", [summary.SUMMARY_KEYS, reproduce.RUN_KEYS, stats.FIGURES],
                         ids=["summary", "reproduce", "stats"])
def test_the_readers_key_lists_are_schema_keys(keys):
    assert set(keys) <= SCHEMA, set(keys) - SCHEMA


def test_a_draft_result_naming_its_track_as_a_table_reads_as_the_name():
    old = {"schema_version": 0, "run_id": "r", "track": {"name": "demo", "target_val_loss": None}}
    assert migrate(old)["track"] == "demo"


def keys_read(fn: ast.FunctionDef, name: str) -> set[str]:
    """the string keys a function reads from its parameter `name` (name.get("k"), name["k"])."""
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == name and node.args \
                and isinstance(node.args[0], ast.Constant):
            out.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name \
                and isinstance(node.slice, ast.Constant):
            out.add(node.slice.value)
    return out


def test_every_key_read_from_a_run_result_parameter_is_in_the_schema():
    checked, wrong = 0, []
    for path in modules():
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for arg in fn.args.args + fn.args.kwonlyargs:
                if arg.annotation is not None and ast.unparse(arg.annotation) == "RunResult":
                    checked += 1
                    wrong += [f"{path.name}:{fn.name} reads {k!r}" for k in keys_read(fn, arg.arg) - SCHEMA]
    assert checked >= 10   # verify, stats, the leaderboard and its claims annotate their results
    assert not wrong, wrong


def spelled_event_names(tree: ast.AST) -> list[int]:
    """lines that compare an event's "type" with a literal type name, or pass one to first()."""
    def is_type_read(node):
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "type") or \
               (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "type")

    def is_name(node):
        return isinstance(node, ast.Constant) and node.value in EVENT_TYPES

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(is_type_read(s) for s in sides) and any(is_name(s) for s in sides):
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "first" \
                and any(is_name(a) for a in node.args):
            lines.append(node.lineno)
    return lines


def test_nanopoor_names_event_types_only_through_the_constants():
    found = {path.relative_to(NANOPOOR).as_posix(): lines for path in modules()
             if (lines := spelled_event_names(ast.parse(path.read_text())))}
    assert not found, found


def test_the_event_check_catches_a_spelled_name():
    assert spelled_event_names(ast.parse('if ev.get("type") != "eval": pass\nfirst(events, "run_end")')) == [1, 2]
