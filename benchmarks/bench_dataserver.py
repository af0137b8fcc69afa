"""cost of serving train batches from the harness's data process, side by side with the old
in-process stream.

    .venv/bin/python benchmarks/bench_dataserver.py [--rounds 5] [--batches 400]

the data process (harness/dataserver.py) keeps the train shards out of the record's process, so
a record cannot read tokens the stream never counted. every batch then crosses a pipe. this
measures what that costs per batch at the full-scale shape (8 × 1025 int64 tokens = 64 KiB):
  - inprocess: supervisor.stream.TrainStream.next_numpy on memory-mapped shards (the old path);
  - dataserver: harness.dataserver.StreamClient.next_numpy (request, child cuts the window, pipe).
both read the same synthetic shards; rounds alternate the two (the machine may be shared) and the
median per-batch time of each is printed with their ratio. target: the added time per batch is
under 1 ms, well under 0.1% of a t4 step at this shape (a 124M-parameter step on 8k tokens takes
seconds)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from harness.dataserver import StreamClient
from supervisor.shards import open_shard, write_shard
from supervisor.stream import TrainStream, heldout_tokens_for

VOCAB, SEQ, BATCH = 100277, 1024, 8


def make_data(root: Path, train_tokens: int) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("val", 1 << 16), ("train", train_tokens)):
        write_shard(root / f"{split}_000000.bin", rng.integers(0, VOCAB, n), VOCAB)
    manifest = {"dataset": "bench", "vocab_size": VOCAB, "val": [{"file": "val_000000.bin"}],
                "train": [{"file": "train_000000.bin"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def per_batch_us(next_numpy, batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        next_numpy()
    return (time.perf_counter() - t0) / batches * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=400)
    args = ap.parse_args()
    budget = args.batches * BATCH * SEQ
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp), train_tokens=budget * 2)
        shards = [open_shard(data / "train_000000.bin", VOCAB)]
        held = heldout_tokens_for(len(shards[0]), 1 << 16)
        times = {"inprocess": [], "dataserver": []}
        for _ in range(args.rounds):
            stream = TrainStream(shards, SEQ, BATCH, budget, seed=1, heldout_tokens=held)
            times["inprocess"].append(per_batch_us(stream.next_numpy, args.batches))
            client = StreamClient(data, SEQ, BATCH, budget, seed=1, rank=0, world_size=1, val_tokens=1 << 16)
            times["dataserver"].append(per_batch_us(client.next_numpy, args.batches))
            client.close()
        # same seed, same windows: the first batch of both paths is identical
        a = TrainStream(shards, SEQ, BATCH, budget, seed=1, heldout_tokens=held).next_numpy()
        c = StreamClient(data, SEQ, BATCH, budget, seed=1, rank=0, world_size=1, val_tokens=1 << 16)
        assert np.array_equal(a, c.next_numpy()), "the data process serves different batches"
        c.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:10s} median {med[k]:8.1f} us/batch  rounds: {', '.join(f'{x:.1f}' for x in v)}")
    print(f"dataserver / inprocess: {med['dataserver'] / med['inprocess']:.2f}x, "
          f"+{med['dataserver'] - med['inprocess']:.1f} us per {BATCH}x{SEQ + 1} batch")


if __name__ == "__main__":
    main()
