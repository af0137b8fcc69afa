"""what `make test` says while it runs: what it is about to run, and the slow red-team block
named as it starts (its module runs every cheating record at once and reports nothing until they
all end). pytest's own per-file lines give the rest. plain lines, flushed at once, so a CI log
without a terminal shows them as they happen; nothing here is timed or waited on."""
from __future__ import annotations

from pathlib import Path

import pytest

REDTEAM = Path(__file__).parent / "redteam"
_STARTED = pytest.StashKey[set]()


def say(config: pytest.Config, text: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.ensure_newline()
        tr.write(text + "\n", flush=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    items = session.items
    if not items:
        return
    red = sum(1 for item in items if REDTEAM in item.path.parents)
    files = len({item.path for item in items})
    text = f"running {len(items)} test{'s' if len(items) != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    if red:
        text += f"; {red} of them are the red-team block (tests/redteam/), which runs cheating records for real: minutes"
    say(session.config, text)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem) -> None:
    """the first test of a red-team module: say what the silence that follows is."""
    started = item.config.stash.setdefault(_STARTED, set())
    if item.path in started:
        return
    started.add(item.path)
    if REDTEAM in item.path.parents:
        n = sum(1 for i in item.session.items if i.path == item.path)
        say(item.config, f"{item.path.relative_to(item.config.rootpath)}: the red-team block starts ({n} tests); every "
                         f"cheating record runs at once, so its results come when they all end (minutes on 2 cores)")
