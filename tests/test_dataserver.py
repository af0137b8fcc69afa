"""the data process: what it serves is what the in-process stream would serve, counted when sent
(the batch it prepares ahead is not counted), and a budget refusal arrives only when asked for."""
import numpy as np
import pytest

from harness.dataserver import DataServerError, StreamClient
from supervisor.shards import open_shard
from supervisor.stream import TrainStream, heldout_tokens_for

SEQ, BATCH = 32, 4


@pytest.fixture
def client(tiny_data):
    budget = 3 * SEQ * BATCH  # three batches
    c = StreamClient(tiny_data, SEQ, BATCH, budget, seed=7, rank=0, world_size=1, val_tokens=16384)
    yield c
    c.close()


def reference(tiny_data, budget):
    import json

    manifest = json.loads((tiny_data / "manifest.json").read_text())
    shards = [open_shard(tiny_data / s["file"], int(manifest["vocab_size"])) for s in manifest["train"]]
    held = heldout_tokens_for(sum(len(s) for s in shards), 16384)
    return TrainStream(shards, SEQ, BATCH, budget, seed=7, heldout_tokens=held)


def test_same_batches_as_the_in_process_stream(client, tiny_data):
    ref = reference(tiny_data, 3 * SEQ * BATCH)
    for _ in range(3):
        got = client.next_numpy()
        assert got.dtype == np.int32 and got.shape == (BATCH, SEQ + 1)
        assert np.array_equal(got, ref.next_numpy())
    assert client.tokens_served == ref.tokens_served == 3 * SEQ * BATCH


def test_the_batch_in_flight_is_counted_apart(client):
    assert client.stats()["tokens_served"] == 0  # nothing asked yet, nothing sent
    client.next_numpy()                          # and the next one is already on its way
    stats = client.stats()                       # reads it back first
    assert client.tokens_served == SEQ * BATCH and client.unused_tokens == SEQ * BATCH
    assert stats["tokens_served"] == client.tokens_served + client.unused_tokens


def test_a_batch_taken_from_the_pipe_is_a_data_access_violation(client, monkeypatch):
    import harness.dataserver as ds

    client.next_numpy()
    header = client._read(1 + 8)                 # what a record reading the pipe fd itself would do
    client._read(ds._LEN.unpack(header[1:])[0])
    monkeypatch.setattr(ds, "REPLY_TIMEOUT_S", 0.5)
    with pytest.raises(DataServerError, match="^data_access: no reply"):
        client.next_numpy()


def test_budget_refused_only_when_asked_and_counts_stay(client):
    for _ in range(3):
        client.next_numpy()
    with pytest.raises(DataServerError, match="^budget: "):
        client.next_numpy()
    with pytest.raises(DataServerError, match="^budget: "):  # and again: nothing was counted
        client.next_numpy()
    assert client.stats()["tokens_served"] == 3 * SEQ * BATCH and client.unused_tokens == 0


def test_reads_into_a_given_buffer(client):
    buf = np.zeros((BATCH, SEQ + 1), dtype=np.int32)
    assert client.next_numpy(buf) is buf and buf.any()
    with pytest.raises(ValueError, match="int32 array of shape"):
        client.next_numpy(np.zeros((BATCH, SEQ + 1), dtype=np.int64))


def test_no_batch_after_the_heldout_tail(client):
    client.next_numpy()
    assert client.eval_inputs("check").shape[1] == client.eval_seq_len
    with pytest.raises(DataServerError, match="^heldout: "):
        client.next_numpy()


def test_evaluation_tokens_are_served_once_targets_after_inputs(client):
    with pytest.raises(DataServerError, match="^protocol: "):  # targets before their inputs
        client.eval_targets("val")
    batches = 0
    while True:
        x = client.eval_inputs("val")
        if not x.size:
            break
        y = client.eval_targets("val")
        assert x.shape == y.shape and (x[:, 1:] == y[:, :-1]).all()  # targets are the inputs shifted by one
        batches += 1
    assert batches > 0
    with pytest.raises(DataServerError, match="^eval: .*already served once"):
        client.eval_inputs("val")


def test_a_progress_request_mid_training_keeps_the_batch_in_flight(client, tiny_data):
    first = client.next_numpy().copy()
    assert len(client.progress()) > 0
    second = client.next_numpy().copy()
    fresh = StreamClient(tiny_data, SEQ, BATCH, 10 * SEQ * BATCH, 7, 0, 1, 16384)
    try:
        assert (fresh.next_numpy() == first).all() and (fresh.next_numpy() == second).all()  # the same stream
    finally:
        fresh.close()
    assert client.stats()["tokens_served"] == 2 * SEQ * BATCH + client.unused_tokens
