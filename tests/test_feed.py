"""the supervisor's data feed: the train stream's batches, each rank's slice, the budget, the
progress slice and the claim's tokens, all served from outside the record's sandbox; and the wire
both sides speak."""
import json
import socket
import threading

import numpy as np
import pytest

from harness import wire
from supervisor.feed import DataFeed, FeedError
from supervisor.shards import open_shard
from supervisor.stream import TrainStream, heldout_tokens_for
from supervisor.tracks import get_track

SEQ, BATCH = 32, 4


def feed(tiny_data, budget_batches=3, world=1, eval_seq_len=SEQ):
    return DataFeed(tiny_data, get_track("demo").to_dict(), SEQ, BATCH, budget_batches * SEQ * BATCH, seed=7,
                    world_size=world, eval_seq_len=eval_seq_len)


def reference(tiny_data, budget, rank=0, world=1):
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    shards = [open_shard(tiny_data / s["file"], int(manifest["vocab_size"])) for s in manifest["train"]]
    held = heldout_tokens_for(sum(len(s) for s in shards), get_track("demo").val_tokens)
    return TrainStream(shards, SEQ, BATCH, budget, seed=7, rank=rank, world_size=world, heldout_tokens=held)


def batch(f, rank, k):
    ok, data = f.batch(rank, k)
    assert ok, data
    return np.frombuffer(data, dtype=np.int32).reshape(-1, SEQ + 1)


def test_the_same_batches_as_the_seeded_stream_counted_once(tiny_data):
    f, ref = feed(tiny_data), reference(tiny_data, 3 * SEQ * BATCH)
    for k in range(3):
        assert np.array_equal(batch(f, 0, k), ref.next_numpy())
    assert f.tokens_served == ref.tokens_served == 3 * SEQ * BATCH


def test_each_rank_gets_its_slice_of_one_global_batch_and_tokens_count_once(tiny_data):
    f = feed(tiny_data, budget_batches=2, world=2)
    refs = [reference(tiny_data, 2 * SEQ * BATCH, rank=r, world=2) for r in (0, 1)]
    for k in range(2):
        for r in (1, 0):   # a rank may come first: the global batch is cut once, in order
            got = batch(f, r, k)
            assert got.shape == (BATCH // 2, SEQ + 1) and np.array_equal(got, refs[r].next_numpy())
    assert f.tokens_served == 2 * SEQ * BATCH


def test_nothing_past_the_budget_is_sent_or_counted(tiny_data):
    f = feed(tiny_data, budget_batches=1)
    batch(f, 0, 0)
    for _ in range(2):
        ok, why = f.batch(0, 1)
        assert not ok and why.startswith("budget: ") and f.tokens_served == SEQ * BATCH


def test_a_global_batch_asked_for_out_of_order_is_refused(tiny_data):
    ok, why = feed(tiny_data).batch(0, 2)
    assert not ok and why.startswith("protocol: ")


def test_the_progress_slice_is_a_tenth_of_the_budget_at_most_and_never_the_check(tiny_data):
    f = feed(tiny_data, budget_batches=40)
    shown = f.progress_tokens()
    assert len(shown) == max(40 * SEQ * BATCH // 10, SEQ + 1) and shown.dtype == np.int32
    assert np.array_equal(shown, f.progress_tokens())   # the same tokens every time
    check = f.eval_tokens("check")
    assert len(check) >= 8 * SEQ and not np.array_equal(check[:len(shown)], shown)
    assert len(f.eval_tokens("val")) == get_track("demo").val_tokens


def test_a_held_out_check_too_short_for_its_windows_stops_the_run(tiny_data):
    with pytest.raises(FeedError, match="held-out check cannot run"):
        feed(tiny_data, eval_seq_len=4096)


def test_a_frame_carries_json_and_a_payload_straight_into_a_buffer():
    a, b = socket.socketpair()
    arr = np.arange(12, dtype=np.int32).reshape(3, 4)
    t = threading.Thread(target=lambda: (wire.send(a, {"op": "batch", "ok": True}, arr), wire.send(a, {"op": "x"}, b"ab")))
    t.start()
    out = np.zeros((3, 4), dtype=np.int32)
    msg, payload = wire.recv(b, out=out)
    assert msg == {"op": "batch", "ok": True} and payload is None and np.array_equal(out, arr)
    msg, payload = wire.recv(b, out=out)     # a payload of another size is returned, not written into out
    assert msg == {"op": "x"} and payload == b"ab"
    t.join()
    a.close()
    with pytest.raises(wire.WireError, match="closed"):
        wire.recv(b)


def test_a_frame_that_is_not_json_is_refused():
    a, b = socket.socketpair()
    a.sendall(wire.HEADER.pack(3, 0) + b"{x]")
    with pytest.raises(wire.WireError, match="not json"):
        wire.recv(b)
