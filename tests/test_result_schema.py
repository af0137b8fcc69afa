"""one schema for result.json (nanopoor.result.RunResult) and one name per event type (supervisor.events):
the runner writes exactly the schema's keys, the contract lists them, and the log parser knows every type."""
import re
from datetime import UTC, datetime
from pathlib import Path

from supervisor import events as ev
from supervisor.tracks import get_track
from nanopoor import runner
from nanopoor.logs.nanopoor_events import _SIGNATURE_RE
from nanopoor.records import load_record
from nanopoor.result import RESULT_KEYS, RunResult

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "contract.md"
WRITTEN_LATER = {"files", "schema_version", "result_sha256"}   # run_record and write_result add these


def test_the_runner_writes_exactly_the_schemas_keys(tiny_record, tmp_path, monkeypatch):
    rec, trk = load_record(tiny_record), get_track("demo")
    sc = rec.scale("smoke")
    config = {"run_id": "r", "record_sha256": rec.frozen_sha256, "seed": 1, "scale": "smoke", "nproc": 1,
              "budget_tokens": sc["budget_tokens"], "formula": sc["formula"], "steps": sc["steps"],
              "track": trk.to_dict(), "run_dir": str(tmp_path)}
    events = [{"type": ev.RUN_START, "torch": {"device": "cpu"}}, {"type": ev.RUN_END, "status": "failed", "reason": "x"}]
    outcome = {"timed_out": False, "interrupted": False, "returncode": 1, "wallclock_ms": 5.0}
    result = runner._result(rec, trk, config, events, outcome, datetime.now(UTC), "h", {"fingerprint": "f"})
    assert set(result) | WRITTEN_LATER == set(RESULT_KEYS) == set(RunResult.__annotations__) - {"migrated_from"}


def test_the_contract_lists_the_schemas_keys():
    text = CONTRACT.read_text()
    block = text[text.index("Written once by the runner"):text.index("- `hardware`:")]
    block = re.sub(r"\([^)]*\)", "", block)            # the notes in parentheses name no keys
    listed = set(re.findall(r"\b[a-z][a-z0-9_]*\b", " ".join(re.findall(r"`([^`]*)`", block))))
    assert listed - {"nanopoor", "result"} == set(RunResult.__annotations__) - {"RunResult"}


def test_every_event_type_is_named_once_and_recognised_by_the_log_parser():
    assert len(set(ev.EVENT_TYPES)) == len(ev.EVENT_TYPES)
    for t in ev.EVENT_TYPES:
        assert _SIGNATURE_RE.search(f'{{"type": "{t}", "time": 1.0}}'), t
    assert not _SIGNATURE_RE.search('{"type": "made_up", "time": 1.0}')
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", CONTRACT.read_text(), re.M))
    assert set(ev.EVENT_TYPES) <= documented, set(ev.EVENT_TYPES) - documented
