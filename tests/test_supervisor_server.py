"""the supervisor's side of a run, driven by a client of the test's own (no record, no sandbox):
the config a rank gets, the batches it is sent and counted, the clock, the handover's binding,
and the verdicts a run can reach (supervisor/server.py, supervisor/judge.py)."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from harness import wire
from supervisor.events import EventLog, RunLog
from supervisor.feed import DataFeed
from supervisor.judge import judge
from supervisor.server import RunServer, handover_digest
from supervisor.tracks import get_track

SEQ, BATCH = 32, 4


@pytest.fixture
def served(tiny_data, tmp_path):
    """a server over the tiny dataset with a budget of 3 batches; yields (server, connect, run_dir)."""
    track = get_track("demo").to_dict()
    config = {"run_id": "r", "seed": 7, "seq_len": SEQ, "batch_size": BATCH, "grad_accum": 1, "steps": 3,
              "budget_tokens": 3 * SEQ * BATCH, "args": {}, "nproc": 1, "track": track}
    feed = DataFeed(tiny_data, track, SEQ, BATCH, config["budget_tokens"], 7, 1, SEQ)
    (tmp_path / "handover").mkdir()
    events = EventLog(tmp_path / "events.jsonl")
    runlog = RunLog(tmp_path / "log.txt", echo=False)
    server = RunServer(config, feed, events, runlog, {"handover": "/handover", "record": "/record"},
                       handover_dir=tmp_path / "handover")
    path = str(tmp_path / "s.sock")
    server.listen(path)
    socks = []

    def connect(rank=0, world=1, contract=3):
        s = wire.connect(path)
        socks.append(s)
        wire.send(s, {"op": "hello", "rank": rank, "world_size": world, "contract": contract, "pid": 1, "torch": {}})
        return s, wire.recv(s)[0]

    yield server, connect, tmp_path
    for s in socks:
        s.close()
    server.close()


def ask(s, **msg):
    wire.send(s, msg)
    return wire.recv(s)


def settle(server, until, limit_s=5.0):
    t0 = time.monotonic()
    while not until() and time.monotonic() - t0 < limit_s:
        time.sleep(0.01)


def test_a_rank_gets_the_frozen_config_and_the_clock_starts_at_its_first_batch(served):
    server, connect, _ = served
    s, reply = connect()
    c = reply["config"]
    assert reply["op"] == "config" and (c["eval_seq_len"], c["eval_batch_size"], c["vocab_size"]) == (SEQ, BATCH, 100277)
    assert server.t0_ns is None                              # setup: no clock yet
    msg, payload = ask(s, op="batch", ahead=False)
    assert msg["ok"] and len(payload) == BATCH * (SEQ + 1) * 4 and server.t0_ns is not None
    assert np.frombuffer(payload, dtype=np.int32).max() < 100277


def test_nothing_past_the_budget_is_sent_and_a_batch_sent_ahead_is_not_yet_taken(served):
    server, connect, _ = served
    s, _ = connect()
    for ahead in (False, True, True):
        assert ask(s, op="batch", ahead=ahead)[0]["ok"]
    assert server.feed.tokens_served == 3 * SEQ * BATCH and server.tokens_taken() == 2 * SEQ * BATCH
    msg, _ = ask(s, op="batch", ahead=True)
    assert not msg["ok"] and msg["error"].startswith("budget: ")
    assert server.feed.tokens_served == 3 * SEQ * BATCH and server.tokens_taken() == 3 * SEQ * BATCH


def test_the_handover_stops_the_clock_binds_the_weights_and_ends_training(served):
    server, connect, tmp = served
    s, _ = connect()
    ask(s, op="batch", ahead=False)
    (tmp / "handover" / "weights.json").write_text(json.dumps({"tensors": [], "bytes": 4}))
    (tmp / "handover" / "weights.bin").write_bytes(b"abcd")
    wire.send(s, {"op": "handover", "bytes": 4, "tensors": 0, "modules": 1, "write_ms": 1.0})
    settle(server, lambda: server.handover is not None)
    assert server.end_ns is not None and server.handover["sha256"] == handover_digest(tmp / "handover")
    frozen = server.train_time_ms()
    time.sleep(0.05)
    assert server.train_time_ms() == frozen                  # stopped for good
    msg, _ = ask(s, op="batch", ahead=False)
    assert not msg["ok"] and msg["error"].startswith("eval_order: ")
    (tmp / "handover" / "weights.bin").write_bytes(b"abce")  # written after the clock stopped
    status, reason = judge(server, 0, None, handover_digest(tmp / "handover"))
    assert status == "invalid" and "changed after" in reason


def test_a_second_connection_for_a_rank_is_refused_and_recorded(served):
    server, connect, tmp = served
    connect()
    _, reply = connect()
    assert reply["op"] == "refused" and "second connection claimed rank 0" in reply["error"]
    _, reply = connect(rank=0, contract=2)
    assert reply["op"] == "refused" and "contract 2" in reply["error"]
    assert [v["kind"] for v in server.violations] == ["protocol", "protocol"]
    assert "violation: protocol: a second connection" in (tmp / "log.txt").read_text()


def test_what_a_rank_reports_is_logged_as_its_report(served):
    server, connect, tmp = served
    s, _ = connect()
    ask(s, op="batch", ahead=False)
    wire.send(s, {"op": "step", "step": 1, "train_loss": 4.5})
    wire.send(s, {"op": "progress_eval", "step": 1, "val_loss": 4.25, "tokens": 64, "forward_ms": 1.0})
    wire.send(s, {"op": "violation", "kind": "t4_limits", "detail": "tf32"})
    settle(server, lambda: server.violations)
    evs = [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()]
    step = next(e for e in evs if e["type"] == "step")
    assert step["tokens"] == SEQ * BATCH and step["train_loss"] == 4.5 and step["train_time_ms"] > 0
    prog = next(e for e in evs if e["type"] == "eval")
    assert prog["reported_by"] == "record" and prog["untimed"] is False and prog["split"] == "progress"
    assert server.violations[0]["reported_by"] == "record"


def test_a_run_without_a_handover_fails_and_a_violation_outranks_a_clean_end(served):
    server, connect, _ = served
    s, _ = connect()
    wire.send(s, {"op": "ended", "status": "completed", "reason": "", "traceback": None})
    settle(server, lambda: server.ranks[0].ended is not None)
    assert judge(server, 0, None, None) == ("failed", "the record returned without calling h.finish()")
    server.add_violation("budget", "asked for batch 4")
    assert judge(server, 0, None, None)[0] == "invalid"


def test_a_record_whose_process_never_says_hello_failed():
    class Nothing:
        ranks, violations, config = {}, [], {}

    status, reason = judge(Nothing(), 1, None, None)
    assert status == "failed" and "before it reached the harness" in reason


def test_the_socket_is_closed_to_garbage(served):
    server, _, tmp = served
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(tmp / "s.sock"))
    s.sendall(wire.HEADER.pack(2**30, 0))
    s.settimeout(5)
    assert s.recv(1) == b""                                  # the server hangs up on a frame that is no message


def test_setup_past_its_cap_is_on_the_clock_from_the_first_batch(served, monkeypatch):
    """the time from the record's hello to its first batch past SETUP_CAP_S is charged: on
    train_start, in every train time the clock states, in run_end; and the timeline agrees."""
    from nanopoor.timeline import timeline_findings
    from supervisor import server as server_module
    from supervisor.judge import end_fields

    monkeypatch.setattr(server_module, "SETUP_CAP_S", 0.05)
    server, connect, tmp = served
    s, _ = connect()
    time.sleep(0.2)                                           # setup: 0.2 s against a cap of 0.05 s
    for _ in range(3):
        ask(s, op="batch", ahead=False)
        wire.send(s, {"op": "step", "step": server.last_step + 1, "train_loss": 5.0})
    (tmp / "handover" / "weights.json").write_text(json.dumps({"tensors": [], "bytes": 4}))
    (tmp / "handover" / "weights.bin").write_bytes(b"abcd")
    wire.send(s, {"op": "handover", "bytes": 4, "tensors": 0, "modules": 1, "write_ms": 1.0})
    settle(server, lambda: server.handover is not None)
    charged = server.setup_charged_ms()
    assert 140 < charged < 1000 and server.train_time_ms() == pytest.approx(server.span_ms() + charged)
    fields = end_fields(server, None, None, True, [])
    assert fields["setup_charged_ms"] == charged and fields["train_time_ms"] == server.train_time_ms()
    server.events.emit("run_end", status="completed", **{k: fields[k] for k in ("train_time_ms", "eval_charged_ms")})
    events = [json.loads(line) for line in (tmp / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "train_start")
    assert start["setup_charged_ms"] == charged
    clocked = [e for e in events if e["type"] in ("step", "handover")]
    assert len(clocked) == 4 and all(e["train_time_ms"] >= charged for e in clocked)
    config = {"batch_size": BATCH, "seq_len": SEQ, "grad_accum": 1}
    assert timeline_findings(config, events, {"status": "completed", "contract_version": 3}) == []
